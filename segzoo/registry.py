"""One registry for every model in the zoo.

Architectures register a builder with :func:`register_model`; users call
:func:`create_model` and :func:`list_models`. Semantic models return logits of shape
``N x num_classes x H x W`` for any input size (see :mod:`segzoo.models.padding`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch.nn as nn

Task = Literal["semantic", "instance"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    description: str
    paper: str
    builder: Callable[..., nn.Module] = field(repr=False)
    params: int = 0  # documented parameter count at 12 classes; a test checks it
    task: Task = "semantic"
    # One of the 2015 classics at their published widths (UNet, VGG16-UNet, SegNet, FCN-8s),
    # as against the models on ResNet and EfficientNet encoders: the Compare tab maps where
    # the two groups' majority labels differ.
    classic: bool = False


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    family: str,
    description: str,
    paper: str,
    params: int,
    task: Task = "semantic",
    classic: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder(num_classes, in_channels, encoder_weights, **kw)``."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(name, family, description, paper, builder, params, task, classic)
        return builder

    return decorator


def _ensure_registered() -> None:
    import segzoo.models  # noqa: F401  (importing registers every architecture)


def get_spec(name: str) -> ModelSpec:
    _ensure_registered()
    if name not in _REGISTRY:
        valid = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown model {name!r}; valid names are: {valid}")
    return _REGISTRY[name]


def model_names(task: Task | None = None) -> list[str]:
    _ensure_registered()
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


def create_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    encoder_weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    ``encoder_weights="imagenet"`` downloads pretrained encoder weights where the
    architecture has them; offline this fails within seconds with a message saying how
    to train without them (``encoder_weights=None``).
    """
    spec = get_spec(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return spec.builder(num_classes=num_classes, in_channels=in_channels, encoder_weights=encoder_weights, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def list_models(task: Task | None = None) -> list[dict[str, Any]]:
    """Name, family, task, description, paper, parameter count at 12 classes, and whether it
    is one of the classics."""
    return [
        {
            "name": spec.name,
            "family": spec.family,
            "task": spec.task,
            "description": spec.description,
            "paper": spec.paper,
            "params": spec.params,
            "classic": spec.classic,
        }
        for spec in map(get_spec, model_names(task))
    ]
