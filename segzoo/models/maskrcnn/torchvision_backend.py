"""torchvision's Mask R-CNN R50-FPN v2 (Li et al.'s improved recipe, torchvision >= 0.13).

v2 puts batch norm in the backbone, FPN and heads, so it trains from random
initialisation with small batches, where v1's frozen batch norm does not.
"""

from __future__ import annotations

import torch.nn as nn

from segzoo.models.weights import TORCHVISION_URL, check_weights_source


def coco_category_names() -> list[str]:
    """The 80 COCO object categories in COCO id order (torchvision's list without gaps)."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    categories = MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"]
    return [c for c in categories[1:] if c != "N/A"]


def build_torchvision_maskrcnn(
    num_classes: int,
    weights: str | None = None,
    encoder_weights: str | None = None,
    min_size: int = 800,
    max_size: int = 1333,
    rois_per_image: int = 512,
    trainable_backbone_layers: int | None = None,
) -> nn.Module:
    """``maskrcnn_resnet50_fpn_v2`` predicting ``num_classes`` categories plus background.

    ``weights="coco"`` loads the COCO-trained network. With ``num_classes == 80`` its
    classifier is kept (the 11 unused ids of COCO's 91 are dropped, so label ``i``
    is ``coco_category_names()[i - 1]``); otherwise the box and mask predictors start
    from random and everything else is COCO's. ``encoder_weights="imagenet"`` loads
    only the ResNet-50 ImageNet weights.
    """
    from torchvision.models import ResNet50_Weights
    from torchvision.models.detection import (
        MaskRCNN_ResNet50_FPN_V2_Weights,
        maskrcnn_resnet50_fpn_v2,
    )

    if weights not in (None, "coco"):
        raise ValueError(f"maskrcnn weights must be 'coco' or None, got {weights!r}")
    if encoder_weights not in (None, "imagenet"):
        raise ValueError(f"maskrcnn encoder_weights must be 'imagenet' or None, got {encoder_weights!r}")
    check_weights_source(weights or encoder_weights, TORCHVISION_URL, "Mask R-CNN (torchvision)")
    backbone_weights = ResNet50_Weights.IMAGENET1K_V1 if encoder_weights == "imagenet" and weights is None else None
    model = maskrcnn_resnet50_fpn_v2(
        weights=None,
        weights_backbone=backbone_weights,
        num_classes=num_classes + 1,
        trainable_backbone_layers=3 if backbone_weights else None,  # re-set below
        min_size=min_size,
        max_size=max_size,
        box_batch_size_per_image=rois_per_image,
    )
    if trainable_backbone_layers is None:
        trainable_backbone_layers = 3 if weights or encoder_weights else 5
    freeze_stages(model.backbone.body, trainable_backbone_layers)
    if weights == "coco":
        coco_weights = MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1
        state = coco_weights.get_state_dict(progress=True, check_hash=True)
        result = model.load_state_dict(
            _fit_coco_predictors(state, coco_weights.meta["categories"], num_classes), strict=False
        )
        unexpected = list(result.unexpected_keys)
        missing = [k for k in result.missing_keys if not k.startswith(_PREDICTOR_KEYS)]
        if missing or unexpected:
            raise RuntimeError(f"COCO Mask R-CNN weights do not fit: missing {missing}, unexpected {unexpected}")
    return model


def freeze_stages(body: nn.Module, trainable: int) -> None:
    """Train only the ``trainable`` deepest of conv1, layer1-4 (torchvision's own rule,
    applied here also without pretrained weights, where torchvision ignores it)."""
    names = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable]
    if trainable == 5:
        names.append("bn1")
    for name, parameter in body.named_parameters():
        parameter.requires_grad_(any(name.startswith(n) for n in names))


_PREDICTOR_KEYS = (
    "roi_heads.box_predictor.cls_score.",
    "roi_heads.box_predictor.bbox_pred.",
    "roi_heads.mask_predictor.mask_fcn_logits.",
)


def _fit_coco_predictors(state: dict, categories: list[str], num_classes: int) -> dict:
    """Slice COCO's 91-way predictors to its 80 real categories, or drop them."""
    predictor_keys = [k for k in state if k.startswith(_PREDICTOR_KEYS)]
    if num_classes != len(categories) - 1 - categories.count("N/A"):
        # A different label set: keep random predictors (start from the model's own).
        return {k: v for k, v in state.items() if k not in predictor_keys}
    keep = [0] + [i for i, name in enumerate(categories) if i > 0 and name != "N/A"]
    state = dict(state)
    for key in predictor_keys:
        tensor = state[key]
        if key.startswith("roi_heads.box_predictor.bbox_pred."):
            # Four box deltas per class, laid out class by class.
            tensor = tensor.view(len(categories), 4, *tensor.shape[1:])[keep].flatten(0, 1)
        else:
            tensor = tensor[keep]
        state[key] = tensor.contiguous()
    return state
