"""The classic UNet (Ronneberger et al., 2015), built from scratch.

Differences from the paper, all standard today: padded 3x3 convolutions (the output has
the input's size instead of a smaller valid region) and batch norm after each conv.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from segzoo.models.padding import PadToMultiple
from segzoo.registry import register_model


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Up(nn.Module):
    """Transposed-conv up-sampling, concatenate the skip, two 3x3 convs."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = double_conv(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """UNet with ``depth`` down-sampling levels and ``base_channels`` doubling per level.

    Input sides must divide ``2 ** depth``; :func:`build_unet` wraps it so any size works.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, base_channels: int = 64, depth: int = 4) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.stem = double_conv(in_channels, widths[0])
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(Up(widths[i + 1], widths[i]) for i in reversed(range(depth)))
        self.classifier = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = [x]
        for block in self.down:
            x = block(self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck is x itself
        for block in self.up:
            x = block(x, skips.pop())
        return self.classifier(x)


@register_model(
    "unet",
    family="UNet",
    description="Classic UNet from scratch: 4 levels, 64->1024 channels, transposed-conv up-sampling",
    paper="Ronneberger et al., U-Net, MICCAI 2015 (arXiv:1505.04597)",
    params=31_038_348,
    classic=True,
)
def build_unet(
    num_classes: int,
    in_channels: int = 3,
    encoder_weights: str | None = None,
    base_channels: int = 64,
    depth: int = 4,
) -> nn.Module:
    if encoder_weights is not None:
        raise ValueError("unet is trained from scratch: it has no pretrained encoder (use encoder_weights=None)")
    return PadToMultiple(UNet(num_classes, in_channels, base_channels, depth), multiple=2**depth)
