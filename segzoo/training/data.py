"""Feeding the training loop: epoch order, sharding over processes, and the two ways of
getting batches to the model.

* **Resident** (``--data-on-gpu``): every image is decoded once and kept as ``uint8`` in the
  memory of the training device; batches are cut and augmented there with torch ops, so a
  GPU never waits on the CPU. Used automatically on a GPU when the data set takes less than
  a quarter of its memory.
* **Streaming**: data-loader workers decode and augment each sample on the CPU (the same
  torch functions) and hand over ``uint8`` batches.

Validation never augments: each image at the data set's scale and its full-resolution mask,
one image at a time, so that ``segzoo evaluate`` reproduces the number exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from segzoo.training.augment import (
    AugmentConfig,
    augment_geometry,
    prepare_image,
    prepare_mask,
    sample_params,
)


class PreparedSamples(Dataset):
    """``(image uint8 3 x H' x W', mask uint8)`` of a segzoo data set, the image resized so its
    short side is ``short_side``. The mask is resized with it (``train=True``) or kept at full
    resolution (validation: scores are computed on the original labels)."""

    def __init__(self, dataset: Any, short_side: int | None, train: bool) -> None:
        self.dataset = dataset
        self.short_side = short_side
        self.train = train

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.dataset.load_raw(index)
        image_t = prepare_image(image, self.short_side)
        mask_t = prepare_mask(mask, tuple(image_t.shape[1:]) if self.train else None)
        return image_t, mask_t


@dataclass(frozen=True)
class SampleKey:
    index: int
    epoch: int


class AugmentedSamples(Dataset):
    """Training samples for the streaming path: ``ds[SampleKey(i, epoch)]`` is
    ``(image uint8 3 x h x w, mask uint8 h x w, jitter factors (3,))``."""

    def __init__(
        self, samples: PreparedSamples, augment: AugmentConfig, seed: int, fill: Sequence[int], pad_label: int
    ) -> None:
        self.samples, self.augment, self.seed = samples, augment, seed
        self.fill, self.pad_label = tuple(fill), pad_label

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image, mask = self.samples[key.index]
        params = sample_params(self.augment, self.seed, key.epoch, key.index)
        image, mask = augment_geometry(image, mask, params, self.augment.size, self.fill, self.pad_label)
        return image, mask, torch.tensor(params.jitter, dtype=torch.float32)


class EpochBatches:
    """Batches of :class:`SampleKey` for one process: a shuffled order per epoch (seeded by
    ``seed`` and the epoch), split over ``world_size`` processes, every process getting the
    same number of full batches (DDP needs equal step counts). ``limit`` caps the batches
    per epoch (quick runs)."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        limit: int | None = None,
    ) -> None:
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size, self.limit = rank, world_size, limit
        self.epoch = 0
        if len(self) == 0:
            raise ValueError(
                f"the training set has {num_samples} images: too few for one batch of {batch_size} "
                f"per process on {world_size} process(es); lower --batch-size"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        batches = (self.num_samples // self.world_size) // self.batch_size
        return batches if self.limit is None else min(batches, self.limit)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        mine = order[self.rank :: self.world_size]
        for b in range(len(self)):
            chunk = mine[b * self.batch_size : (b + 1) * self.batch_size]
            yield [SampleKey(i, self.epoch) for i in chunk]


def _collate(batch: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.stack(items) for items in zip(*batch))


class ResidentTrainSet:
    """A training set decoded once into ``device`` memory; :meth:`batch` augments there."""

    def __init__(
        self,
        samples: PreparedSamples,
        augment: AugmentConfig,
        seed: int,
        fill: Sequence[int],
        pad_label: int,
        device: torch.device,
        num_workers: int = 0,
        progress: bool = True,
    ) -> None:
        self.augment, self.seed, self.fill, self.pad_label = augment, seed, tuple(fill), pad_label
        self.images, self.masks = load_resident(samples, device, num_workers, progress, "train")

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, keys: Sequence[SampleKey]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, masks, jitter = [], [], []
        for key in keys:
            params = sample_params(self.augment, self.seed, key.epoch, key.index)
            image, mask = augment_geometry(
                self.images[key.index], self.masks[key.index], params, self.augment.size, self.fill, self.pad_label
            )
            images.append(image)
            masks.append(mask)
            jitter.append(params.jitter)
        return torch.stack(images), torch.stack(masks), torch.tensor(jitter, dtype=torch.float32)


def load_resident(
    samples: Dataset, device: torch.device, num_workers: int, progress: bool, what: str
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Decode every sample (in ``num_workers`` processes) and keep it on ``device``."""
    loader = DataLoader(samples, batch_size=None, shuffle=False, num_workers=num_workers)
    images, masks = [], []
    for image, mask in tqdm(loader, desc=f"loading {what} set to {device}", disable=not progress, leave=False):
        images.append(image.to(device, non_blocking=True))
        masks.append(mask.to(device, non_blocking=True))
    return images, masks


def estimate_bytes(samples: PreparedSamples) -> int:
    """Memory a resident copy takes: the first image's size times the number of images."""
    image, mask = samples[0]
    return (image.numel() + mask.numel()) * len(samples)


def fits_on_device(num_bytes: int, device: torch.device, fraction: float = 0.25) -> bool:
    """Whether a resident copy takes less than ``fraction`` of the device's memory (on the
    CPU: of physical RAM, where it saves decoding every image again every epoch)."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    elif device.type == "cpu" and hasattr(os, "sysconf"):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    else:
        return False
    return num_bytes < fraction * total


def train_batches(
    source: ResidentTrainSet | AugmentedSamples,
    batches: EpochBatches,
    num_workers: int,
    pin_memory: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | DataLoader:
    """An iterable over one epoch of ``(images uint8, masks uint8, jitter)`` batches."""
    if isinstance(source, ResidentTrainSet):
        return (source.batch(keys) for keys in batches)
    return DataLoader(
        source,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def shard(indices: Sequence[int], rank: int, world_size: int) -> list[int]:
    """This process's share of the validation images: no padding and no duplicates, so the
    summed confusion matrices count every image exactly once."""
    return list(indices)[rank::world_size]


class IndexSubset(Dataset):
    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]


def validation_samples(
    samples: PreparedSamples,
    indices: Sequence[int],
    resident: list[tuple[torch.Tensor, torch.Tensor]] | None,
    num_workers: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]] | DataLoader:
    """One ``(image uint8 3 x H' x W', mask uint8 H x W)`` at a time, from device memory when
    the validation set is resident (``resident`` then holds the samples of ``indices``, in
    order), else decoded by data-loader workers."""
    if resident is not None:
        return iter(resident)
    return DataLoader(IndexSubset(samples, indices), batch_size=None, shuffle=False, num_workers=num_workers)
