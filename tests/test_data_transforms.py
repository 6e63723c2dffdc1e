"""Augmentation keeps image and mask aligned, never invents labels, and evaluation is
deterministic; loader workers augment differently."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2

from segzoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize, eval_transform, train_transform

COLOURS = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]], np.uint8)
IGNORE = 255


def blocks(h=90, w=120, cell=15, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A mask of square cells with random classes, and an image whose colour is its class."""
    rng = np.random.default_rng(seed)
    mask = np.kron(rng.integers(0, len(COLOURS), (h // cell, w // cell)), np.ones((cell, cell), int)).astype(np.uint8)
    return COLOURS[mask], mask


def misaligned_pixels(image: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of interior pixels (3 px away from any label edge or the border) whose colour is not their
    label's colour. Interpolation only blends colours at edges, so aligned pairs score ~0."""
    rgb = (image.permute(1, 2, 0).numpy() * 255).round()  # transforms built with mean 0, std 1
    mask = mask.numpy()
    interior = np.zeros(mask.shape, bool)
    for label in range(len(COLOURS)):
        interior |= cv2.erode((mask == label).astype(np.uint8), np.ones((7, 7), np.uint8), borderValue=0) > 0
    if not interior.any():
        return 0.0
    expected = COLOURS[mask[interior]]
    return float((np.abs(rgb[interior] - expected).max(axis=1) > 2).mean())


def test_train_transform_keeps_image_and_mask_aligned():
    image, mask = blocks()
    pipeline = train_transform((64, 80), color_jitter=0, mean=(0, 0, 0), std=(1, 1, 1), seed=0, ignore_index=IGNORE)
    for _ in range(40):
        out = pipeline(image=image, mask=mask)
        assert out["image"].shape == (3, 64, 80) and out["mask"].shape == (64, 80)
        assert misaligned_pixels(out["image"], out["mask"]) < 0.002


def test_alignment_check_catches_a_flip_applied_to_the_image_only():
    image, mask = blocks()
    flip_image_only = A.Compose([A.Normalize(mean=(0, 0, 0), std=(1, 1, 1)), ToTensorV2()])
    out = flip_image_only(image=np.ascontiguousarray(image[:, ::-1]), mask=mask)
    assert misaligned_pixels(out["image"], out["mask"]) > 0.3


def test_masks_are_resized_nearest_neighbour_only():
    image, mask = blocks()
    mask = np.where(mask % 2 == 0, 0, 200).astype(np.uint8)  # bilinear would make values in between
    for pipeline in (
        train_transform((50, 70), scale=(0.3, 3.0), seed=1, ignore_index=IGNORE),
        train_transform((50, 70), base_size=40, seed=1, ignore_index=IGNORE),
        eval_transform((57, 101), ignore_index=IGNORE),
    ):
        for _ in range(10):
            values = set(np.unique(pipeline(image=image, mask=mask)["mask"].numpy()))
            assert values <= {0, 200, IGNORE}


def test_train_padding_uses_ignore_index_or_mirrors():
    image, mask = blocks(30, 30, 15)
    out = train_transform((60, 60), scale=(1.0, 1.0), seed=0, ignore_index=IGNORE)(image=image, mask=mask)
    assert (out["mask"] == IGNORE).float().mean() == pytest.approx(0.75)
    out = train_transform((60, 60), scale=(1.0, 1.0), seed=0, ignore_index=None)(image=image, mask=mask)
    assert set(np.unique(out["mask"].numpy())) <= set(np.unique(mask))  # reflected labels, no 255


def test_eval_transform_is_deterministic_and_pads_instead_of_distorting():
    image, mask = blocks(60, 120)
    full = eval_transform()
    a, b = full(image=image, mask=mask), full(image=image, mask=mask)
    assert torch.equal(a["image"], b["image"]) and a["image"].shape == (3, 60, 120)
    assert torch.equal(a["mask"], torch.from_numpy(mask))
    expected = (image / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(a["image"].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(denormalize(a["image"]), image)

    boxed = eval_transform((64, 64), ignore_index=IGNORE)(image=image, mask=mask)
    assert boxed["image"].shape == (3, 64, 64)
    # 120x60 fits 64x64 as 64x32 (aspect kept), padded below with ignored pixels
    assert (boxed["mask"][32:] == IGNORE).all() and not (boxed["mask"][:32] == IGNORE).any()
    assert boxed["image"][:, 32:].abs().max() < 0.03  # padding is the mean colour: ~0 after normalising


def test_loader_workers_augment_differently():
    from segzoo.data.loader import make_loader

    class Same(torch.utils.data.Dataset):
        def __init__(self):
            self.transform = train_transform((32, 32), scale=(0.5, 2.0), color_jitter=0, ignore_index=IGNORE)
            self.image, self.mask = blocks(64, 64, 8)

        def __len__(self):
            return 8

        def __getitem__(self, i):
            out = self.transform(image=self.image, mask=self.mask)
            return out["image"], out["mask"]

    loader = make_loader(Same(), batch_size=1, train=True, num_workers=2, seed=0, prefetch_factor=1)
    batches = [m for _, m in loader]
    distinct = {tuple(m.flatten().tolist()) for m in batches}
    assert len(distinct) == len(batches)  # forked workers would otherwise repeat each other


def test_loader_workers_survive_a_parent_that_used_opencv_threads():
    # Regression: reconfiguring OpenCV threads inside a forked worker deadlocked there.
    script = """
import time
import cv2, numpy as np
from segzoo.data.loader import make_loader
from segzoo.data.transforms import train_transform
cv2.setNumThreads(2)  # as if another library turned OpenCV's thread pool back on
image = np.zeros((600, 800, 3), np.uint8)
for _ in range(5):
    cv2.resize(image, (1600, 1200))
time.sleep(0.5)  # let the idle pool threads block on their condition variable
class Data:
    transform = train_transform((64, 64), ignore_index=255)
    def __len__(self):
        return 4
    def __getitem__(self, i):
        return self.transform(image=image, mask=np.zeros(image.shape[:2], np.uint8))["image"]
print(sum(len(b) for b in make_loader(Data(), 2, train=True, num_workers=2)))
"""
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
