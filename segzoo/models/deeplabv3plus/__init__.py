"""DeepLabV3+ with a ResNet-50 encoder (segmentation-models-pytorch)."""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch.nn as nn

from segzoo.models.smp_factory import build_smp
from segzoo.registry import register_model


@register_model(
    "deeplabv3plus_resnet50",
    family="DeepLab",
    description="Atrous spatial pyramid pooling (output stride 16) plus a stride-4 decoder, ResNet-50",
    paper="Chen et al., Encoder-Decoder with Atrous Separable Convolution, ECCV 2018 (arXiv:1802.02611)",
    params=26_680_412,
)
def build_deeplabv3plus_resnet50(
    num_classes: int, in_channels: int = 3, encoder_weights: str | None = None
) -> nn.Module:
    return build_smp(smp.DeepLabV3Plus, "resnet50", num_classes, in_channels, encoder_weights)
