"""segzoo: a zoo of image-segmentation models, their training, evaluation and a Gradio app."""

from __future__ import annotations

from segzoo.registry import (
    create_model,
    get_spec,
    list_models,
    model_names,
    register_model,
)
from segzoo.version import __version__

__all__ = [
    "__version__",
    "create_model",
    "get_spec",
    "list_models",
    "model_names",
    "register_model",
    "load",
]


def load(path, device="cpu"):  # noqa: ANN001, ANN201 - thin wrapper, documented in segzoo.checkpoint
    """Load a checkpoint: a local directory or ``hf://<user>/<repo>[@<revision>][/<subfolder>]``
    (downloaded once into the Hugging Face cache). Returns ``(model, config)``; see
    :func:`segzoo.checkpoint.load`."""
    from segzoo.checkpoint import load as load_directory
    from segzoo.hub import resolve_checkpoint_dir

    return load_directory(resolve_checkpoint_dir(path), device=device)
