"""Mask R-CNN R50-FPN (torchvision, or Detectron2 when installed); registers ``maskrcnn_r50_fpn``."""

from segzoo.models.maskrcnn.model import BACKENDS, MaskRCNN, build_maskrcnn_r50_fpn

__all__ = ["BACKENDS", "MaskRCNN", "build_maskrcnn_r50_fpn"]
