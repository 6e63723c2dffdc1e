"""UNet decoders on pretrained-style encoders, from segmentation-models-pytorch."""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch.nn as nn

from segzoo.models.smp_factory import build_smp
from segzoo.registry import register_model

# The VGG16 UNet is one of the classics (ModelSpec.classic); the others are the encoder models.
_CLASSICS = {"unet_vgg16"}
_ENCODERS = {
    # registry name: (smp encoder, parameters at 12 classes, description)
    "unet_vgg16": ("vgg16_bn", 23_758_284, "VGG16 (batch-norm variant)"),
    "unet_resnet34": ("resnet34", 24_437_964, "ResNet-34"),
    "unet_resnet50": ("resnet50", 32_522_700, "ResNet-50"),
    "unet_efficientnet_b0": ("tu-efficientnet_b0", 5_836_296, "EfficientNet-B0 (timm)"),
}


def _register(name: str, encoder: str, params: int, label: str) -> None:
    @register_model(
        name,
        family="UNet",
        description=f"UNet decoder, {label} encoder (segmentation-models-pytorch)",
        paper="Ronneberger et al., U-Net, MICCAI 2015; encoder as named",
        params=params,
        classic=name in _CLASSICS,
    )
    def build(num_classes: int, in_channels: int = 3, encoder_weights: str | None = None) -> nn.Module:
        return build_smp(smp.Unet, encoder, num_classes, in_channels, encoder_weights)


for _name, (_encoder, _params, _label) in _ENCODERS.items():
    _register(_name, _encoder, _params, _label)
