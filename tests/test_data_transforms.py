"""The training augmentation (``segzoo train``'s, also public as TrainingSamples) keeps image
and mask aligned and never invents labels; data sets normalise deterministically; loader
workers augment differently, each sample as its seed, epoch and index say."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from segzoo.data.base import DatasetInfo, normalize_sample
from segzoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TrainingSamples, denormalize
from segzoo.training.augment import AugmentConfig, finish_batch
from segzoo.training.data import AugmentedSamples, EpochBatches, PreparedSamples, train_batches

COLOURS = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]], np.uint8)
IGNORE = 255
NO_NORMALISATION = {"mean": (0, 0, 0), "std": (1, 1, 1)}


def blocks(h=90, w=120, cell=15, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A mask of square cells with random classes, and an image whose colour is its class."""
    rng = np.random.default_rng(seed)
    mask = np.kron(rng.integers(0, len(COLOURS), (h // cell, w // cell)), np.ones((cell, cell), int)).astype(np.uint8)
    return COLOURS[mask], mask


class Blocks(torch.utils.data.Dataset):
    """``size`` copies of one image and mask, as a segzoo data set offers them (``load_raw``)."""

    def __init__(self, image: np.ndarray, mask: np.ndarray, ignore_index: int | None = IGNORE, size: int = 1):
        names = [f"class{i}" for i in range(len(COLOURS))]
        self.info = DatasetInfo("blocks", names, [tuple(c) for c in COLOURS.tolist()], ignore_index)
        self.image, self.mask, self.size = image, mask, size

    def __len__(self) -> int:
        return self.size

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.image, self.mask


def misaligned_pixels(image: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of interior pixels (3 px away from any label edge or the border) whose colour is not their
    label's colour. Interpolation only blends colours at edges, so aligned pairs score ~0."""
    rgb = (image.permute(1, 2, 0).numpy() * 255).round()  # samples built with mean 0, std 1
    mask = mask.numpy()
    interior = np.zeros(mask.shape, bool)
    for label in range(len(COLOURS)):
        interior |= cv2.erode((mask == label).astype(np.uint8), np.ones((7, 7), np.uint8), borderValue=0) > 0
    if not interior.any():
        return 0.0
    expected = COLOURS[mask[interior]]
    return float((np.abs(rgb[interior] - expected).max(axis=1) > 2).mean())


def test_training_augmentation_keeps_image_and_mask_aligned():
    samples = TrainingSamples(Blocks(*blocks()), (64, 80), color_jitter=0, seed=0, **NO_NORMALISATION)
    for epoch in range(40):
        samples.set_epoch(epoch)
        image, mask = samples[0]
        assert image.shape == (3, 64, 80) and mask.shape == (64, 80)
        assert misaligned_pixels(image, mask) < 0.002


def test_alignment_check_catches_a_flip_applied_to_the_image_only():
    image, mask = blocks()
    flipped = torch.from_numpy(np.ascontiguousarray(image[:, ::-1])).permute(2, 0, 1).float() / 255
    assert misaligned_pixels(flipped, torch.from_numpy(mask)) > 0.3


def test_masks_are_resized_nearest_neighbour_only():
    image, mask = blocks()
    mask = np.where(mask % 2 == 0, 0, 200).astype(np.uint8)  # bilinear would make values in between
    data = Blocks(image, mask)
    for samples in (
        TrainingSamples(data, (50, 70), scale=(0.3, 3.0), seed=1),
        TrainingSamples(data, (50, 70), short_side=40, seed=1),
        TrainingSamples(data, (57, 101), short_side=57, scale=(1.0, 1.0), seed=1),
    ):
        for epoch in range(10):
            samples.set_epoch(epoch)
            assert set(np.unique(samples[0][1].numpy())) <= {0, 200, IGNORE}


def test_training_padding_is_the_ignore_index_or_a_label_outside_the_classes():
    image, mask = blocks(30, 30, 15)
    padded = TrainingSamples(Blocks(image, mask), (60, 60), scale=(1.0, 1.0), seed=0)[0][1]
    assert padded.eq(IGNORE).float().mean() == pytest.approx(0.75)
    # Without an ignore index the padding carries a label no class has (the loss ignores it).
    samples = TrainingSamples(Blocks(image, mask, ignore_index=None), (60, 60), scale=(1.0, 1.0), seed=0)
    assert samples.pad_label >= len(COLOURS)
    assert set(np.unique(samples[0][1].numpy())) <= set(np.unique(mask)) | {samples.pad_label}


def test_normalisation_is_deterministic_and_evaluation_resizes_without_distorting():
    image, mask = blocks(60, 120)
    a, b = normalize_sample(image=image, mask=mask), normalize_sample(image=image, mask=mask)
    assert torch.equal(a["image"], b["image"]) and a["image"].shape == (3, 60, 120)
    assert torch.equal(a["mask"], torch.from_numpy(mask))
    expected = (image / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(a["image"].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(denormalize(a["image"]), image)

    # Validation and segzoo evaluate: the short side to 32 keeping the aspect ratio, and
    # the labels at full resolution (scores are computed on the original mask).
    small, labels = PreparedSamples(Blocks(image, mask), short_side=32, train=False)[0]
    assert small.shape == (3, 32, 64)
    assert torch.equal(labels, torch.from_numpy(mask))


def test_training_samples_are_what_segzoo_train_trains_on():
    data = Blocks(*blocks(90, 120, 15), size=6)
    samples = TrainingSamples(data, (48, 64), short_side=60, seed=3)
    fill = tuple(round(m * 255) for m in IMAGENET_MEAN)
    source = AugmentedSamples(PreparedSamples(data, 60, train=True), AugmentConfig((48, 64)), 3, fill, IGNORE)
    batches = EpochBatches(len(data), 3, seed=3)
    for epoch in range(2):
        batches.set_epoch(epoch)
        samples.set_epoch(epoch)
        for keys, (images, masks, jitter) in zip(batches, train_batches(source, batches, 0, False)):
            ours = [samples[key.index] for key in keys]
            expected = finish_batch(images, jitter, IMAGENET_MEAN, IMAGENET_STD)
            assert torch.equal(torch.stack([x for x, _ in ours]), expected)
            assert torch.equal(torch.stack([y for _, y in ours]), masks.long())


def test_loader_workers_augment_differently_and_as_without_workers():
    samples = TrainingSamples(Blocks(*blocks(64, 64, 8), size=8), (32, 32), color_jitter=0)

    def masks(num_workers: int, epoch: int) -> list[torch.Tensor]:
        samples.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(samples, batch_size=1, num_workers=num_workers)
        return [m for _, m in loader]

    batches = masks(2, 0)
    distinct = {tuple(m.flatten().tolist()) for m in batches}
    assert len(distinct) == len(batches)  # forked workers would otherwise repeat each other
    assert all(torch.equal(a, b) for a, b in zip(batches, masks(0, 0)))
    assert not all(torch.equal(a, b) for a, b in zip(batches, masks(2, 1)))


def test_persistent_workers_see_the_new_epoch():
    samples = TrainingSamples(Blocks(*blocks(64, 64, 8), size=4), (32, 32), color_jitter=0)
    loader = torch.utils.data.DataLoader(samples, batch_size=4, num_workers=1, persistent_workers=True)
    for epoch in range(3):
        samples.set_epoch(epoch)
        _, masks = next(iter(loader))
        assert torch.equal(masks, torch.stack([samples[i][1] for i in range(4)]))  # this epoch's draws


def test_loader_workers_survive_a_parent_that_used_opencv_threads(tmp_path):
    # Regression: reconfiguring OpenCV threads inside a forked worker deadlocked there.
    # Workers decode with OpenCV, as segzoo train's streaming loader does.
    script = f"""
import time
import cv2, numpy as np, torch
from segzoo.data import get_dataset
from segzoo.data.transforms import TrainingSamples
for i in range(4):
    cv2.imwrite(r"{tmp_path}/images/{{}}.jpg".format(i), np.zeros((600, 800, 3), np.uint8))
    cv2.imwrite(r"{tmp_path}/masks/{{}}.png".format(i), np.zeros((600, 800), np.uint8))
cv2.setNumThreads(2)  # as if another library turned OpenCV's thread pool back on
image = np.zeros((600, 800, 3), np.uint8)
for _ in range(5):
    cv2.resize(image, (1600, 1200))
time.sleep(0.5)  # let the idle pool threads block on their condition variable
data = TrainingSamples(get_dataset("folder", r"{tmp_path}", "all", classes=["a", "b"]), (64, 64))
print(sum(len(b) for b, _ in torch.utils.data.DataLoader(data, 2, num_workers=2)))
"""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the hung workers too
        process.communicate()
        pytest.fail("DataLoader workers deadlocked")
    assert process.returncode == 0 and out.strip() == "4", err
