"""A "general photos" Mask R-CNN: the COCO-trained network (people, cars, dogs, ... 80
categories) saved as an ordinary segzoo checkpoint, so the app lists it like any model
trained here. Needs the network once (torchvision's or Detectron2's download server);
offline it fails within seconds and only checkpoints trained here are available.
"""

from __future__ import annotations

from pathlib import Path

from segzoo.checkpoint import save_checkpoint
from segzoo.version import __version__

COCO_DATASET = "coco2017"
# torchvision's MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1 meta; Detectron2's MODEL_ZOO.md
# (mask_rcnn_R_50_FPN_3x).
PUBLISHED_AP = {
    "torchvision": {"mask_AP": 0.418, "box_AP": 0.474},
    "detectron2": {"mask_AP": 0.372, "box_AP": 0.410},
}


def save_coco_checkpoint(
    out: str | Path = "checkpoints/coco2017/maskrcnn_r50_fpn",
    backend: str = "torchvision",
    size: int = 800,
) -> Path:
    """Download the COCO-trained Mask R-CNN R50-FPN and write it to ``out`` (weights in
    float16, config.json with the 80 class names; ``size`` is the shorter side it resizes
    photos to, as COCO evaluation does; the longer side is capped at 1333)."""
    from segzoo.instance.backends import resolve_backend
    from segzoo.instance.predict import instance_colours
    from segzoo.models.maskrcnn.torchvision_backend import coco_category_names
    from segzoo.registry import create_model

    backend = resolve_backend(backend)
    class_names = coco_category_names()
    model_kwargs = {"backend": backend, "min_size": size, "max_size": max(size, 1333)}
    model = create_model("maskrcnn_r50_fpn", num_classes=len(class_names), weights="coco", **model_kwargs)
    if backend == "detectron2":
        model_kwargs["norm"] = model.detector.cfg.MODEL.RESNETS.NORM
    config = {
        "model": "maskrcnn_r50_fpn",
        "model_kwargs": model_kwargs,
        "task": "instance",
        "backend": backend,
        "num_classes": len(class_names),
        "class_names": class_names,
        "palette": [list(c) for c in instance_colours(len(class_names))],
        "ignore_index": None,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "input_size": [size, max(size, 1333)],
        "short_side": None,
        "dataset": COCO_DATASET,
        "dataset_options": {},
        "training": {
            "weights": "coco",
            "source": f"{backend} model zoo (COCO train2017)",
            # The zoo's published COCO val2017 AP (not measured here; no metrics.json is written).
            "published_val2017": PUBLISHED_AP[backend],
            "completed": True,
        },
        "segzoo_version": __version__,
        "interim": False,
    }
    out = Path(out)
    save_checkpoint(out, model, config, half=True)
    return out
