"""Let any network accept any input size: pad to its required multiple, crop the logits back."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` (N x C x H x W) at the bottom and right so H and W divide ``multiple``.

    Reflection padding keeps image statistics at the border (zeros would be a fake dark
    frame); it needs the pad to be smaller than the side, so tiny inputs fall back to
    replicate padding.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (h, w)
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (h, w)


class PadToMultiple(nn.Module):
    """Wraps a network whose input sides must divide ``multiple``; output is cropped back."""

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, (h, w) = pad_to_multiple(x, self.multiple)
        return self.net(padded)[..., :h, :w]
