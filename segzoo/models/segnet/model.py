"""SegNet (Badrinarayanan et al., 2017): the decoder up-samples with the encoder's
max-pooling indices.

The encoder is VGG16's 13 convolutions (with batch norm). Each 2x2 max-pool remembers
where its maxima came from; the matching decoder stage puts values back at exactly those
positions with ``MaxUnpool2d`` and densifies them with convolutions. There are no skip
concatenations and no learned or bilinear up-sampling: that is what distinguishes SegNet
from UNet and FCN.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn as nn

from segzoo.models.padding import PadToMultiple
from segzoo.models.weights import TORCHVISION_URL, check_weights_source
from segzoo.registry import register_model

# Convolutions per stage and their widths: VGG16's configuration D.
VGG16_STAGES = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]
VGG16_BASE_CHANNELS = 64


def vgg16_stages(base_channels: int = VGG16_BASE_CHANNELS) -> list[tuple[int, int]]:
    """VGG16's stages with every width scaled by ``base_channels / 64`` (64: the paper's)."""
    return [(n_convs, width * base_channels // VGG16_BASE_CHANNELS) for n_convs, width in VGG16_STAGES]


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SegNet(nn.Module):
    """``base_channels``: the first stage's width (64 in the paper); the others scale with it."""

    def __init__(self, num_classes: int, in_channels: int = 3, base_channels: int = VGG16_BASE_CHANNELS) -> None:
        super().__init__()
        stages = vgg16_stages(base_channels)
        self.encoder_stages = nn.ModuleList()
        channels = in_channels
        for n_convs, width in stages:
            layers: list[nn.Module] = []
            for i in range(n_convs):
                layers += conv_bn_relu(channels if i == 0 else width, width)
            self.encoder_stages.append(nn.Sequential(*layers))
            channels = width
        self.pools = nn.ModuleList(nn.MaxPool2d(2, 2, return_indices=True) for _ in stages)
        self.unpools = nn.ModuleList(nn.MaxUnpool2d(2, 2) for _ in stages)

        # The decoder mirrors the encoder; each stage's last conv maps to the width the
        # next (shallower) stage expects. The shallowest stage ends in the classifier.
        self.decoder_stages = nn.ModuleList()
        reversed_stages = list(reversed(stages))
        for s, (n_convs, width) in enumerate(reversed_stages):
            is_last = s == len(reversed_stages) - 1
            out_width = width if is_last else reversed_stages[s + 1][1]
            layers = []
            for _ in range(n_convs - 1):
                layers += conv_bn_relu(width, width)
            if is_last:
                layers.append(nn.Conv2d(width, num_classes, 3, padding=1))
            else:
                layers += conv_bn_relu(width, out_width)
            self.decoder_stages.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The pooling indices are arg-maxes over 2x2 windows. Under bf16 autocast (8 bits of
        # mantissa) near-equal neighbours round to ties or swap places, and unpooling then
        # moves the activations: on the pets examples the bf16 fast path kept float32's labels
        # on only 99.4% of the pixels, 99.96% with the encoder in float32 and the decoder in
        # bf16. So at inference the encoder leaves autocast; training keeps bf16 throughout,
        # where the index noise does no harm.
        device_type = x.device.type
        encoder_in_float32 = not self.training and torch.is_autocast_enabled(device_type)
        pooling: list[tuple[torch.Tensor, torch.Size]] = []
        with torch.autocast(device_type, enabled=False) if encoder_in_float32 else nullcontext():
            x = x.float() if encoder_in_float32 else x
            for stage, pool in zip(self.encoder_stages, self.pools):
                x = stage(x)
                size = x.shape
                x, indices = pool(x)
                pooling.append((indices, size))
        for stage, unpool in zip(self.decoder_stages, self.unpools):
            indices, size = pooling.pop()
            x = stage(unpool(x, indices, output_size=size))
        return x

    def load_vgg16_bn_encoder(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy torchvision ``vgg16_bn`` feature weights into the encoder, in order."""
        # Both sides list conv weight, BN weight, bias, running mean and variance in
        # layer order; BN's step counter is not in older torchvision files, so skip it.
        vgg = [v for k, v in state_dict.items() if k.startswith("features.") and not k.endswith("num_batches_tracked")]
        ours = [
            t
            for k, t in self.encoder_stages.state_dict(keep_vars=True).items()
            if not k.endswith("num_batches_tracked")
        ]
        if len(vgg) != len(ours):
            raise RuntimeError(f"vgg16_bn has {len(vgg)} feature tensors, SegNet expects {len(ours)}")
        with torch.no_grad():
            for dst, src in zip(ours, vgg):
                if dst.shape != src.shape:
                    raise RuntimeError(f"shape mismatch {tuple(src.shape)} -> {tuple(dst.shape)}")
                dst.copy_(src)


@register_model(
    "segnet",
    family="SegNet",
    description="VGG16 13-conv encoder; decoder up-samples with the encoder's max-pool indices (MaxUnpool2d)",
    paper="Badrinarayanan, Kendall, Cipolla, SegNet, TPAMI 2017 (arXiv:1511.00561)",
    params=29_441_996,
    classic=True,
)
def build_segnet(
    num_classes: int,
    in_channels: int = 3,
    encoder_weights: str | None = None,
    base_channels: int = VGG16_BASE_CHANNELS,
) -> nn.Module:
    if base_channels < 1 or base_channels % 8:
        raise ValueError(f"segnet base_channels must be a positive multiple of 8, got {base_channels}")
    net = SegNet(num_classes, in_channels, base_channels)
    if encoder_weights is not None:
        if encoder_weights != "imagenet" or in_channels != 3 or base_channels != VGG16_BASE_CHANNELS:
            raise ValueError("segnet supports encoder_weights='imagenet' (3 input channels, base_channels 64) or None")
        check_weights_source(encoder_weights, TORCHVISION_URL, "the SegNet VGG16 encoder")
        from torchvision.models import VGG16_BN_Weights

        net.load_vgg16_bn_encoder(VGG16_BN_Weights.IMAGENET1K_V1.get_state_dict(progress=True))
    return PadToMultiple(net, multiple=2 ** len(VGG16_STAGES))
