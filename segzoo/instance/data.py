"""The instance pipeline's data sets, which live in :mod:`segzoo.data` beside the semantic
ones (one registry for both tasks): imported from here by ``segzoo.instance.train`` and
``segzoo.instance.evaluate``."""

from segzoo.data.camvid_instances import CAMVID_THINGS, CamVidInstances
from segzoo.data.coco import CocoInstanceDataset, annotation_mask, split_image_ids
from segzoo.data.instances import InstanceDataset, Sample, boxes_from_masks, collate_instances
from segzoo.data import get_instance_dataset

__all__ = [
    "CAMVID_THINGS",
    "CamVidInstances",
    "CocoInstanceDataset",
    "InstanceDataset",
    "Sample",
    "annotation_mask",
    "boxes_from_masks",
    "collate_instances",
    "get_instance_dataset",
    "split_image_ids",
]
