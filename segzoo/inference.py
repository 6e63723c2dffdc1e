"""Turn a photo into a mask: reading untrusted images, pre-processing, colouring."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from segzoo.devices import ComputeRecipe

log = logging.getLogger(__name__)

ImageSource = str | Path | bytes | np.ndarray | Image.Image

# 40 megapixels: larger than any camera photo people upload, small enough that decoding
# it cannot exhaust memory (a 20000 x 20000 image would need 1.2 GB as RGB).
DEFAULT_MAX_PIXELS = 40_000_000
# Pillow modes holding more than 8 bits per pixel, one channel: 16-bit PNG / TIFF grey
# ("I;16*"), 32-bit integers ("I") and floats ("F"). Pillow's own convert("RGB") clips
# them at 255, which turns a 16-bit photo pure white.
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


@dataclass
class Photo:
    """A decoded photo: ``pixels`` RGB ``uint8 HxWx3`` upright (EXIF ``orientation``
    applied; 1 means none was needed), and ``notes`` on what was done to read it (first
    frame of an animation, depth scaled) for the user to see."""

    pixels: np.ndarray
    orientation: int = 1
    notes: list[str] = field(default_factory=list)


def read_photo(
    source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None, *, upright: bool = True
) -> Photo:
    """Decode an image from a path, bytes, PIL image or array, as a viewer shows it.

    EXIF orientation is applied (a phone photo taken upright is segmented upright), 16-bit
    and float images are scaled to 8 bits over their range, an animation gives its first
    frame (with a note). ``ValueError`` with a readable message, naming the file as
    ``name`` (default: the path as given), for files that are not images, are truncated,
    or have more than ``max_pixels`` pixels (checked from the header, before decoding).
    ``upright=False`` keeps the stored pixel grid (EXIF orientation ignored).
    """
    if isinstance(source, np.ndarray):
        return Photo(_as_rgb_array(source, name or "image array"))
    if name is None:
        name = str(source) if isinstance(source, (str, Path)) else "uploaded image"
    opened = None
    try:
        if isinstance(source, Image.Image):
            return _decode(source, max_pixels, name, upright)
        opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        return _decode(opened, max_pixels, name, upright)
    except FileNotFoundError:
        raise ValueError(f"{name}: file not found") from None
    except Image.DecompressionBombError as exc:
        # Pillow refuses headers over twice its own limit before we see the size.
        raise ValueError(f"{name}: image is too large ({exc}). Downscale it and try again.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as exc:  # EOFError: a cut-off animation
        raise ValueError(f"{name}: not a readable image ({exc})") from None
    finally:
        if opened is not None:
            opened.close()  # an animation keeps its file open until closed


def _decode(image: Image.Image, max_pixels: int | None, name: str, upright: bool) -> Photo:
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError(
            f"{name}: {width}x{height} is too large ({width * height / 1e6:.0f} megapixels; "
            f"the limit is {max_pixels / 1e6:.0f}). Downscale it and try again."
        )
    notes: list[str] = []
    frames = getattr(image, "n_frames", 1)
    # A phone's MPO JPEG holds the photo then previews or depth maps: frame 0 is the photo.
    if frames > 1 and image.format != "MPO":
        notes.append(f"{name} is animated ({frames} frames): the first frame was used")
    image.load()
    orientation = _orientation(image, name, notes) if upright else 1
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    return Photo(_as_rgb(image, name, notes), orientation, notes)


def read_image(
    source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None, *, upright: bool = True
) -> np.ndarray:
    """RGB ``uint8 HxWx3``: the one image reader, for photos, uploads and data sets.

    ``upright=True`` (photos, uploads): :func:`read_photo`, its notes logged as warnings.
    ``upright=False`` (data sets, whose labels are drawn on the stored pixel grid): EXIF
    orientation ignored; with ``max_pixels=None`` (trusted files, no size limit) a path is
    decoded by OpenCV where it can, several times faster than Pillow, for training speed.
    """
    if not upright and max_pixels is None and isinstance(source, (str, Path)):
        pixels = _decode_with_opencv(Path(source))
        if pixels is not None:
            return pixels
    photo = read_photo(source, max_pixels, name, upright=upright)
    for note in photo.notes:
        log.warning("%s", note)
    return photo.pixels


def _decode_with_opencv(path: Path) -> np.ndarray | None:
    """The stored pixels as RGB, or ``None`` where Pillow must decide. OpenCV fills a
    truncated JPEG with grey instead of failing, so it only gets a JPEG that ends with its
    end-of-image marker; anything else it cannot decode goes to Pillow, which checks."""
    data = np.fromfile(path, dtype=np.uint8)  # FileNotFoundError names the file
    is_jpeg = data[:2].tobytes() == b"\xff\xd8"
    if not data.size or (is_jpeg and data[-2:].tobytes() != b"\xff\xd9"):
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# EXIF orientation -> the array operation that shows the stored pixels upright (what
# Pillow's ImageOps.exif_transpose does to an image), for label maps that are not images.
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """``array`` (``H x W`` or ``H x W x C``) turned as EXIF ``orientation`` says, as
    :func:`read_photo` turns the photo."""
    turn = _UPRIGHT.get(orientation)
    return array if turn is None else np.ascontiguousarray(turn(array))


def stored_shape(shape: tuple[int, int], orientation: int) -> tuple[int, int]:
    """``(height, width)`` of the stored pixels of a photo shown upright at ``shape``."""
    return (shape[1], shape[0]) if orientation in (5, 6, 7, 8) else (shape[0], shape[1])


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation of an open image, 1 (upright) when absent or unreadable."""
    return _orientation(image, "", [])


def _orientation(image: Image.Image, name: str, notes: list[str]) -> int:
    try:
        orientation = int(image.getexif().get(ExifTags.Base.Orientation, 1) or 1)
    except Exception as exc:  # a broken EXIF block must not make the photo unreadable
        notes.append(f"{name}: its EXIF data is unreadable ({exc}); the photo is used as stored")
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _as_rgb(image: Image.Image, name: str, notes: list[str]) -> np.ndarray:
    if image.mode in HIGH_DEPTH_MODES:
        grey = to_uint8(np.asarray(image), name, notes)
        return np.repeat(grey[..., None], 3, axis=2)
    try:
        return np.array(image if image.mode == "RGB" else image.convert("RGB"))
    except ValueError as exc:  # a mode Pillow cannot convert (LAB, HSV, ...)
        raise ValueError(f"{name}: cannot convert its {image.mode} pixels to RGB ({exc})") from None


def to_uint8(values: np.ndarray, name: str, notes: list[str] | None = None) -> np.ndarray:
    """Scale integer pixels over their type's range (16-bit: 0..65535 -> 0..255, as viewers
    show them) and float pixels from 0..1 to 0..255; floats outside 0..1 are stretched from
    their minimum to their maximum, with a note."""
    if values.dtype == np.uint8:
        return values
    if values.dtype == bool:
        return values.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(values.dtype, np.integer):
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise ValueError(f"{name}: integer pixels {low}..{high} exceed 16 bits; save it as an 8- or 16-bit image")
        # round(v * 255 / 65535) == round(v / 257), in integers (a float copy of a 40 MP
        # image would take 320 MB).
        return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32, copy=False)
        if values.size and not np.isfinite(values).all():
            raise ValueError(f"{name}: floating-point image with NaN or infinite pixels")
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        if low < 0 or high > 1:
            if notes is not None:
                notes.append(f"{name}: floating-point pixels {low:g}..{high:g} are outside 0..1; stretched to 0..255")
            values = (values - low) / (high - low or 1.0)
        return np.rint(values * 255).clip(0, 255).astype(np.uint8)
    raise ValueError(f"{name}: unsupported pixel type {values.dtype}")


def _as_rgb_array(array: np.ndarray, name: str = "image array") -> np.ndarray:
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 image, got an array of shape {array.shape}")
    return np.ascontiguousarray(to_uint8(array[..., :3], name))


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
        labels = torch.nn.functional.interpolate(labels[None, None].float(), size=out_size, mode="nearest")[0, 0].to(
            torch.uint8
        )
    return labels.cpu().numpy()


def input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype a model takes its input in: its weights' (float32 for a model without
    parameters of its own, such as :class:`segzoo.export.OnnxModule`)."""
    param = next(model.parameters(), None)
    return param.dtype if param is not None else torch.float32


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
    x = to_tensor(small, config["mean"], config["std"], recipe.device if recipe else device, input_dtype(model))
    return predict_labels(model, x, out_size=image.shape[:2], recipe=recipe)


def colorize(mask: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Label map -> RGB image; labels outside the palette (ignored pixels) are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut[mask.astype(np.uint8)]


def overlay(image: np.ndarray, mask: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """Blend the coloured mask over the image with opacity ``alpha`` (0 = image only)."""
    colours = colorize(mask, palette).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return blended.round().clip(0, 255).astype(np.uint8)


def inference_short_side(config: dict[str, Any]) -> int | None:
    """The shorter side photos are resized to before the model: the one ``segzoo tune-scale``
    chose on the validation split (``config["inference_short_side"]``), else the scale the
    model was trained at (``config["short_side"]``); ``None``: the photos' own size."""
    return config.get("inference_short_side") or config.get("short_side")


def inference_scale(image: np.ndarray, config: dict[str, Any], fallback: int = 1024) -> int:
    """The longer side an image has when the model runs on it: images are resized so their
    shorter side is :func:`inference_short_side` (no upscaling of small photos)."""
    short_side = inference_short_side(config)
    height, width = image.shape[:2]
    if not short_side:
        return fallback  # trained at the images' own size: only very large photos are shrunk
    if min(height, width) <= short_side:
        return max(height, width)
    return round(short_side * max(height, width) / min(height, width))
