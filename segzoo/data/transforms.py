"""Model inputs from samples, for your own PyTorch loop: normalisation, and the training
augmentation ``segzoo train`` applies (:mod:`segzoo.training.augment`, the one pipeline).

>>> train = TrainingSamples(get_dataset("camvid", root, "train"), (360, 480), short_side=360)  # doctest: +SKIP
>>> loader = DataLoader(train, batch_size=8, shuffle=True, drop_last=True, num_workers=2)  # doctest: +SKIP
>>> for epoch in range(epochs):  # doctest: +SKIP
...     train.set_epoch(epoch)
...     for images, masks in loader:  # float 8 x 3 x 360 x 480 normalised, long 8 x 360 x 480
...         loss = criterion(model(images), masks)  # ignore_index=train.pad_label

Sample ``i`` of epoch ``e`` is augmented with random numbers drawn from ``(seed, e, i)``
alone: the same in any number of loader workers, and the same as ``segzoo train`` with
that seed, size, scale and short side. Masks are only resized nearest-neighbour. Every
encoder in the zoo was pretrained with ImageNet's normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from segzoo.data.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegmentationDataset,
    denormalize,
    normalize_sample,
)
from segzoo.training.augment import AugmentConfig, finish_batch
from segzoo.training.data import AugmentedSamples, PreparedSamples, SampleKey

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PAD_LABEL", "TrainingSamples", "denormalize", "normalize_sample"]

# Mask value of padding when the data set has no ignore index of its own (as segzoo train).
PAD_LABEL = 255


class TrainingSamples(Dataset):
    """``ds[i]`` is ``(image float 3 x h x w normalised, mask long h x w)``: sample ``i`` of
    ``dataset`` resized so its short side is ``short_side`` (``None``: as stored), then
    scaled by a random factor in ``scale``, cropped (or padded, with the mean colour and
    :attr:`pad_label`) to ``size``, flipped and colour-jittered (factors in
    ``1 +- color_jitter``) as in the current epoch (:meth:`set_epoch`).
    """

    def __init__(
        self,
        dataset: SegmentationDataset,
        size: tuple[int, int],
        *,
        short_side: int | None = None,
        scale: tuple[float, float] = (0.5, 2.0),
        hflip: bool = True,
        color_jitter: float = 0.2,
        seed: int = 0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        ignore_index = dataset.info.ignore_index
        # Padded pixels carry a label that is no class: pass it to the loss as ignore_index.
        self.pad_label = PAD_LABEL if ignore_index is None else ignore_index
        self.mean, self.std = tuple(mean), tuple(std)
        augment = AugmentConfig(tuple(size), tuple(scale), hflip, color_jitter)
        fill = tuple(round(m * 255) for m in mean)  # normalises to zero
        prepared = PreparedSamples(dataset, short_side, train=True)
        self.samples = AugmentedSamples(prepared, augment, seed, fill, self.pad_label)
        # Shared memory, so that loader workers (persistent ones too) see set_epoch.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentation of ``epoch`` from now on (call it before each epoch)."""
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask, jitter = self.samples[SampleKey(index, int(self._epoch))]
        return finish_batch(image[None], jitter[None], self.mean, self.std)[0], mask.long()
