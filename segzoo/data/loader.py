"""DataLoaders that keep the accelerator fed and augment differently in every worker.

albumentations ``Compose`` keeps its own random generator, which forked workers inherit
unchanged: without :func:`seed_worker` every worker (and, without persistent workers,
every epoch) would repeat the same crops and flips.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info


def _transforms(dataset: object) -> list:
    """The albumentations pipelines inside ``dataset`` (through Subset / ConcatDataset)."""
    found = []
    if hasattr(dataset, "transform") and hasattr(dataset.transform, "set_random_seed"):
        found.append(dataset.transform)
    if hasattr(dataset, "dataset"):
        found += _transforms(dataset.dataset)
    for inner in getattr(dataset, "datasets", []):
        found += _transforms(inner)
    return found


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: a distinct, reproducible seed per worker and epoch (derived from
    the loader's generator) for albumentations, NumPy and ``random``. (OpenCV threading
    is switched off where :mod:`segzoo.data.base` is imported, not here: changing it in
    a forked worker can deadlock.)"""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = get_worker_info()
    if info is not None:
        for transform in _transforms(info.dataset):
            transform.set_random_seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    num_workers: int = 2,
    seed: int = 0,
    pin_memory: bool | None = None,
    prefetch_factor: int = 4,
) -> DataLoader:
    """Training loaders shuffle and drop the last incomplete batch (BatchNorm needs
    batches of 2 or more); evaluation loaders keep order and every sample. Workers
    persist across epochs and prefetch ``prefetch_factor`` batches each; memory is pinned
    when CUDA is available so host-to-device copies can overlap compute."""
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    extra = {"persistent_workers": True, "prefetch_factor": prefetch_factor} if num_workers > 0 else {}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and len(dataset) > batch_size,  # type: ignore[arg-type]
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
        **extra,
    )
