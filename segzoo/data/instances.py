"""What every instance-segmentation data set shares: the sample, the torchvision target
format and the batch collation.

``ds[i]`` returns ``(image, target)`` in torchvision's detection format: ``image`` a
float ``3xHxW`` RGB tensor in ``[0, 1]``; ``target`` with ``boxes`` (``Nx4`` xyxy float),
``labels`` (``N`` int64, 1-based: 0 is background), ``masks`` (``NxHxW`` uint8),
``image_id``, ``area`` and ``iscrowd``. Crowd regions are left out of training targets
but stay in :meth:`InstanceDataset.coco_ground_truth`, which evaluation scores against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


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


def rle_for_json(rle: dict) -> dict:
    """A pycocotools RLE with its counts as text, for JSON."""
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
