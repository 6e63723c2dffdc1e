"""Data sets of both tasks in one registry (each entry names its task), their metadata,
augmentation and checks.

>>> from segzoo.data import get_dataset, get_dataset_info, get_instance_dataset
>>> ds = get_dataset("camvid", "data/camvid", "train")        # doctest: +SKIP
>>> image, mask = ds[0]   # float 3 x H x W (ImageNet-normalised), long H x W
>>> ds.info.class_names, ds.info.palette, ds.info.ignore_index   # doctest: +SKIP
>>> coco = get_instance_dataset("coco", "data/balloon", "train")   # doctest: +SKIP
>>> image, target = coco[0]   # float 3 x H x W in [0, 1], torchvision detection target

Semantic: ``camvid``, ``oxford_pet`` (option ``mode``: trimap | binary | species),
``voc2012`` and ``folder`` (your own images with masks or COCO / VIA annotations).
Instance: ``coco`` (any COCO-format folder), ``fruits_nuts`` and ``camvid_instances``.
``dataset_names(task)`` lists them; ``DATASETS`` holds each one's task, splits and loader.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from segzoo.data import camvid, camvid_instances, coco, folder, oxford_pet, voc
from segzoo.data.base import DatasetInfo, SegmentationDataset, is_image_file
from segzoo.data.instances import InstanceDataset

TASKS = ("semantic", "instance")
# Constructor arguments that are not data set options.
_NOT_OPTIONS = {"root", "split", "transform", "train", "name"}


@dataclass(frozen=True)
class DatasetEntry:
    """A registered data set: its task and how to build it."""

    name: str
    task: str  # one of TASKS
    description: str
    dataset: Callable[..., Dataset]  # (root, split, ...) -> the data set
    splits: tuple[str, ...]
    default_split: str  # what training uses
    info: Callable[..., DatasetInfo] | None = None  # semantic: classes without reading images
    # Instance data cut from a semantic data set's label maps (camvid_instances: camvid): its
    # models are shipped, shown and scored with that label set's, on its example photos.
    label_set: str | None = None

    @property
    def label_set_name(self) -> str:
        return self.label_set or self.name


DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry(
            "camvid", "semantic", "CamVid road scenes, SegNet split, 11 classes (+ unlabelled, ignored)",
            camvid.CamVid, tuple(camvid.SPLITS), "train", camvid.info,
        ),
        DatasetEntry(
            "oxford_pet", "semantic", "Oxford-IIIT Pet: trimap, binary or cat/dog masks",
            oxford_pet.OxfordPet, oxford_pet.SPLITS, "trainval", oxford_pet.info,
        ),
        DatasetEntry(
            "voc2012", "semantic", "Pascal VOC 2012 segmentation, 21 classes (255 ignored)",
            voc.VOCSegmentation, voc.SPLITS, "train", voc.info,
        ),
        DatasetEntry(
            "folder", "semantic", "your images with index/colour PNG masks or COCO/VIA polygons",
            folder.FolderDataset, folder.SPLITS, "train", folder.info,
        ),
        DatasetEntry(
            "coco", "instance", "any folder with a COCO instances JSON (one per split, or one held out 1 in 5)",
            partial(coco.CocoInstanceDataset, name="coco"), coco.SPLITS, "train",
        ),
        DatasetEntry(
            "fruits_nuts", "instance", "fruits-nuts: 18 photos of dates, figs and hazelnuts, COCO format",
            partial(coco.CocoInstanceDataset, name="fruits_nuts"), coco.SPLITS, "train",
        ),
        DatasetEntry(
            "camvid_instances", "instance", "CamVid's cars, pedestrians and bicyclists as connected components",
            camvid_instances.CamVidInstances, tuple(camvid.SPLITS), "train", label_set="camvid",
        ),
    )
}  # fmt: skip
# How an unknown name is reported for each task (as the task's commands always have).
_WHAT = {"semantic": "dataset", "instance": "instance data set", None: "data set"}


def dataset_names(task: str | None = None) -> list[str]:
    """Registered names, of one task or (``None``) of both."""
    return [name for name, entry in DATASETS.items() if task in (None, entry.task)]


def _listing(task: str | None) -> str:
    others = [t for t in TASKS if t != task] if task else []
    return ", ".join(dataset_names(task)) + "".join(
        f" ({other} segmentation: {', '.join(dataset_names(other))})" for other in others
    )


def dataset_entry(name: str, task: str | None = None) -> DatasetEntry:
    """The entry of ``name`` (case and ``-``/``_`` alike); ``task`` refuses the other task's."""
    entry = DATASETS.get(name.replace("-", "_").lower())
    if entry is None:
        raise ValueError(f"unknown {_WHAT[task]} {name!r}; valid names are: {_listing(task)}")
    if task is not None and entry.task != task:
        raise ValueError(
            f"{name!r} is a data set for {entry.task} segmentation; for {task} segmentation use: {_listing(task)}"
        )
    return entry


def _check_options(entry: DatasetEntry, given: set[str]) -> None:
    valid = set(inspect.signature(entry.dataset).parameters) - _NOT_OPTIONS
    unknown = given - valid - {"root"}
    if unknown:
        raise ValueError(
            f"{entry.name} has no option {', '.join(sorted(unknown))}; its options are: {', '.join(sorted(valid))}"
        )


def get_dataset_info(name: str, **options: Any) -> DatasetInfo:
    """Class names, palette and ignore index of a semantic data set, without reading its
    images (``folder`` reads its classes or annotation file: pass ``root=``). Accepts the
    same options as :func:`get_dataset` (e.g. a checkpoint's ``dataset_options``) and
    ignores those that only choose samples, such as ``val_fraction``."""
    entry = dataset_entry(name, "semantic")
    label_options = set(inspect.signature(entry.info).parameters)
    _check_options(entry, set(options) - label_options)
    return entry.info(**{k: v for k, v in options.items() if k in label_options})


def get_dataset(
    name: str, root: str | Path, split: str | None = None, transform: Callable | None = None, **options: Any
) -> SegmentationDataset:
    """A semantic data set by name; ``ds[i]`` is ``(image float 3 x H x W, mask long H x W)``.

    ``split`` defaults to the training split. ``transform`` maps ``image=, mask=`` numpy
    arrays to a dict of the two (see :mod:`segzoo.data.transforms`); ``None`` normalises
    only, at full size. Options are the data set's own (e.g. ``mode="binary"`` for
    ``oxford_pet``), plus ``missing="skip"`` to drop images without masks instead of raising.
    """
    entry = dataset_entry(name, "semantic")
    _check_options(entry, set(options))
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{name}: data folder not found: {root} (see `segzoo download --help`)")
    return entry.dataset(root, split or entry.default_split, transform, **options)


def get_instance_dataset(
    name: str, root: str | Path, split: str, train: bool = False, **options: Any
) -> InstanceDataset:
    """An instance data set by name: ``coco`` (any COCO-format folder; option
    ``annotation_file``), ``fruits_nuts`` (the same loader, named) or ``camvid_instances``
    (``root`` is the CamVid folder; option ``min_area``). ``train`` adds random flips.
    Options given as ``None`` are left at their defaults."""
    entry = dataset_entry(name, "instance")
    options = {k: v for k, v in options.items() if v is not None}
    _check_options(entry, set(options))
    return entry.dataset(root, split, train=train, **options)


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
    "TASKS",
    "DatasetEntry",
    "DatasetInfo",
    "InstanceDataset",
    "SegmentationDataset",
    "dataset_entry",
    "dataset_names",
    "detect_dataset",
    "get_dataset",
    "get_dataset_info",
    "get_instance_dataset",
]
