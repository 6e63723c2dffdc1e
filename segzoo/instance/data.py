"""Instance-segmentation data sets: any COCO-format folder, fruits-nuts, and CamVid's
cars, pedestrians and bicyclists as connected components of its label maps.

``ds[i]`` returns ``(image, target)`` in torchvision's detection format: ``image`` a
float ``3xHxW`` RGB tensor in ``[0, 1]``; ``target`` with ``boxes`` (``Nx4`` xyxy float),
``labels`` (``N`` int64, 1-based: 0 is background), ``masks`` (``NxHxW`` uint8),
``image_id``, ``area`` and ``iscrowd``. Crowd regions are left out of training targets
but stay in :meth:`InstanceDataset.coco_ground_truth`, which evaluation scores against.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

from segzoo.data.annotations import coco_segmentation_mask, find_annotation_file, split_annotation_file
from segzoo.data.base import default_palette, option_hint
from segzoo.inference import read_image

# Every VAL_EVERY-th image (sorted by id) is held out when a COCO file has no split.
VAL_EVERY = 5


@dataclass
class Sample:
    """One image with its instances, in numpy (before tensors and augmentation)."""

    image: np.ndarray  # uint8 HxWx3 RGB
    boxes: np.ndarray  # float32 Nx4 xyxy
    labels: np.ndarray  # int64 N, 1-based
    masks: np.ndarray  # uint8 NxHxW
    iscrowd: np.ndarray  # uint8 N


class InstanceDataset(torch.utils.data.Dataset):
    """Shared behaviour; subclasses set ``name``, ``class_names``, ``palette``,
    ``image_ids`` and implement :meth:`load` and :meth:`coco_ground_truth`."""

    name: str
    class_names: list[str]
    palette: list[tuple[int, int, int]]
    image_ids: list[int]

    def __init__(self, train: bool = False) -> None:
        self.train = train  # random horizontal flips

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, index: int) -> Sample:
        raise NotImplementedError

    def coco_ground_truth(self) -> dict[str, Any]:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """What :func:`get_instance_dataset` needs besides name, root and split."""
        return {}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sample = self.load(index)
        keep = sample.iscrowd == 0
        image, boxes, masks = sample.image, sample.boxes[keep], sample.masks[keep]
        if self.train and torch.rand(()) < 0.5:
            width = image.shape[1]
            image, masks = image[:, ::-1], masks[:, :, ::-1]
            boxes = boxes.copy()
            boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
        target = {
            "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.as_tensor(sample.labels[keep], dtype=torch.int64),
            "masks": torch.from_numpy(np.ascontiguousarray(masks)),
            "image_id": torch.tensor(self.image_ids[index]),
            "area": torch.as_tensor(masks.sum(axis=(1, 2)), dtype=torch.float32),
            "iscrowd": torch.zeros(int(keep.sum()), dtype=torch.int64),
        }
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0
        return pixels, target


def collate_instances(batch: list) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = zip(*batch)
    return list(images), list(targets)


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """xyxy boxes enclosing each mask (pixel edges: a 1-pixel mask is 1 wide)."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs):
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def _rle_for_json(rle: dict) -> dict:
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


# --------------------------------------------------------------------------- COCO folders


def split_image_ids(image_ids: list[int], split: str) -> list[int]:
    """Deterministic hold-out for single-file data sets: every ``VAL_EVERY``-th image
    (by id) is ``val`` (also used as ``test``); the rest is ``train``; ``all`` is all."""
    ids = sorted(image_ids)
    if split == "all":
        return ids
    held_out = [i for n, i in enumerate(ids) if n % VAL_EVERY == VAL_EVERY - 1]
    if split in ("val", "test"):
        return held_out
    if split == "train":
        return [i for i in ids if i not in set(held_out)]
    raise ValueError(f"unknown split {split!r}; choose train, val, test or all")


class CocoInstanceDataset(InstanceDataset):
    """``root/images/*`` (or images beside the JSON) plus a COCO instances JSON."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        train: bool = False,
        annotation_file: str | Path | None = None,
        name: str = "coco",
    ) -> None:
        super().__init__(train)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: data set folder not found")
        # ``whole``: one file holds every split, and split_image_ids holds images out.
        if annotation_file is not None:
            self.annotation_file, whole = Path(annotation_file), False
        elif (own := split_annotation_file(self.root, split)) is not None:
            self.annotation_file, whole = own, False
        else:
            self.annotation_file, whole = _whole_annotation_file(self.root), True
        self.name, self.split = name, split
        self._annotation_option = None if annotation_file is None else str(annotation_file)
        try:
            coco = json.loads(self.annotation_file.read_text(encoding="utf-8"))
            images, categories = coco["images"], coco["categories"]
            annotations = coco.get("annotations", [])
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.annotation_file}: not a COCO instances file ({exc!r})") from None
        self.images_dir = self.root / "images" if (self.root / "images").is_dir() else self.annotation_file.parent
        categories = sorted(categories, key=lambda c: c["id"])
        self.class_names = [str(c["name"]) for c in categories]
        # Labels are 1-based (0 is background): class label k gets colour k of the palette.
        self.palette = default_palette(len(categories) + 1)[1:]
        self.label_of_category = {c["id"]: i + 1 for i, c in enumerate(categories)}
        self.images = {img["id"]: img for img in images}
        self.image_ids = split_image_ids(list(self.images), split) if whole else sorted(self.images)
        wanted = set(self.image_ids)
        self.annotations: dict[int, list[dict]] = {i: [] for i in self.image_ids}
        for ann in annotations:
            if ann.get("image_id") not in self.images:
                raise ValueError(
                    f"{self.annotation_file}: annotation {ann.get('id')} names unknown image {ann.get('image_id')}"
                )
            if ann.get("category_id") not in self.label_of_category:
                raise ValueError(
                    f"{self.annotation_file}: annotation {ann.get('id')} has unknown category "
                    f"{ann.get('category_id')} (categories: {sorted(self.label_of_category)})"
                )
            if ann["image_id"] in wanted:
                self.annotations[ann["image_id"]].append(ann)
        if not self.image_ids:
            raise ValueError(f"{self.annotation_file}: split {split!r} has no images")

    def options(self) -> dict[str, Any]:
        return {"annotation_file": self._annotation_option} if self._annotation_option else {}

    def image_path(self, index: int) -> Path:
        return self.images_dir / self.images[self.image_ids[index]]["file_name"]

    def load(self, index: int) -> Sample:
        info = self.images[self.image_ids[index]]
        path = self.image_path(index)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image listed in {self.annotation_file} not found")
        image = read_image(path)
        height, width = image.shape[:2]
        if (info.get("height", height), info.get("width", width)) != (height, width):
            raise ValueError(
                f"{path}: image is {width}x{height} but {self.annotation_file} says "
                f"{info.get('width')}x{info.get('height')}"
            )
        anns = self.annotations[info["id"]]
        masks = np.zeros((len(anns), height, width), dtype=np.uint8)
        boxes = np.zeros((len(anns), 4), dtype=np.float32)
        for i, ann in enumerate(anns):
            masks[i] = annotation_mask(ann, height, width)
            if "bbox" in ann:
                x, y, w, h = ann["bbox"]
                boxes[i] = (x, y, x + w, y + h)
            else:
                boxes[i] = boxes_from_masks(masks[i : i + 1])[0]
        labels = np.array([self.label_of_category[a["category_id"]] for a in anns], dtype=np.int64)
        iscrowd = np.array([a.get("iscrowd", 0) for a in anns], dtype=np.uint8)
        # Degenerate boxes (zero width or height) break the box regression targets.
        valid = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        return Sample(image, boxes[valid], labels[valid], masks[valid], iscrowd[valid])

    def coco_ground_truth(self) -> dict[str, Any]:
        annotations = []
        for image_id in self.image_ids:
            for ann in self.annotations[image_id]:
                ann = dict(ann, category_id=self.label_of_category[ann["category_id"]])
                ann.setdefault("iscrowd", 0)
                if "area" not in ann or "bbox" not in ann:
                    info = self.images[image_id]
                    rle = mask_utils.encode(np.asfortranarray(annotation_mask(ann, info["height"], info["width"])))
                    ann.setdefault("area", float(mask_utils.area(rle)))
                    ann.setdefault("bbox", [float(v) for v in mask_utils.toBbox(rle)])
                annotations.append(ann)
        for n, ann in enumerate(annotations, start=1):
            ann["id"] = n  # unique and non-zero, as COCOeval expects
        return {
            "images": [self.images[i] for i in self.image_ids],
            "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)],
        }


def annotation_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """Rasterise a COCO annotation's ``segmentation`` to uint8 (see :func:`coco_segmentation_mask`)."""
    if not ann.get("segmentation"):
        raise ValueError(f"annotation {ann.get('id')} has no segmentation")
    return coco_segmentation_mask(ann["segmentation"], height, width)


def _whole_annotation_file(root: Path) -> Path:
    choose = f"name them <split>.json or {option_hint('annotation_file', 'FILE', flag=False)}"
    path = find_annotation_file(root, choose=choose)
    if path is None:
        raise FileNotFoundError(f"{root}: no COCO annotation file (*.json) found")
    return path


# --------------------------------------------------------------------------- CamVid


# CamVid (SegNet split) label ids of the classes that are countable objects.
CAMVID_THINGS = {8: "car", 9: "pedestrian", 10: "bicyclist"}
CAMVID_THING_COLOURS = [(64, 0, 128), (64, 64, 0), (0, 128, 192)]


class CamVidInstances(InstanceDataset):
    """Cars, pedestrians and bicyclists of CamVid as instances: the 8-connected components
    of each class's label pixels with at least ``min_area`` pixels. Touching objects of
    one class merge into one instance: CamVid has no instance labels. Frames and labels
    are read by :class:`segzoo.data.camvid.CamVid` (same layouts and checks)."""

    name = "camvid_instances"

    def __init__(self, root: str | Path, split: str = "train", train: bool = False, min_area: int = 50) -> None:
        from segzoo.data import get_dataset

        super().__init__(train)
        self.semantic = get_dataset("camvid", root, split)
        self.root, self.split, self.min_area = Path(root), split, int(min_area)
        self.image_ids = list(range(len(self.semantic)))
        self.class_names = list(CAMVID_THINGS.values())
        self.palette = list(CAMVID_THING_COLOURS)

    def options(self) -> dict[str, Any]:
        return {"min_area": self.min_area}

    def image_path(self, index: int) -> Path:
        return Path(self.semantic.images[index])

    def semantic_label(self, index: int) -> np.ndarray:
        """The frame's CamVid label map (uint8 HxW, ids 0-11)."""
        return self.semantic.load_mask(index)

    def instances(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(labels N, masks NxHxW uint8)`` from the label map's connected components
        (a few milliseconds a frame: recomputed rather than cached)."""
        label = self.semantic_label(index)
        labels, masks = [], []
        for class_index, camvid_id in enumerate(CAMVID_THINGS):
            count, components, stats, _ = cv2.connectedComponentsWithStats(
                (label == camvid_id).astype(np.uint8), connectivity=8
            )
            for c in range(1, count):
                if stats[c, cv2.CC_STAT_AREA] >= self.min_area:
                    labels.append(class_index + 1)
                    masks.append((components == c).astype(np.uint8))
        if not masks:
            return np.zeros(0, dtype=np.int64), np.zeros((0, *label.shape), dtype=np.uint8)
        return np.array(labels, dtype=np.int64), np.stack(masks)

    def load(self, index: int) -> Sample:
        image, _ = self.semantic.load_raw(index)  # checks the label map's size too
        labels, masks = self.instances(index)
        return Sample(image, boxes_from_masks(masks), labels, masks, np.zeros(len(labels), dtype=np.uint8))

    def coco_ground_truth(self) -> dict[str, Any]:
        images, annotations = [], []
        for index, image_id in enumerate(self.image_ids):
            labels, masks = self.instances(index)
            height, width = masks.shape[1:]
            images.append({"id": image_id, "file_name": self.image_path(index).name, "height": height, "width": width})
            for label, mask in zip(labels, masks):
                rle = mask_utils.encode(np.asfortranarray(mask))
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": int(label),
                        "segmentation": _rle_for_json(rle),
                        "area": float(mask_utils.area(rle)),
                        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                        "iscrowd": 0,
                    }
                )
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]
        return {"images": images, "annotations": annotations, "categories": categories}


# --------------------------------------------------------------------------- names

INSTANCE_DATASETS = ("coco", "fruits_nuts", "camvid_instances")


def get_instance_dataset(
    name: str, root: str | Path, split: str, train: bool = False, **options: Any
) -> InstanceDataset:
    """``coco`` (any COCO-format folder), ``fruits_nuts`` (the same loader, named) or
    ``camvid_instances`` (``root`` is the CamVid folder; option ``min_area``)."""
    key = name.replace("-", "_").lower()
    if key not in INSTANCE_DATASETS:
        raise ValueError(f"unknown instance data set {name!r}; choose one of: {', '.join(INSTANCE_DATASETS)}")
    options = {k: v for k, v in options.items() if v is not None}
    allowed = ("min_area",) if key == "camvid_instances" else ("annotation_file",)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{key} has no option {', '.join(unknown)}; its options: {', '.join(allowed)}")
    if key == "camvid_instances":
        return CamVidInstances(root, split, train=train, **options)
    return CocoInstanceDataset(root, split, train=train, name=key, **options)
