"""What every data set shares: its metadata, reading files, label validation and the
``Dataset`` that applies a transform.

A data set is a list of images plus, per image, a way to read its label mask. Masks are
mapped from the values stored on disk to training labels with a lookup table; a value
the table does not know raises a ``ValueError`` that names the file and the values, so a
bad mask never becomes a silent wrong label or a CUDA device-side assert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from segzoo.inference import exif_orientation as orientation_of
from segzoo.inference import read_image

# Loader worker processes are the parallelism: OpenCV threads on top would oversubscribe
# the cores. Set once here, before any pool exists: reconfiguring OpenCV's thread pool
# inside a forked worker (cv2.setNumThreads there) deadlocks on the parent's pool.
cv2.setNumThreads(0)

# Every encoder in the zoo (VGG16, ResNet, EfficientNet) was pretrained with ImageNet's statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
INVALID = -1  # lookup-table entry for a stored value that is not a known label
ROTATING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of a data set: what the model predicts and how to draw it.

    ``class_names`` are the classes a model predicts (``num_classes`` outputs). Masks hold
    values in ``[0, num_classes)`` or ``ignore_index`` (pixels left out of loss and
    metrics), which is ``None`` where every pixel is labelled.
    """

    name: str
    class_names: list[str]
    palette: list[tuple[int, int, int]]
    ignore_index: int | None = None
    # get_dataset options that shape labels or splits (oxford_pet mode, seeds): a
    # checkpoint stores them as dataset_options to rebuild the same data set.
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.palette) != len(self.class_names):
            raise ValueError(
                f"{self.name}: {len(self.class_names)} class names but {len(self.palette)} palette colours"
            )
        if self.ignore_index is not None and 0 <= self.ignore_index < len(self.class_names):
            raise ValueError(f"{self.name}: ignore_index {self.ignore_index} is a class index")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the keys a checkpoint's config.json stores)."""
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "palette": [list(c) for c in self.palette],
            "ignore_index": self.ignore_index,
            "dataset_options": dict(self.options),
        }


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """The Pascal VOC colour map (bit-interleaved): distinct colours for any ``n``, black
    first (background). The class colours of every data set that brings none, both tasks."""
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append((r, g, b))
    return palette


def normalize_sample(
    image: np.ndarray, mask: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> dict[str, torch.Tensor]:
    """``image=`` uint8 H x W x 3, ``mask=`` H x W -> ``{"image": float 3 x H x W normalised,
    "mask": H x W}`` at full size: a data set's samples without a transform."""
    # Training's own normalisation, imported here: importing segzoo.training loads its loop.
    from segzoo.training.augment import normalize

    pixels = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)
    labels = torch.from_numpy(np.require(mask, requirements=["W"]))  # PIL's arrays are read-only
    return {"image": normalize(pixels[None], mean, std)[0], "mask": labels}


def denormalize(
    image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """Undo the normalisation of a ``3 x H x W`` tensor: uint8 ``H x W x 3`` (for display)."""
    mean_t = torch.as_tensor(mean, dtype=image.dtype, device=image.device)[:, None, None]
    std_t = torch.as_tensor(std, dtype=image.dtype, device=image.device)[:, None, None]
    rgb = ((image * std_t + mean_t) * 255).round().clamp(0, 255).byte()
    return rgb.permute(1, 2, 0).cpu().numpy()


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def read_mask_file(path: str | Path, *, color: bool = False) -> np.ndarray:
    """Read a label PNG as stored: ``H x W`` integers (palette PNGs give their indices,
    not colours), or ``H x W x 3`` RGB when ``color`` is set."""
    path = Path(path)
    try:
        with Image.open(path) as pil:
            if color:
                return np.asarray(pil.convert("RGB"))
            if pil.mode in ("RGB", "RGBA"):
                raise ValueError(
                    f"mask {path} is a colour ({pil.mode}) image; colour-coded masks need a palette "
                    "file (class name -> RGB colour, see segzoo.data.folder)"
                )
            if pil.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "LA", "PA"):
                raise ValueError(f"mask {path} has unsupported image mode {pil.mode}")
            if pil.mode in ("LA", "PA"):
                pil = pil.getchannel(0)
            mask = np.asarray(pil)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read mask {path}: corrupt or not an image ({exc})") from None
    if mask.dtype == bool:
        mask = mask.astype(np.uint8)
    return mask


def make_lut(mapping: Mapping[int, int], size: int = 256) -> np.ndarray:
    """Lookup table from stored mask values to labels; unknown values map to ``INVALID``."""
    lut = np.full(max(size, max(mapping, default=0) + 1), INVALID, dtype=np.int16)
    for stored, label in mapping.items():
        lut[stored] = label
    return lut


def describe_valid(lut: np.ndarray) -> str:
    """The stored values a table accepts, as runs: ``0..10, 255``."""
    values = np.flatnonzero(lut != INVALID).tolist()
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)


def apply_lut(mask: np.ndarray, lut: np.ndarray, path: str | Path) -> np.ndarray:
    """Map stored values to labels (uint8); ``ValueError`` naming the file and the values
    that are not labels. Costs one table look-up per pixel."""
    if mask.ndim != 2:
        raise ValueError(f"mask {path} has shape {mask.shape}; expected H x W class indices")
    if mask.dtype != np.uint8:
        if mask.size and (mask.min() < 0 or mask.max() >= len(lut)):
            bad = np.unique(mask[(mask < 0) | (mask >= len(lut))])
            raise _unknown_labels(path, bad, lut)
        mask = mask.astype(np.intp, copy=False)
    labels = lut[mask]
    if labels.size and labels.min() == INVALID:
        raise _unknown_labels(path, np.unique(mask[labels == INVALID]), lut)
    return labels.astype(np.uint8)


def _unknown_labels(path: str | Path, bad: np.ndarray, lut: np.ndarray) -> ValueError:
    shown = ", ".join(map(str, bad[:20].tolist())) + (" ..." if len(bad) > 20 else "")
    return ValueError(
        f"mask {path} has label values outside the class list: {shown} (valid stored values: {describe_valid(lut)})"
    )


class SegmentationDataset(Dataset):
    """Images and label masks; ``ds[i]`` is ``(image 3xHxW float, mask HxW long)``.

    Subclasses fill ``self.images`` (paths) and implement :meth:`read_label` returning
    the ``H x W`` uint8 label mask of sample ``i``, already validated (see
    :func:`apply_lut`). ``transform`` takes ``image=, mask=`` numpy arrays and returns a
    dict of the two (an albumentations pipeline works); ``None`` means
    :func:`normalize_sample` (normalise only, full size). Training
    augmentation: :class:`segzoo.data.transforms.TrainingSamples`.
    """

    def __init__(self, info: DatasetInfo, images: Sequence[Path], transform: Callable | None = None) -> None:
        self.info = info
        self.images = list(images)
        self.transform = transform or normalize_sample
        # Images without masks and the like, found while listing files by a data set
        # built with ``missing="skip"`` (``segzoo data check`` reports them).
        self.problems: list[str] = []

    def __len__(self) -> int:
        return len(self.images)

    def mask_source(self, index: int) -> str:
        """Where sample ``index``'s labels come from (for messages)."""
        raise NotImplementedError

    def read_label(self, index: int, image_shape: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def load_mask(self, index: int) -> np.ndarray:
        """The uint8 ``H x W`` label mask alone (reads only the image's header, for its size)."""
        try:
            with Image.open(self.images[index]) as pil:
                width, height = pil.size
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"cannot read image {self.images[index]}: corrupt or not an image ({exc})") from None
        return self._checked_size(index, self.read_label(index, (height, width)), (height, width))

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 H x W x 3 RGB, mask uint8 H x W)`` before any transform."""
        try:
            image = read_image(self.images[index], max_pixels=None, upright=False)
        except ValueError as exc:  # "<path>: not a readable image (...)"
            raise ValueError(f"cannot read image {exc}") from None
        mask = self._checked_size(index, self.read_label(index, image.shape[:2]), image.shape[:2])
        return image, mask

    def _checked_size(self, index: int, mask: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
        if mask.shape != tuple(image_shape):
            hint = ""
            orientation = exif_orientation(self.images[index])
            if orientation in ROTATING_ORIENTATIONS and mask.shape == tuple(image_shape)[::-1]:
                # Viewers and annotation tools show the photo turned by its EXIF tag; the
                # mask was drawn on that view. Labels stay on the stored pixels, so say so.
                hint = (
                    f"; the image has EXIF orientation {orientation}, so viewers show it turned to the mask's "
                    "size: segzoo reads images as stored, so save it upright (EXIF orientation applied)"
                )
            raise ValueError(
                f"size mismatch: image {self.images[index]} is {image_shape[1]}x{image_shape[0]} "
                f"but its mask {self.mask_source(index)} is {mask.shape[1]}x{mask.shape[0]} (width x height){hint}"
            )
        return mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load_raw(index)
        out = self.transform(image=image, mask=mask)
        image_t, mask_t = out["image"], out["mask"]
        if not isinstance(image_t, torch.Tensor):
            image_t = torch.from_numpy(np.ascontiguousarray(image_t.transpose(2, 0, 1)))
        if not isinstance(mask_t, torch.Tensor):
            mask_t = torch.from_numpy(np.ascontiguousarray(mask_t))
        return image_t.float(), mask_t.long()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.info.name!r}, samples={len(self)}, classes={self.info.num_classes})"


def pair_by_stem(
    images_dir: Path, masks_dir: Path, mask_suffixes: Sequence[str] = (".png",), missing: str = "error"
) -> tuple[list[Path], list[Path], list[str]]:
    """Match images to masks by file stem. Returns ``(images, masks, problems)``;
    ``missing="error"`` raises when an image has no mask or a mask no image."""
    if not images_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {images_dir}")
    if not masks_dir.is_dir():
        raise FileNotFoundError(f"mask folder not found: {masks_dir}")
    images = {p.stem: p for p in sorted(images_dir.iterdir()) if is_image_file(p)}
    masks = {p.stem: p for p in sorted(masks_dir.iterdir()) if p.suffix.lower() in mask_suffixes}
    problems = [f"image without mask: {images[s]}" for s in sorted(images.keys() - masks.keys())]
    problems += [f"mask without image: {masks[s]}" for s in sorted(masks.keys() - images.keys())]
    if problems and missing == "error":
        raise FileNotFoundError(summarize_problems(problems))
    stems = sorted(images.keys() & masks.keys())
    return [images[s] for s in stems], [masks[s] for s in stems], problems


def option_hint(option: str, value: str, flag: bool = True) -> str:
    """How to pass data set option ``option``, for messages people read on the command
    line: the flag of ``segzoo data check`` and the form ``segzoo train`` takes (Python
    callers pass the same name as a keyword). ``flag=False``: no flag of its own."""
    train = f"--dataset-option {option}={value}"
    if not flag:
        return train
    return f"--{option.replace('_', '-')} {value} (segzoo train: {train})"


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag of an image file (1, upright, when absent or unreadable).
    Reads the header only."""
    try:
        with Image.open(path) as pil:
            return orientation_of(pil)
    except (UnidentifiedImageError, OSError):
        return 1


def summarize_problems(problems: list[str], limit: int = 5) -> str:
    """One line for an error message; ``segzoo data check`` prints the full list."""
    text = "; ".join(problems[:limit])
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{text}{more} (run `segzoo data check` for the full report)"


def check_missing_option(missing: str) -> None:
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', not {missing!r}")


class MaskFileDataset(SegmentationDataset):
    """A data set with one label PNG per image (``self.masks``), its stored values mapped
    to classes by the look-up table ``_lut`` (see :func:`make_lut`)."""

    _lut: np.ndarray
    masks: list[Path]

    def mask_source(self, index: int) -> str:
        return str(self.masks[index])

    def read_label(self, index: int, image_shape: tuple[int, int]) -> np.ndarray:
        path = self.masks[index]
        return apply_lut(read_mask_file(path), self._lut, path)
