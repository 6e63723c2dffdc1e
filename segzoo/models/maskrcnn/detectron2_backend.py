"""Detectron2's Mask R-CNN R50-FPN behind torchvision's detection interface.

Detectron2 is optional (it is not on the package index; see docs/detectron2.md), so it is
imported only inside functions. :class:`Detectron2MaskRCNN` takes and returns exactly what
torchvision's ``MaskRCNN`` does, which keeps training, evaluation and prediction one code
path: a list of RGB ``3xHxW`` float images in ``[0, 1]``; targets with ``boxes`` (xyxy),
``labels`` (1-based, 0 is background) and ``masks`` (``NxHxW`` uint8); in training a dict
of losses, in evaluation per image ``boxes``, ``labels``, ``scores`` and ``masks``
(``Nx1xHxW`` in ``[0, 1]``) at the input image's size.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from segzoo.models.weights import check_reachable

ZOO_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"
IMAGENET_R50 = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
DOWNLOAD_URL = "https://dl.fbaipublicfiles.com"

# Detectron2's loss names -> torchvision's, so history.csv has one set of columns.
LOSS_NAMES = {
    "loss_cls": "loss_classifier",
    "loss_box_reg": "loss_box_reg",
    "loss_mask": "loss_mask",
    "loss_rpn_cls": "loss_objectness",
    "loss_rpn_loc": "loss_rpn_box_reg",
}


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """Shortest side to ``min_size`` unless the longest would exceed ``max_size``
    (torchvision's ``GeneralizedRCNNTransform`` and Detectron2's ``ResizeShortestEdge``)."""
    return min(min_size / min(height, width), max_size / max(height, width))


class Detectron2MaskRCNN(nn.Module):
    def __init__(
        self,
        num_classes: int,
        norm: str = "BN",
        min_size: int = 800,
        max_size: int = 1333,
        weights_url: str | None = None,
        rois_per_image: int = 512,
        trainable_backbone_layers: int = 5,
    ) -> None:
        super().__init__()
        from detectron2 import model_zoo
        from detectron2.modeling import build_model

        cfg = model_zoo.get_config(ZOO_CONFIG, trained=False)
        cfg.MODEL.DEVICE = "cpu"  # moved with .to() like any module
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
        cfg.MODEL.RESNETS.NORM = norm
        cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = rois_per_image
        # Stages frozen from the stem on (the zoo freezes 2 for pretrained weights; from
        # random initialisation nothing may be frozen, and the zoo's frozen batch norm
        # diverges at the first iteration: build_detectron2_maskrcnn picks "BN" then).
        cfg.MODEL.BACKBONE.FREEZE_AT = 5 - trainable_backbone_layers
        cfg.MODEL.WEIGHTS = ""
        cfg.freeze()
        self.cfg = cfg
        self.min_size, self.max_size = min_size, max_size
        self.model = build_model(cfg)
        if weights_url is not None:
            SafeDetectionCheckpointer(self.model).load(weights_url)
        # Detectron2 models take BGR (the zoo's FORMAT) pixels in 0..255.
        self.bgr = cfg.INPUT.FORMAT == "BGR"

    def _to_detectron2(self, image: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        height, width = image.shape[-2:]
        scale = resize_scale(height, width, self.min_size, self.max_size)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        resized = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        if self.bgr:
            resized = resized.flip(0)
        return resized * 255.0, size[0] / height, size[1] / width

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        from detectron2.structures import BitMasks, Boxes, Instances
        from detectron2.utils.events import EventStorage

        inputs = []
        for i, image in enumerate(images):
            pixels, sy, sx = self._to_detectron2(image)
            item: dict[str, Any] = {"image": pixels, "height": image.shape[-2], "width": image.shape[-1]}
            if targets is not None:
                target = targets[i]
                size = tuple(pixels.shape[-2:])
                instances = Instances(size)
                boxes = target["boxes"] * torch.tensor([sx, sy, sx, sy], device=target["boxes"].device)
                instances.gt_boxes = Boxes(boxes)
                instances.gt_classes = target["labels"] - 1
                masks = target["masks"]
                if len(masks):
                    masks = F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0]
                instances.gt_masks = BitMasks(masks.reshape(-1, *size) > 0.5)
                item["instances"] = instances
            inputs.append(item)

        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            # Detectron2's heads log statistics into an event storage during training.
            with EventStorage():
                losses = self.model(inputs)
            return {LOSS_NAMES.get(k, k): v for k, v in losses.items()}

        outputs = []
        for result in self.model(inputs):
            found = result["instances"]
            outputs.append(
                {
                    "boxes": found.pred_boxes.tensor,
                    "labels": found.pred_classes + 1,
                    "scores": found.scores,
                    "masks": found.pred_masks[:, None].float(),
                }
            )
        return outputs


def build_detectron2_maskrcnn(
    num_classes: int,
    weights: str | None = None,
    encoder_weights: str | None = None,
    min_size: int = 800,
    max_size: int = 1333,
    norm: str | None = None,
    rois_per_image: int = 512,
    trainable_backbone_layers: int | None = None,
) -> nn.Module:
    """Detectron2's zoo Mask R-CNN R50-FPN (``mask_rcnn_R_50_FPN_3x``).

    ``weights="coco"`` loads the zoo's COCO weights (its 80 categories are kept when
    ``num_classes == 80``; otherwise the class-specific layers start from random, as
    Detectron2's checkpointer skips shape mismatches). ``norm`` defaults to the zoo's
    frozen batch norm with pretrained weights and to trainable ``"BN"`` without.
    """
    from segzoo.instance.backends import require_detectron2

    require_detectron2()
    from detectron2 import model_zoo

    if weights not in (None, "coco"):
        raise ValueError(f"maskrcnn weights must be 'coco' or None, got {weights!r}")
    if encoder_weights not in (None, "imagenet"):
        raise ValueError(f"maskrcnn encoder_weights must be 'imagenet' or None, got {encoder_weights!r}")
    url = None
    if weights == "coco":
        url = model_zoo.get_checkpoint_url(ZOO_CONFIG)
    elif encoder_weights == "imagenet":
        url = IMAGENET_R50
    if url is not None:
        check_reachable(DOWNLOAD_URL, f"{weights or encoder_weights} weights for Mask R-CNN (Detectron2)")
    norm = norm or ("FrozenBN" if url else "BN")
    if trainable_backbone_layers is None:
        trainable_backbone_layers = 3 if url else 5
    return Detectron2MaskRCNN(
        num_classes, norm=norm, min_size=min_size, max_size=max_size, weights_url=url,
        rois_per_image=rois_per_image, trainable_backbone_layers=trainable_backbone_layers,
    )  # fmt: skip


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Detectron2's zoo weights are pickled dicts of NumPy arrays; allow nothing else
    (a pickle can otherwise run arbitrary code)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # how protocol-2 pickles store bytes
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")
        return super().find_class(module, name)


def load_array_pickle(data: bytes) -> Any:
    """Unpickle ``data`` allowing only NumPy arrays, dicts, lists and scalars."""
    return _ArraysOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def _safe_checkpointer_class() -> type:
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.utils.file_io import PathManager

    class _Safe(DetectionCheckpointer):
        def _load_file(self, filename: str) -> dict[str, Any]:
            if not filename.endswith(".pkl"):
                # Everything else is a torch file: never unpickle it fully.
                return {"model": torch.load(filename, map_location="cpu", weights_only=True)}
            with PathManager.open(filename, "rb") as f:
                data = load_array_pickle(f.read())
            # The same two layouts DetectionCheckpointer accepts.
            if "model" in data and "__author__" in data:
                return data
            data = data.get("blobs", data)
            data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    return _Safe


def SafeDetectionCheckpointer(model: nn.Module) -> Any:  # noqa: N802 - behaves as a class
    """Detectron2's ``DetectionCheckpointer`` reading ``.pkl`` zoo files without running code."""
    return _safe_checkpointer_class()(model)
