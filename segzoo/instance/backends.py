"""Which Mask R-CNN backends this installation has.

torchvision always installs; Detectron2 is built from source by users who want it
(docs/detectron2.md), so every Detectron2 code path asks here first.
"""

from __future__ import annotations

import functools
import warnings

DOCS = "docs/detectron2.md"


@functools.lru_cache(maxsize=1)
def detectron2_unavailable_reason() -> str | None:
    """``None`` when Detectron2 and its model zoo import; otherwise why not."""
    try:
        with warnings.catch_warnings():  # pkg_resources and torch.jit deprecation notices
            warnings.simplefilter("ignore")
            _import_detectron2()
    except Exception as exc:  # any import failure means "not usable here"
        return f"Detectron2 is not usable here ({type(exc).__name__}: {exc}); see {DOCS} to install it"
    return None


def _import_detectron2() -> None:
    import detectron2  # noqa: F401
    from detectron2 import model_zoo  # noqa: F401  (needs pkg_resources: setuptools<81)
    from detectron2.modeling import build_model  # noqa: F401


def detectron2_available() -> bool:
    return detectron2_unavailable_reason() is None


def require_detectron2() -> None:
    reason = detectron2_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"backend 'detectron2' was asked for but {reason[0].lower()}{reason[1:]}")


def resolve_backend(backend: str | None) -> str:
    """``"auto"`` (or None) -> ``"detectron2"`` when it imports, else ``"torchvision"``."""
    if backend in (None, "auto"):
        return "detectron2" if detectron2_available() else "torchvision"
    if backend == "detectron2":
        require_detectron2()
        return backend
    if backend == "torchvision":
        return backend
    raise ValueError(f"unknown backend {backend!r}; choose 'torchvision', 'detectron2' or 'auto'")
