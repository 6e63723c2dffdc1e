"""FCN-8s (Long, Shelhamer, Darrell, 2015) on a VGG16 encoder.

Class scores are predicted from stride-32 features (after fc6/fc7 as convolutions), then
up-sampled 2x and fused with scores from the stride-16 features, up-sampled 2x again and
fused with scores from the stride-8 features, and finally up-sampled 8x. Up-sampling uses
transposed convolutions initialised to bilinear interpolation, as in the paper.

fc6/fc7 are 1024-wide with a 3x3 kernel (as in DeepLab-LargeFOV) rather than the
paper's 4096-wide 7x7: 20M parameters instead of 134M, which trains from scratch on
CamVid-sized data and keeps the checkpoint small.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
import torch.nn as nn

from segzoo.models.padding import PadToMultiple
from segzoo.models.weights import check_weights_source, hf_endpoint
from segzoo.registry import register_model


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights that make a per-channel ConvTranspose2d perform bilinear up-sampling."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt_1d = 1 - (og - center).abs() / factor
    filt = filt_1d[:, None] * filt_1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt
    return weight


def upsample(channels: int, factor: int) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(channels, channels, kernel_size=2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return up


class FCN8s(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        encoder_weights: str | None = None,
        fc_channels: int = 1024,
    ) -> None:
        super().__init__()
        self.encoder = smp.encoders.get_encoder("vgg16_bn", in_channels=in_channels, depth=5, weights=encoder_weights)
        c8, c16, c32 = self.encoder.out_channels[-3:]
        self.fc = nn.Sequential(
            nn.Conv2d(c32, fc_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(fc_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.5),
            nn.Conv2d(fc_channels, fc_channels, 1, bias=False),
            nn.BatchNorm2d(fc_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.5),
        )
        self.score32 = nn.Conv2d(fc_channels, num_classes, 1)
        self.score16 = nn.Conv2d(c16, num_classes, 1)
        self.score8 = nn.Conv2d(c8, num_classes, 1)
        self.up32to16 = upsample(num_classes, 2)
        self.up16to8 = upsample(num_classes, 2)
        self.up8to1 = upsample(num_classes, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8, f16, f32 = self.encoder(x)[-3:]
        score = self.up32to16(self.score32(self.fc(f32))) + self.score16(f16)
        score = self.up16to8(score) + self.score8(f8)
        return self.up8to1(score)


@register_model(
    "fcn8s",
    family="FCN",
    description="FCN-8s on VGG16: scores from stride-32, -16 and -8 features fused by 2x/2x/8x up-sampling",
    paper="Long, Shelhamer, Darrell, Fully Convolutional Networks, CVPR 2015 (arXiv:1411.4038)",
    params=20_560_484,
    classic=True,
)
def build_fcn8s(
    num_classes: int,
    in_channels: int = 3,
    encoder_weights: str | None = None,
    fc_channels: int = 1024,
) -> nn.Module:
    check_weights_source(encoder_weights, hf_endpoint(), "the FCN-8s VGG16 encoder")
    return PadToMultiple(FCN8s(num_classes, in_channels, encoder_weights, fc_channels), multiple=32)
