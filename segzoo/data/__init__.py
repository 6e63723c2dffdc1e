"""Built-in data sets: one entry point, per-data-set metadata, augmentation and checks.

>>> from segzoo.data import get_dataset, get_dataset_info
>>> ds = get_dataset("camvid", "data/camvid", "train")        # doctest: +SKIP
>>> image, mask = ds[0]   # float 3 x H x W (ImageNet-normalised), long H x W
>>> ds.info.class_names, ds.info.palette, ds.info.ignore_index   # doctest: +SKIP

Names: ``camvid``, ``oxford_pet`` (option ``mode``: trimap | binary | species),
``voc2012`` and ``folder`` (your own images with masks or COCO / VIA annotations).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzoo.data import camvid, folder, oxford_pet, voc
from segzoo.data.base import DatasetInfo, SegmentationDataset, is_image_file


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    dataset: Callable[..., SegmentationDataset]
    info: Callable[..., DatasetInfo]
    splits: tuple[str, ...]
    default_split: str  # what training uses


DATASETS: dict[str, DatasetEntry] = {
    "camvid": DatasetEntry(
        "camvid",
        "CamVid road scenes, SegNet split, 11 classes (+ unlabelled, ignored)",
        camvid.CamVid,
        camvid.info,
        ("train", "val", "test", "trainval"),
        "train",
    ),
    "oxford_pet": DatasetEntry(
        "oxford_pet",
        "Oxford-IIIT Pet: trimap, binary or cat/dog masks",
        oxford_pet.OxfordPet,
        oxford_pet.info,
        oxford_pet.SPLITS,
        "trainval",
    ),
    "voc2012": DatasetEntry(
        "voc2012",
        "Pascal VOC 2012 segmentation, 21 classes (255 ignored)",
        voc.VOCSegmentation,
        voc.info,
        voc.SPLITS,
        "train",
    ),
    "folder": DatasetEntry(
        "folder",
        "your images with index/colour PNG masks or COCO/VIA polygons",
        folder.FolderDataset,
        folder.info,
        folder.SPLITS,
        "train",
    ),
}


def dataset_names() -> list[str]:
    return list(DATASETS)


def _entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names are: {', '.join(DATASETS)}")
    return DATASETS[name]


def get_dataset_info(name: str, **options: Any) -> DatasetInfo:
    """Class names, palette and ignore index of a data set, without reading its images
    (``folder`` reads its classes or annotation file: pass ``root=``). Accepts the same
    options as :func:`get_dataset` (e.g. a checkpoint's ``dataset_options``) and ignores
    those that only choose samples, such as ``val_fraction``."""
    entry = _entry(name)
    label_options = set(inspect.signature(entry.info).parameters)
    _check_options(entry, set(options) - label_options)
    return entry.info(**{k: v for k, v in options.items() if k in label_options})


def _check_options(entry: DatasetEntry, given: set[str]) -> None:
    valid = set(inspect.signature(entry.dataset).parameters) - {"root", "split", "transform"}
    unknown = given - valid - {"root"}
    if unknown:
        raise ValueError(
            f"{entry.name} has no option {', '.join(sorted(unknown))}; its options are: {', '.join(sorted(valid))}"
        )


def get_dataset(
    name: str, root: str | Path, split: str | None = None, transform: Callable | None = None, **options: Any
) -> SegmentationDataset:
    """A data set by name; ``ds[i]`` is ``(image float 3 x H x W, mask long H x W)``.

    ``split`` defaults to the training split. ``transform`` is an albumentations pipeline
    (see :mod:`segzoo.data.transforms`); ``None`` normalises only, at full size. Options
    are the data set's own (e.g. ``mode="binary"`` for ``oxford_pet``), plus
    ``missing="skip"`` to drop images without masks instead of raising.
    """
    entry = _entry(name)
    _check_options(entry, set(options))
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{name}: data folder not found: {root} (see `segzoo download --help`)")
    return entry.dataset(root, split or entry.default_split, transform, **options)


def detect_dataset(root: str | Path) -> str:
    """Guess which loader reads a folder from its layout."""
    root = Path(root)
    if (root / "trainannot").is_dir() or (root / "CamVid" / "trainannot").is_dir():
        return "camvid"
    if (root / "annotations" / "trimaps").is_dir() or (root / "oxford-iiit-pet" / "annotations" / "trimaps").is_dir():
        return "oxford_pet"
    if any(
        (c / "ImageSets" / "Segmentation").is_dir() for c in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012")
    ):
        return "voc2012"
    if (root / "images").is_dir() or folder.split_folders(root):
        return "folder"
    if root.is_dir() and any(root.glob("*.json")) and any(is_image_file(p) for p in root.iterdir()):
        return "folder"  # photos beside their COCO / VIA JSON
    raise ValueError(
        f"cannot tell which data set {root} holds: expected CamVid (train/, trainannot/), Oxford pet "
        "(images/, annotations/trimaps/), VOC (ImageSets/Segmentation/), a folder with images/, photos "
        "beside their COCO / VIA JSON, or train/ and val/ folders each holding photos and their JSON"
    )


__all__ = [
    "DATASETS",
    "DatasetInfo",
    "SegmentationDataset",
    "dataset_names",
    "detect_dataset",
    "get_dataset",
    "get_dataset_info",
]
