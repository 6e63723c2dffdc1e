"""CamVid's cars, pedestrians and bicyclists as instances (``camvid_instances``): the
connected components of each class in CamVid's label maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from segzoo.data.camvid import CamVid
from segzoo.data.instances import (
    InstanceDataset,
    Sample,
    boxes_from_masks,
    rle_for_json,
)

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
        super().__init__(train)
        self.semantic = CamVid(root, split)
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
                        "segmentation": rle_for_json(rle),
                        "area": float(mask_utils.area(rle)),
                        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                        "iscrowd": 0,
                    }
                )
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]
        return {"images": images, "annotations": annotations, "categories": categories}
