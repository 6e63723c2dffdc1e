"""Albumentations pipelines for training and evaluation.

Both take ``image=`` (uint8 H x W x 3 RGB) and ``mask=`` (H x W labels) numpy arrays and
return ``{"image": float tensor 3 x H x W, "mask": uint8 tensor H x W}``. Geometric steps
move image and mask together; masks are only ever resized with nearest-neighbour
interpolation, so no resize invents a label. It is OpenCV's pixel-centred
``INTER_NEAREST_EXACT``: plain ``INTER_NEAREST`` samples half a pixel off the grid that
bilinear image resizing uses, shifting label edges against the photo. Images are
normalised with the statistics the encoders were pretrained with: every encoder in the
zoo (VGG16, ResNet, EfficientNet) uses ImageNet's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2

# albumentations asks PyPI for a newer version on import (up to 2 s, and a warning offline).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IGNORE_INDEX = 255


def _mean_fill(mean: Sequence[float]) -> tuple[int, ...]:
    """Pad images with the mean colour, which normalises to zero."""
    return tuple(round(m * 255) for m in mean)


def _padding(height: int, width: int, ignore_index: int | None, mean: Sequence[float], position: str) -> A.PadIfNeeded:
    if ignore_index is None:
        # No label to mark padding as "not scored": mirror real pixels and their labels.
        return A.PadIfNeeded(height, width, position=position, border_mode=cv2.BORDER_REFLECT_101)
    return A.PadIfNeeded(
        height, width, position=position, border_mode=cv2.BORDER_CONSTANT, fill=_mean_fill(mean), fill_mask=ignore_index
    )


def train_transform(
    size: tuple[int, int],
    *,
    scale: tuple[float, float] = (0.5, 2.0),
    base_size: int | None = None,
    hflip: bool = True,
    color_jitter: float = 0.2,
    ignore_index: int | None = DEFAULT_IGNORE_INDEX,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    seed: int | None = None,
) -> A.Compose:
    """Random scale, pad, random crop to ``size`` (height, width), flip and colour jitter.

    The scale is relative to the stored image, or, with ``base_size``, the shorter side is
    resized to ``base_size * s`` for ``s`` in ``scale`` (one resize, for data sets whose
    photos are much larger than the crop). Crops larger than the scaled image are padded
    with ``ignore_index`` in the mask (pass ``DatasetInfo.ignore_index``; with ``None``
    the padding mirrors the image and its labels instead). ``seed`` fixes the random
    sequence (:func:`segzoo.data.loader.seed_worker` reseeds it per loader worker).
    """
    height, width = size
    low, high = scale
    if not 0 < low <= high:
        raise ValueError(f"scale must be (low, high) with 0 < low <= high, not {scale}")
    steps: list[A.BasicTransform] = []
    if base_size is not None:
        sizes = sorted({max(8, round(base_size * (low + (high - low) * i / 16))) for i in range(17)})
        steps.append(
            A.SmallestMaxSize(
                max_size=sizes, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST_EXACT
            )
        )
    elif (low, high) != (1.0, 1.0):
        steps.append(
            A.RandomScale(
                scale_limit=(low - 1.0, high - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                p=1.0,
            )
        )
    steps += [
        _padding(height, width, ignore_index, mean, position="center"),
        A.RandomCrop(height, width),
    ]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if color_jitter > 0:
        steps.append(
            A.ColorJitter(
                brightness=color_jitter,
                contrast=color_jitter,
                saturation=color_jitter,
                hue=min(0.05, color_jitter / 4),
                p=0.8,
            )
        )
    steps += [A.Normalize(mean=mean, std=std), ToTensorV2()]
    return A.Compose(steps, seed=seed)


def eval_transform(
    size: tuple[int, int] | None = None,
    *,
    ignore_index: int | None = DEFAULT_IGNORE_INDEX,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> A.Compose:
    """No random change. Without ``size``: normalise only, at full size (the models take
    any height and width). With ``size`` (height, width): shrink or enlarge to fit inside
    it keeping the aspect ratio, then pad at the bottom and right to exactly ``size``
    (mask padding is ``ignore_index``), so images of different shapes batch together and
    ``prediction[:h, :w]`` undoes the padding."""
    steps: list[A.BasicTransform] = []
    if size is not None:
        height, width = size
        steps += [
            A.LongestMaxSize(
                max_size_hw=(height, width), interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST_EXACT
            ),
            _padding(height, width, ignore_index, mean, position="top_left"),
        ]
    steps += [A.Normalize(mean=mean, std=std), ToTensorV2()]
    return A.Compose(steps)


def denormalize(image, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):  # noqa: ANN001, ANN201
    """Undo :func:`A.Normalize` on a ``3 x H x W`` tensor: uint8 ``H x W x 3`` numpy (for display)."""
    import torch

    mean_t = torch.as_tensor(mean, dtype=image.dtype, device=image.device)[:, None, None]
    std_t = torch.as_tensor(std, dtype=image.dtype, device=image.device)[:, None, None]
    rgb = ((image * std_t + mean_t) * 255).round().clamp(0, 255).byte()
    return rgb.permute(1, 2, 0).cpu().numpy()
