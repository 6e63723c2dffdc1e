"""Optimiser parameter groups shared by both trainers."""

from __future__ import annotations

from typing import Any

import torch.nn as nn


def parameter_groups(model: nn.Module, weight_decay: float, **extra: Any) -> list[dict[str, Any]]:
    """Two groups of the trainable parameters: weight decay on weights, none on biases and
    normalisation weights (the 1-d parameters), as the torchvision references do."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if p.ndim > 1], "weight_decay": weight_decay, **extra},
        {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0, **extra},
    ]
