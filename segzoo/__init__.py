"""segzoo: a zoo of image-segmentation models, their training, evaluation and a Gradio app."""
from __future__ import annotations

__version__ = "0.1.0"

from segzoo.registry import create_model, get_spec, list_models, model_names, register_model

__all__ = [
    "__version__",
    "create_model",
    "get_spec",
    "list_models",
    "model_names",
    "register_model",
    "load",
]


def load(path, device="cpu"):  # noqa: ANN001, ANN201 - thin re-export, documented in segzoo.checkpoint
    """Load a checkpoint directory: returns ``(model, config)``. See :func:`segzoo.checkpoint.load`."""
    from segzoo.checkpoint import load as _load

    return _load(path, device=device)
