"""COCO-format instance data sets: any folder with a COCO instances JSON (``coco``), and
fruits-nuts (``fruits_nuts``, the same loader under its own name).

Layout: ``root/images/*`` (or images beside the JSON) and ``annotations/instances_<split>.json``,
``instances_<split>.json`` or ``<split>.json`` per split; otherwise the folder's one JSON
holds every image and every ``VAL_EVERY``-th (by id) is held out for ``val``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from segzoo.data.annotations import (
    coco_segmentation_mask,
    find_annotation_file,
    split_annotation_file,
)
from segzoo.data.base import default_palette, option_hint
from segzoo.data.instances import InstanceDataset, Sample, boxes_from_masks
from segzoo.inference import read_image

# Every VAL_EVERY-th image (sorted by id) is held out when a COCO file has no split.
VAL_EVERY = 5
SPLITS = ("train", "val", "test", "all")


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
