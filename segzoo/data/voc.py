"""Pascal VOC 2012 semantic segmentation::

    root/JPEGImages/<name>.jpg
    root/SegmentationClass/<name>.png        palette PNGs: class index 0..20, 255 = void
    root/ImageSets/Segmentation/{train,val,trainval}.txt

``root`` may also be the folder that holds ``VOCdevkit/VOC2012`` (the archive's layout).
Splits: train 1,464, val 1,449, trainval 2,913 images; 21 classes with background; the
void border (255) is ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from segzoo.data.base import (
    DatasetInfo,
    MaskFileDataset,
    check_missing_option,
    default_palette,
    make_lut,
    summarize_problems,
)

CLASS_NAMES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
IGNORE_INDEX = 255
SPLITS = ("train", "val", "trainval")
SPLIT_SIZES = {"train": 1464, "val": 1449, "trainval": 2913}


def info() -> DatasetInfo:
    return DatasetInfo("voc2012", list(CLASS_NAMES), default_palette(len(CLASS_NAMES)), IGNORE_INDEX)


def find_voc_root(root: Path) -> Path:
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "ImageSets" / "Segmentation").is_dir():
            return candidate
    raise FileNotFoundError(
        f"no Pascal VOC 2012 found in {root}: expected ImageSets/Segmentation/ there or under VOCdevkit/VOC2012/"
    )


class VOCSegmentation(MaskFileDataset):
    """Pascal VOC 2012 images with their 21-class masks (255 ignored)."""

    _lut = make_lut({i: i for i in range(len(CLASS_NAMES))} | {IGNORE_INDEX: IGNORE_INDEX})

    def __init__(
        self, root: str | Path, split: str = "train", transform: Callable | None = None, missing: str = "error"
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"voc2012 has splits {', '.join(SPLITS)}; got {split!r}")
        check_missing_option(missing)
        root = find_voc_root(Path(root))
        list_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"split list not found: {list_file}")
        images, self.masks, problems = [], [], []
        for name in list_file.read_text().split():
            image, mask = root / "JPEGImages" / f"{name}.jpg", root / "SegmentationClass" / f"{name}.png"
            if not image.is_file():
                problems.append(f"{list_file.name} lists {name} but there is no image {image}")
            elif not mask.is_file():
                problems.append(f"image without mask: {image} (no {mask})")
            else:
                images.append(image)
                self.masks.append(mask)
        if problems and missing == "error":
            raise FileNotFoundError(summarize_problems(problems))
        super().__init__(info(), images, transform)
        self.root, self.split = root, split
        self.problems = problems
