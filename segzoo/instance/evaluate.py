"""COCO mask and box AP (pycocotools' ``COCOeval``, which Detectron2's ``COCOEvaluator``
also wraps), and, where the data set has semantic labels (CamVid), the IoU of its thing
classes with predicted instances painted into a label map, so Mask R-CNN stands on the
same leaderboard as the semantic models.

AP figures are fractions in ``[0, 1]`` as pycocotools reports them (COCO papers print
them times 100).
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm.auto import tqdm

from segzoo.data import dataset_entry, get_dataset_info, get_instance_dataset
from segzoo.data.instances import InstanceDataset
from segzoo.devices import ComputeRecipe, compute_recipe
from segzoo.instance.predict import MASK_THRESHOLD, instances_from_output, predict_instances

# Rasterised IoU: instances scoring at least this are painted, as the app shows them.
PAINT_SCORE_THRESHOLD = 0.5
# COCOeval's summary rows used here: AP@[.5:.95], AP50, AP75, then small/medium/large.
_STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def _quiet_coco(dataset: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def detections_to_coco(image_id: int, output: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    """One image's model output -> COCO result entries (labels are category ids 1..K)."""
    boxes = output["boxes"].float().cpu().numpy()
    scores = output["scores"].float().cpu().numpy()
    labels = output["labels"].cpu().numpy()
    masks = (output["masks"][:, 0] > MASK_THRESHOLD).cpu().numpy().astype(np.uint8)
    results = []
    for box, score, label, mask in zip(boxes, scores, labels, masks):
        x1, y1, x2, y2 = (float(v) for v in box)
        results.append(
            {
                "image_id": int(image_id),
                "category_id": int(label),
                "score": float(score),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "segmentation": mask_utils.encode(np.asfortranarray(mask)),
            }
        )
    return results


def coco_ap(ground_truth: dict[str, Any], results: list[dict[str, Any]], class_names: list[str]) -> dict[str, Any]:
    """Mask and box AP of ``results`` against a COCO ground-truth dict (categories 1..K)."""
    metrics: dict[str, Any] = {}
    gt = _quiet_coco(ground_truth)
    for iou_type, prefix in (("segm", "mask"), ("bbox", "box")):
        if not results:  # loadRes cannot take an empty list; nothing found scores 0
            metrics.update({f"{prefix}_{n}": 0.0 for n in _STAT_NAMES})
            metrics[f"{prefix}_AP_per_class"] = {name: 0.0 for name in class_names}
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            detections = gt.loadRes(results)
            evaluator = COCOeval(gt, detections, iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        # -1 means "no ground truth of this kind" (e.g. no small objects): report None.
        metrics.update({f"{prefix}_{n}": (float(v) if v >= 0 else None) for n, v in zip(_STAT_NAMES, evaluator.stats)})
        # precision[iou, recall, class, area, max_dets]: area "all", 100 detections.
        precision = evaluator.eval["precision"][:, :, :, 0, -1]
        per_class = {}
        for k, name in enumerate(class_names):
            p = precision[:, :, k]
            per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else None
        metrics[f"{prefix}_AP_per_class"] = per_class
    return metrics


def paint_instances(
    output: dict[str, torch.Tensor], shape: tuple[int, int], background: int, score_threshold: float
) -> np.ndarray:
    """Label map of 0-based classes; ``background`` where no instance; higher scores on top."""
    return instances_from_output(output, shape, score_threshold).label_map(background)


@torch.inference_mode()
def evaluate_model(
    model: nn.Module,
    dataset: InstanceDataset,
    device: str | torch.device = "cpu",
    progress: bool = True,
    max_images: int | None = None,
    recipe: ComputeRecipe | None = None,
) -> dict[str, Any]:
    """COCO AP of ``model`` on ``dataset`` (plus thing-class IoU when it has semantic labels).
    ``recipe``: run the forward pass with its autocast (training validates this way); float32
    without one."""
    from segzoo.data.camvid_instances import CAMVID_THINGS
    from segzoo.metrics import ConfusionMatrix

    model.eval()
    num = len(dataset) if max_images is None else min(max_images, len(dataset))
    semantic = hasattr(dataset, "semantic_label")
    # Thing classes 0..K-1, "anything else" K; CamVid's unlabelled pixels are ignored.
    confusion = ConfusionMatrix(dataset.num_classes + 1, ignore_index=255) if semantic else None
    results: list[dict[str, Any]] = []
    start = time.perf_counter()
    for index in tqdm(range(num), desc="evaluate", unit="image", disable=not progress, leave=False):
        image, _ = dataset[index]
        with recipe.autocast() if recipe is not None else contextlib.nullcontext():
            output = model([image.to(device)])[0]
        output = {k: v.float() if v.is_floating_point() else v for k, v in output.items()}
        results += detections_to_coco(dataset.image_ids[index], output)
        if confusion is not None:
            label = dataset.semantic_label(index)
            truth = np.full(label.shape, dataset.num_classes, dtype=np.int64)
            for k, camvid_id in enumerate(CAMVID_THINGS):
                truth[label == camvid_id] = k
            truth[label == dataset.semantic.info.ignore_index] = 255
            painted = paint_instances(output, label.shape, dataset.num_classes, PAINT_SCORE_THRESHOLD)
            confusion.update(torch.from_numpy(painted)[None], torch.from_numpy(truth)[None])
    seconds = time.perf_counter() - start
    ground_truth = dataset.coco_ground_truth()
    if num < len(dataset):
        kept = set(dataset.image_ids[:num])
        ground_truth = {
            **ground_truth,
            "images": [i for i in ground_truth["images"] if i["id"] in kept],
            "annotations": [a for a in ground_truth["annotations"] if a["image_id"] in kept],
        }
    metrics = coco_ap(ground_truth, results, dataset.class_names)
    metrics.update(
        num_images=num,
        num_instances=sum(1 for a in ground_truth["annotations"] if not a.get("iscrowd", 0)),
        num_detections=len(results),
        seconds_per_image=seconds / max(num, 1),
    )
    if confusion is not None:
        scores = confusion.compute()
        iou = {name: _float_or_none(scores.iou[k]) for k, name in enumerate(dataset.class_names)}
        defined = [v for v in iou.values() if v is not None]
        metrics["thing_iou"] = iou
        metrics["thing_miou"] = float(np.mean(defined)) if defined else None
    return metrics


def _float_or_none(value: Any) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def evaluate_instance(
    checkpoint_dir: str | Path,
    split: str,
    data_root: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    precision: str = "32-true",
) -> dict[str, Any]:
    """Evaluate a Mask R-CNN checkpoint on ``split`` of the data set it was trained on;
    writes ``metrics.json`` into the checkpoint directory and returns the metrics.
    ``precision``: float32 by default, so published numbers reproduce on any machine; the
    training precision (``config["training"]["precision"]``) reproduces its validation."""
    from segzoo.checkpoint import METRICS_FILE, load, write_json

    checkpoint_dir = Path(checkpoint_dir)
    recipe = compute_recipe(device, precision, channels_last=False)
    device = recipe.device
    model, config = load(checkpoint_dir, device=device)
    if config.get("task") != "instance":
        raise ValueError(f"{checkpoint_dir}: not an instance-segmentation checkpoint (task={config.get('task')!r})")
    root = data_root or config.get("data_root")
    if root is None:
        raise ValueError(f"{checkpoint_dir}: config.json records no data folder; pass data_root (--data-root)")
    dataset = get_instance_dataset(config["dataset"], root, split, **config.get("dataset_options", {}))
    if dataset.class_names != config["class_names"]:
        raise ValueError(
            f"{checkpoint_dir}: trained for classes {config['class_names']}, "
            f"but {root} ({split}) has {dataset.class_names}"
        )
    metrics = {
        "task": "instance",
        "model": config["model"],
        "backend": config.get("backend"),
        "dataset": config["dataset"],
        "split": split,
        "data_root": str(root),
        **evaluate_model(model, dataset, device, progress=progress, recipe=recipe),
        "precision": recipe.precision,
    }
    write_json(checkpoint_dir / METRICS_FILE, metrics)
    if progress:
        print(format_metrics(metrics), flush=True)
    return metrics


# Detections recorded for the regression test: enough to catch a change, not every weak one.
EXAMPLE_SCORE_THRESHOLD = 0.3


def score_example_frames(checkpoint_dir: str | Path, examples_dir: str | Path) -> dict[str, Any]:
    """A Mask R-CNN checkpoint (float32) on the shipped example photos of its label set
    (``<label set>-<name>.jpg``; CamVid's for ``camvid_instances``): what it detects on each,
    and, where a photo has a ``.mask.png`` of the label set's classes, the IoU of its classes
    with its instances painted in (pixels of the other classes count against it, as in
    :func:`evaluate_model`)."""
    from PIL import Image

    from segzoo.checkpoint import WEIGHTS_FILE, file_sha256, load
    from segzoo.inference import read_image
    from segzoo.metrics import ConfusionMatrix

    model, config = load(checkpoint_dir)
    label_set = dataset_entry(config["dataset"], "instance").label_set_name
    frames = sorted(Path(examples_dir).glob(f"{label_set}-*.jpg"))
    if not frames:
        raise FileNotFoundError(f"{examples_dir}: no {label_set}-*.jpg example photos")
    labelled = [f for f in frames if f.with_suffix(".mask.png").is_file()]
    info = get_dataset_info(label_set) if labelled and label_set != config["dataset"] else None
    if info is not None:
        indices = [info.class_names.index(name) for name in config["class_names"]]
        # The label set's classes plus "none of its instances"; the other classes' pixels count as misses.
        matrix = ConfusionMatrix(info.num_classes + 1, ignore_index=info.ignore_index)
    detections = {}
    for frame in frames:
        image = read_image(frame)
        instances = predict_instances(model, image, config, score_threshold=EXAMPLE_SCORE_THRESHOLD)
        detections[frame.stem] = [
            {"label": int(label), "score": round(float(score), 4), "box": [round(float(v), 1) for v in box]}
            for label, score, box in zip(instances.labels, instances.scores, instances.boxes)
        ]
        if info is not None and frame in labelled:
            painted = instances.label_map(info.num_classes, PAINT_SCORE_THRESHOLD, indices)
            truth = np.array(Image.open(frame.with_suffix(".mask.png")), dtype=np.int64)
            matrix.update(torch.from_numpy(painted)[None], torch.from_numpy(truth)[None])
    record: dict[str, Any] = {
        "frames": [f.stem for f in frames],
        "detections": detections,
        "weights_sha256": file_sha256(Path(checkpoint_dir) / WEIGHTS_FILE),
    }
    if info is not None:
        iou = matrix.compute().iou
        record["thing_iou"] = {name: _float_or_none(iou[i]) for name, i in zip(config["class_names"], indices)}
        defined = [v for v in record["thing_iou"].values() if v is not None]
        record["miou"] = float(np.mean(defined)) if defined else None
    return record


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short table of the AP figures (in %) and, when present, the thing-class IoU."""

    def pct(value: float | None) -> str:
        return "   n/a" if value is None else f"{100 * value:6.2f}"

    lines = [
        f"{metrics.get('model')} ({metrics.get('backend')}) on {metrics.get('dataset')} {metrics.get('split')} "
        f"({metrics['num_images']} images, {metrics['num_instances']} instances)",
        f"  mask AP {pct(metrics['mask_AP'])}  AP50 {pct(metrics['mask_AP50'])}  AP75 {pct(metrics['mask_AP75'])}",
        f"  box  AP {pct(metrics['box_AP'])}  AP50 {pct(metrics['box_AP50'])}  AP75 {pct(metrics['box_AP75'])}",
    ]
    per_class = metrics.get("mask_AP_per_class") or {}
    if per_class:
        lines.append("  mask AP per class: " + ", ".join(f"{n} {pct(v).strip()}" for n, v in per_class.items()))
    if "thing_iou" in metrics:
        ious = ", ".join(f"{n} {pct(v).strip()}" for n, v in metrics["thing_iou"].items())
        lines.append(f"  rasterised IoU: {ious}; mean {pct(metrics['thing_miou']).strip()}")
    return "\n".join(lines)
