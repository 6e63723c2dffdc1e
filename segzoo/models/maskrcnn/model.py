"""Mask R-CNN (He et al., 2017) with a ResNet-50-FPN backbone, from torchvision or Detectron2.

Both backends sit behind one module with torchvision's detection interface, so the
trainer, evaluator and app never ask which one they have:

* ``model(images)`` in eval mode: ``images`` is a list of RGB ``3xHxW`` float tensors in
  ``[0, 1]`` (any sizes); returns per image a dict with ``boxes`` (``Nx4`` xyxy pixels),
  ``labels`` (``N``, 1-based: 0 is background), ``scores`` and ``masks``
  (``Nx1xHxW`` probabilities) at that image's size.
* ``model(images, targets)`` in train mode returns a dict of losses; each target holds
  ``boxes``, ``labels`` and ``masks`` (``NxHxW`` uint8).

Each backend resizes internally (shortest side to ``min_size``, longest at most
``max_size``), so ``min_size == max_size == S`` means "longest side S".
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from segzoo.registry import register_model

BACKENDS = ("torchvision", "detectron2")


class MaskRCNN(nn.Module):
    """A backend's Mask R-CNN (``self.detector``) plus the backend's name.

    ``freeze_backbone_norm`` keeps the backbone's batch-norm statistics fixed during
    training: right when fine-tuning pretrained weights with a few images per batch, whose
    statistics would otherwise overwrite ImageNet's or COCO's.
    """

    def __init__(self, detector: nn.Module, backend: str, freeze_backbone_norm: bool = False) -> None:
        super().__init__()
        self.detector = detector
        self.backend = backend
        self.freeze_backbone_norm = freeze_backbone_norm

    @property
    def num_classes(self) -> int:
        """Object categories, background excluded."""
        if self.backend == "torchvision":
            return self.detector.roi_heads.box_predictor.cls_score.out_features - 1
        return self.detector.cfg.MODEL.ROI_HEADS.NUM_CLASSES

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            images = list(images)
        return self.detector(images, targets)

    def train(self, mode: bool = True) -> MaskRCNN:
        super().train(mode)
        if mode and self.freeze_backbone_norm:
            backbone = (
                self.detector.backbone.body if self.backend == "torchvision" else self.detector.model.backbone.bottom_up
            )
            for module in backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


@register_model(
    "maskrcnn_r50_fpn",
    family="Mask R-CNN",
    description=(
        "Instance segmentation: region proposals on ResNet-50-FPN features, a box and class "
        "head and a 28x28 mask per object (torchvision v2, or Detectron2 when installed)"
    ),
    paper="He, Gkioxari, Dollar, Girshick, Mask R-CNN, ICCV 2017 (arXiv:1703.06870)",
    params=45_939_613,
    task="instance",
)
def build_maskrcnn_r50_fpn(
    num_classes: int,
    in_channels: int = 3,
    encoder_weights: str | None = None,
    backend: str = "torchvision",
    weights: str | None = None,
    min_size: int = 800,
    max_size: int = 1333,
    norm: str | None = None,
    freeze_backbone_norm: bool | None = None,
    rois_per_image: int = 512,
    trainable_backbone_layers: int | None = None,
) -> nn.Module:
    """``num_classes`` object categories (background is added internally).

    ``backend``: ``"torchvision"``, ``"detectron2"`` or ``"auto"`` (Detectron2 when it
    imports). ``weights="coco"``: COCO-trained (downloads; fails fast offline).
    ``encoder_weights="imagenet"``: ImageNet ResNet-50 only. ``norm`` (Detectron2 only):
    its ResNet norm, ``"BN"`` from scratch, ``"FrozenBN"`` with pretrained weights.
    ``rois_per_image``: proposals sampled per image to train the box and mask heads (the
    papers' 512; fewer train faster and suit images with few objects). Neither changes
    the weights' shapes, and ``rois_per_image`` only matters in training.
    ``trainable_backbone_layers`` (0-5, counting the stem): the deepest ResNet stages that
    train; default 3 with pretrained weights, all 5 without (torchvision's and Detectron2's
    ``FREEZE_AT = 2`` convention).
    """
    from segzoo.instance.backends import resolve_backend

    if in_channels != 3:
        raise ValueError(f"maskrcnn_r50_fpn takes RGB images (in_channels=3), got {in_channels}")
    backend = resolve_backend(backend)
    pretrained = weights is not None or encoder_weights is not None
    if freeze_backbone_norm is None:
        freeze_backbone_norm = pretrained and backend == "torchvision"
    if trainable_backbone_layers is None:
        trainable_backbone_layers = 3 if pretrained else 5
    if not 0 <= trainable_backbone_layers <= 5:
        raise ValueError(f"trainable_backbone_layers must be 0-5, got {trainable_backbone_layers}")
    if backend == "torchvision":
        if norm not in (None, "BN"):
            raise ValueError("norm applies to the detectron2 backend only (torchvision's v2 uses BN)")
        from segzoo.models.maskrcnn.torchvision_backend import (
            build_torchvision_maskrcnn,
        )

        detector = build_torchvision_maskrcnn(
            num_classes, weights, encoder_weights, min_size, max_size, rois_per_image, trainable_backbone_layers
        )
    else:
        from segzoo.models.maskrcnn.detectron2_backend import build_detectron2_maskrcnn

        detector = build_detectron2_maskrcnn(
            num_classes, weights, encoder_weights, min_size, max_size, norm, rois_per_image, trainable_backbone_layers
        )
    return MaskRCNN(detector, backend, freeze_backbone_norm)
