"""Training augmentation written with torch ops, so it runs where the data is: on the GPU
for a data set kept in GPU memory, or on the CPU in data-loader workers. Both paths call
the same functions with the same per-sample random numbers, so where the data lives does
not change what the model sees.

A sample goes through three stages:

1. :func:`prepare_image` / :func:`prepare_mask` (once per image): resize so that the
   shorter side is ``short_side`` pixels (the scale the data set is used at).
2. :func:`augment_geometry` (per sample): random scale, random crop (or padding, placed at
   a random position, with the mean colour and the ignore label) to the training size,
   horizontal flip. Images stay ``uint8``.
3. :func:`finish_batch` (per batch, on the training device): colour jitter and ImageNet
   normalisation of the whole ``uint8`` batch.

Random numbers come from :func:`sample_params`, seeded by ``(seed, epoch, sample index)``:
an epoch's augmentation is the same whatever the number of workers, the device, or
whether the run was resumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    size: tuple[int, int]  # output (height, width)
    scale: tuple[float, float] = (0.5, 2.0)  # random scale range (1, 1: none)
    hflip: bool = True
    color_jitter: float = 0.2  # brightness, contrast and saturation factors in [1 - j, 1 + j]
    enabled: bool = True  # False: centre crop/pad only (no random scale, flip or jitter)


@dataclass(frozen=True)
class AugmentParams:
    scale: float
    offset_y: float  # in [0, 1): where the crop (or the padded image) sits
    offset_x: float
    flip: bool
    jitter: tuple[float, float, float]  # brightness, contrast, saturation factors


def sample_params(config: AugmentConfig, seed: int, epoch: int, index: int) -> AugmentParams:
    """The random choices for sample ``index`` in ``epoch``, from a generator of its own."""
    if not config.enabled:
        return AugmentParams(1.0, 0.5, 0.5, False, (1.0, 1.0, 1.0))
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint64)
    generator = torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
    u = torch.rand(7, generator=generator, dtype=torch.float64).tolist()
    low, high = config.scale
    j = config.color_jitter
    return AugmentParams(
        scale=low + (high - low) * u[0],
        offset_y=u[1],
        offset_x=u[2],
        flip=config.hflip and u[3] < 0.5,
        jitter=tuple(1.0 + j * (2.0 * v - 1.0) for v in u[4:7]),
    )


def short_side_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(height, width) after resizing so the shorter side is ``short_side`` (None: unchanged)."""
    if not short_side:
        return height, width
    factor = short_side / min(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``uint8 3 x H x W`` -> ``uint8 3 x h x w``, bilinear with anti-aliasing when shrinking."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Label map ``H x W`` -> ``h x w`` by nearest neighbour (labels are never blended)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    out = F.interpolate(mask[None, None].float(), size=size, mode="nearest")
    return out[0, 0].to(mask.dtype)


def _as_tensor(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array
    # Arrays from PIL are read-only; torch wants writable memory (copies only then).
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))


def prepare_image(image: np.ndarray | torch.Tensor, short_side: int | None) -> torch.Tensor:
    """RGB ``uint8 H x W x 3`` (numpy or tensor) -> ``uint8 3 x H' x W'`` at the data set's scale."""
    tensor = _as_tensor(image)
    tensor = tensor.permute(2, 0, 1).contiguous()
    return resize_image(tensor, short_side_size(tensor.shape[1], tensor.shape[2], short_side))


def prepare_mask(mask: np.ndarray | torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``uint8 H x W`` labels, resized (nearest) to ``size`` when given."""
    tensor = _as_tensor(mask).to(torch.uint8)
    return tensor if size is None else resize_mask(tensor, size)


def _placement(source: int, target: int, offset: float) -> tuple[slice, slice]:
    """Source and destination slices along one axis: crop when the source is longer, else
    paste it at a position chosen by ``offset`` in [0, 1)."""
    slack = abs(source - target)
    start = min(int(offset * (slack + 1)), slack)
    if source >= target:
        return slice(start, start + target), slice(0, target)
    return slice(0, source), slice(start, start + source)


def augment_geometry(
    image: torch.Tensor,
    mask: torch.Tensor,
    params: AugmentParams,
    size: tuple[int, int],
    fill: Sequence[int],
    pad_label: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale, crop or pad to ``size``, flip. ``uint8 3 x H x W`` and ``uint8 H x W`` in and out,
    on the tensors' device. Padding is ``fill`` (RGB) in the image and ``pad_label`` in the mask."""
    height, width = image.shape[-2:]
    if params.scale != 1.0:
        scaled = (max(1, round(height * params.scale)), max(1, round(width * params.scale)))
        image, mask = resize_image(image, scaled), resize_mask(mask, scaled)
        height, width = scaled
    src_y, dst_y = _placement(height, size[0], params.offset_y)
    src_x, dst_x = _placement(width, size[1], params.offset_x)
    out_image = image.new_empty((3, *size))
    for channel, value in enumerate(fill):  # fill_ with a number: no host-to-device copy
        out_image[channel].fill_(value)
    out_image[:, dst_y, dst_x] = image[:, src_y, src_x]
    out_mask = mask.new_full(size, pad_label)
    out_mask[dst_y, dst_x] = mask[src_y, src_x]
    if params.flip:
        out_image, out_mask = out_image.flip(-1), out_mask.flip(-1)
    return out_image, out_mask


_GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``uint8 N x 3 x H x W`` (0-255) -> float32, ``(x / 255 - mean) / std`` per channel.

    Training, validation and ``segzoo evaluate`` all normalise through this function.
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean_t) / std_t


def color_jitter(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast and saturation of a float batch in [0, 255]; ``factors`` N x 3."""
    factors = factors.to(images.device, torch.float32)
    brightness, contrast, saturation = (factors[:, i].view(-1, 1, 1, 1) for i in range(3))
    grey_weights = torch.tensor(_GREY, device=images.device).view(1, 3, 1, 1)
    images = (images * brightness).clamp(0, 255)
    mean_grey = (images * grey_weights).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    images = ((images - mean_grey) * contrast + mean_grey).clamp(0, 255)
    grey = (images * grey_weights).sum(1, keepdim=True)
    return ((images - grey) * saturation + grey).clamp(0, 255)


def finish_batch(
    images: torch.Tensor, jitter: torch.Tensor | None, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """``uint8`` batch -> colour-jittered (when ``jitter`` is given), normalised float batch."""
    if jitter is not None and not torch.all(jitter == 1.0):
        jittered = color_jitter(images.float(), jitter).round_().to(torch.uint8)
        return normalize(jittered, mean, std)
    return normalize(images, mean, std)
