"""PSPNet with a ResNet-50 encoder (segmentation-models-pytorch)."""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch.nn as nn

from segzoo.models.smp_factory import build_smp
from segzoo.registry import register_model


@register_model(
    "pspnet_resnet50",
    family="PSPNet",
    description="Pyramid pooling module (bins 1, 2, 3, 6) on dilated ResNet-50 features (output stride 8)",
    paper="Zhao et al., Pyramid Scene Parsing Network, CVPR 2017 (arXiv:1612.01105)",
    params=29_859_404,
)
def build_pspnet_resnet50(num_classes: int, in_channels: int = 3, encoder_weights: str | None = None) -> nn.Module:
    # As in the paper: all four ResNet stages, the last two dilated so the pyramid pools
    # stride-8 features (smp's default stops after stage 2).
    return build_smp(
        smp.PSPNet,
        "resnet50",
        num_classes,
        in_channels,
        encoder_weights,
        output_stride=8,
        encoder_depth=5,
        upsampling=8,
    )
