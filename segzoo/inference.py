"""Turn a photo into a mask: reading untrusted images, pre-processing, colouring."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence, Union

import cv2
import numpy as np
import torch
import torch.nn as nn
from PIL import Image, UnidentifiedImageError

from segzoo.devices import ComputeRecipe

ImageSource = Union[str, Path, bytes, np.ndarray, Image.Image]

# 40 megapixels: larger than any camera photo people upload, small enough that decoding
# it cannot exhaust memory (a 20000 x 20000 image would need 1.2 GB as RGB).
DEFAULT_MAX_PIXELS = 40_000_000


def read_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image from a path, bytes, PIL image or array into RGB ``uint8 HxWx3``.

    Raises ``ValueError`` with a readable message for files that are not images, are
    truncated, or have more than ``max_pixels`` pixels (checked from the header, before
    decoding).
    """
    if isinstance(source, np.ndarray):
        return _as_rgb_array(source)
    name = str(source) if isinstance(source, (str, Path)) else "uploaded image"
    try:
        if isinstance(source, Image.Image):
            image = source
        else:
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        width, height = image.size
        if width * height > max_pixels:
            raise ValueError(
                f"{name}: {width}x{height} is too large ({width * height / 1e6:.0f} megapixels; "
                f"the limit is {max_pixels / 1e6:.0f}). Downscale it and try again."
            )
        image.load()
        return np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise ValueError(f"{name}: file not found") from None
    except Image.DecompressionBombError as exc:
        # Pillow refuses headers over twice its own limit before we see the size.
        raise ValueError(f"{name}: image is too large ({exc}). Downscale it and try again.") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{name}: not a readable image ({exc})") from None


def _as_rgb_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 image, got an array of shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {array.dtype}")
    return np.ascontiguousarray(array[..., :3])


def resize_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale so the longer side is at most ``max_side`` (area interpolation)."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def to_tensor(
    image: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """RGB ``uint8 HxWx3`` -> normalised ``1x3xHxW`` tensor on ``device``."""
    x = torch.from_numpy(np.require(image, requirements=["C", "W"])).to(device).permute(2, 0, 1).float() / 255.0
    mean_t = torch.tensor(mean, device=device).view(3, 1, 1)
    std_t = torch.tensor(std, device=device).view(3, 1, 1)
    return ((x - mean_t) / std_t).unsqueeze(0).to(dtype)


@torch.inference_mode()
def predict_labels(
    model: nn.Module,
    x: torch.Tensor,
    out_size: tuple[int, int] | None = None,
    recipe: ComputeRecipe | None = None,
) -> np.ndarray:
    """Arg-max labels of ``model(x)`` as ``uint8 HxW``, resized (nearest) to ``out_size``.

    ``recipe`` (see :mod:`segzoo.devices`) sets the autocast precision and memory format;
    without one the model runs as it is (float32 unless its weights are half).
    """
    if recipe is None:
        logits = model(x)
    else:
        with recipe.autocast():
            logits = model(recipe.prepare_input(x))
    labels = logits.argmax(dim=1)[0].to(torch.uint8)
    if out_size is not None and tuple(labels.shape) != tuple(out_size):
        labels = torch.nn.functional.interpolate(
            labels[None, None].float(), size=out_size, mode="nearest"
        )[0, 0].to(torch.uint8)
    return labels.cpu().numpy()


def predict_mask(
    model: nn.Module,
    image: np.ndarray,
    config: dict,
    device: str | torch.device = "cpu",
    max_side: int | None = 1024,
    recipe: ComputeRecipe | None = None,
) -> np.ndarray:
    """Segment one RGB image; the mask has the image's size. ``recipe`` as in :func:`predict_labels`
    (its device then wins over ``device``)."""
    small = resize_max_side(image, max_side)
    dtype = next(model.parameters()).dtype
    x = to_tensor(small, config["mean"], config["std"], recipe.device if recipe else device, dtype)
    return predict_labels(model, x, out_size=image.shape[:2], recipe=recipe)


def colorize(mask: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Label map -> RGB image; labels outside the palette (ignored pixels) are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut[mask.astype(np.uint8)]


def overlay(
    image: np.ndarray, mask: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5
) -> np.ndarray:
    """Blend the coloured mask over the image with opacity ``alpha`` (0 = image only)."""
    colours = colorize(mask, palette).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return blended.round().clip(0, 255).astype(np.uint8)
