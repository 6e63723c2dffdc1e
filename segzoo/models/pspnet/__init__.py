"""PSPNet with a ResNet-50 encoder (segmentation-models-pytorch)."""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch.nn as nn

from segzoo.models.smp_factory import build_smp
from segzoo.registry import register_model


@register_model(
    "pspnet_resnet50",
    family="PSPNet",
    description="Pyramid pooling module (bins 1, 2, 3, 6) on dilated ResNet-50 features (output stride 8; 16 optional)",
    paper="Zhao et al., Pyramid Scene Parsing Network, CVPR 2017 (arXiv:1612.01105)",
    params=29_859_404,
)
def build_pspnet_resnet50(
    num_classes: int, in_channels: int = 3, encoder_weights: str | None = None, output_stride: int = 8
) -> nn.Module:
    # As in the paper by default: all four ResNet stages, the last two dilated so the pyramid
    # pools stride-8 features (smp's default stops after stage 2). ``output_stride=16`` dilates
    # only the last stage: the same weights on coarser features, a 2.6x cheaper training step
    # and 2.7x per photo on a 2-core CPU (benchmarks/output_stride.json); DeepLabV3 trains at
    # 16 for the same reason.
    if output_stride not in (8, 16):
        raise ValueError(f"pspnet_resnet50: output_stride must be 8 or 16, not {output_stride!r}")
    return build_smp(
        smp.PSPNet,
        "resnet50",
        num_classes,
        in_channels,
        encoder_weights,
        output_stride=output_stride,
        encoder_depth=5,
        upsampling=output_stride,
    )
