"""Build segmentation-models-pytorch networks with segzoo's conventions."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from segzoo.models.padding import PadToMultiple
from segzoo.models.weights import check_weights_source, hf_endpoint


def build_smp(
    architecture: type[nn.Module],
    encoder: str,
    num_classes: int,
    in_channels: int = 3,
    encoder_weights: str | None = None,
    output_stride: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """``architecture(encoder_name=encoder, ...)`` wrapped to accept any input size.

    ``output_stride`` (8 or 16) replaces the encoder's last strides by dilation.
    """
    # smp fetches encoder weights from the Hugging Face Hub.
    check_weights_source(encoder_weights, hf_endpoint(), f"the {encoder} encoder")
    net = architecture(
        encoder_name=encoder,
        encoder_weights=encoder_weights,
        in_channels=in_channels,
        classes=num_classes,
        **kwargs,
    )
    if output_stride is not None:
        net.encoder.make_dilated(output_stride)
        # smp's shape check still assumes the undilated stride (32); our padding below
        # guarantees the real one.
        net.requires_divisible_input_shape = False
    return PadToMultiple(net, multiple=output_stride or net.encoder.output_stride)
