"""``segzoo evaluate CKPT``: score a checkpoint on a data set split; writes ``metrics.json``.

The protocol is the data set's standard one (CamVid: the 233 test frames, 11 classes,
label 11 ignored), computed from one confusion matrix over every pixel of the split, with
the same code that validated the model during training: images at the scale the model
was trained at, scores on the full-resolution label masks.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from segzoo.checkpoint import METRICS_FILE, WEIGHTS_FILE, load, load_config, write_json
from segzoo.devices import PRECISIONS, compute_recipe, device_name, resolve_device


def file_sha256(path: str | Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def evaluate_checkpoint(
    checkpoint: str | Path,
    split: str = "test",
    data_root: str | Path | None = None,
    device: str = "auto",
    limit: int | None = None,
    num_workers: int = 0,
    out: str | Path | None = None,
    progress: bool = True,
    precision: str = "32-true",
) -> dict[str, Any]:
    """Evaluate a semantic checkpoint directory; writes and returns the metrics.

    The published numbers are float32 (``precision="32-true"``), reproducible on any
    machine; ``auto`` scores the fast path the app serves (bf16 on CPUs that have it)."""
    from segzoo.data import get_dataset
    from segzoo.metrics import scores_from_confusion
    from segzoo.training.data import PreparedSamples, validation_samples
    from segzoo.training.validation import validate

    checkpoint = Path(checkpoint)
    recipe = compute_recipe(device, precision)
    torch_device = recipe.device
    model, config = load(checkpoint, device=torch_device)
    model = recipe.prepare_model(model)
    training = config.get("training", {})
    root = data_root or training.get("data_root") or config.get("data_root")
    if root is None:
        raise ValueError(f"{checkpoint / 'config.json'} does not record the data folder: pass --data-root")
    dataset = get_dataset(config["dataset"], root, split, **config.get("dataset_options", {}))
    if dataset.info.class_names != config["class_names"]:
        raise ValueError(
            f"{config['dataset']} at {root} has classes {dataset.info.class_names}, but the checkpoint "
            f"predicts {config['class_names']}"
        )
    indices = list(range(len(dataset)))[: limit or None]
    if not indices:
        raise ValueError(f"{config['dataset']} split {split!r} at {root} has no images")
    samples = PreparedSamples(dataset, config.get("short_side"), train=False)
    start = time.perf_counter()
    sums = validate(
        model,
        validation_samples(samples, indices, None, num_workers),
        num_classes=config["num_classes"],
        ignore_index=config["ignore_index"],
        mean=config["mean"],
        std=config["std"],
        device=torch_device,
        channels_last=recipe.channels_last,
        precision=recipe.precision,
        progress=progress,
        total=len(indices),
        desc=f"evaluate {split}",
    )
    seconds = time.perf_counter() - start
    scores = scores_from_confusion(sums.confusion, config["ignore_index"])
    metrics = {
        "model": config["model"],
        "dataset": config["dataset"],
        "dataset_options": config.get("dataset_options", {}),
        "split": split,
        "num_images": len(indices),
        "split_images": len(dataset),
        "limit": limit,
        "partial": len(indices) < len(dataset),
        "ignore_index": config["ignore_index"],
        "short_side": config.get("short_side"),
        **scores.to_dict(config["class_names"]),
        "per_class_iou": {
            name: (None if torch.isnan(v) else float(v)) for name, v in zip(config["class_names"], scores.iou)
        },
        "checkpoint": {
            "path": str(checkpoint),
            "weights_sha256": file_sha256(checkpoint / WEIGHTS_FILE),
            "best_epoch": training.get("best_epoch"),
            "best_val_miou": training.get("best_val_miou"),
            "interim": config.get("interim", False),
        },
        "device_name": device_name(torch_device),
        "precision": recipe.precision,
        "channels_last": recipe.channels_last,
        "seconds": round(seconds, 3),
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    from segzoo import __version__

    metrics["segzoo_version"] = __version__
    write_json(Path(out) if out else checkpoint / METRICS_FILE, metrics)
    return metrics


def print_metrics(metrics: dict[str, Any]) -> None:
    def pct(value: float | None) -> str:
        return "   n/a" if value is None else f"{100 * value:6.2f}"

    print(f"{metrics['model']} on {metrics['dataset']} {metrics['split']} ({metrics['num_images']} images"
          f"{', PARTIAL' if metrics.get('partial') else ''})")  # fmt: skip
    width = max(len(n) for n in metrics["per_class"])
    print(f"  {'class':<{width}}    IoU   Dice")
    for name, s in metrics["per_class"].items():
        print(f"  {name:<{width}} {pct(s['iou'])} {pct(s['dice'])}")
    print(f"  mIoU {pct(metrics['miou'])}  mDice {pct(metrics['mdice'])}  pixel acc {pct(metrics['pixel_accuracy'])}  "
          f"mean class acc {pct(metrics['mean_class_accuracy'])}  fwIoU {pct(metrics['fw_iou'])}")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    checkpoint = Path(args.checkpoint)
    config = load_config(checkpoint)
    if config.get("task") == "instance":
        from segzoo.instance.evaluate import evaluate_instance

        evaluate_instance(checkpoint, args.split, data_root=args.data_root, device=str(resolve_device(args.device)))
        return 0
    metrics = evaluate_checkpoint(
        checkpoint,
        split=args.split,
        data_root=args.data_root,
        device=args.device,
        limit=args.limit,
        num_workers=args.num_workers,
        out=args.out,
        progress=args.progress,
        precision=args.precision,
    )
    print_metrics(metrics)
    print(f"wrote {args.out or checkpoint / METRICS_FILE}")
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint on a data set split (writes metrics.json)",
        description="Per-class IoU, mIoU, Dice, pixel accuracy, mean class accuracy, frequency-weighted "
        "IoU and the confusion matrix of a checkpoint on a split, written to CKPT/metrics.json.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint directory (with model.safetensors, config.json)")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--data-root", help="data folder (default: the one recorded at training time)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N images (marked partial)")
    p.add_argument("--precision", choices=PRECISIONS, default="32-true",
                   help="32-true: the reference float32 numbers (default); auto: the device's fast path, "
                   "as served by the app")  # fmt: skip
    p.add_argument("--num-workers", type=int, default=0, help="data-loading processes (default: 0)")
    p.add_argument("--out", help="where to write the metrics (default: CKPT/metrics.json)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


REGRESSION_FILE = "regression.json"


def score_example_frames(
    checkpoint_dir: str | Path, examples_dir: str | Path, precision: str = "32-true"
) -> dict[str, Any]:
    """Score a checkpoint on the shipped example frames of its data set.

    Examples are ``<dataset>-<name>.jpg`` with a ``<dataset>-<name>.mask.png`` of class
    indices. Prediction goes through the same path as the app and ``segzoo predict``
    (training scale, full-size mask), and one confusion matrix covers all the frames.
    """
    import numpy as np
    from PIL import Image

    from segzoo.inference import predict_mask, read_image
    from segzoo.metrics import ConfusionMatrix
    from segzoo.predict import training_scale

    recipe = compute_recipe("cpu", precision)
    model, config = load(checkpoint_dir)
    model = recipe.prepare_model(model)
    masks = sorted(Path(examples_dir).glob(f"{config['dataset']}-*.mask.png"))
    if not masks:
        raise FileNotFoundError(f"{examples_dir}: no {config['dataset']}-*.mask.png example frames")
    matrix = ConfusionMatrix(config["num_classes"], ignore_index=config.get("ignore_index"))
    for mask_path in masks:
        image = read_image(mask_path.with_name(mask_path.name.replace(".mask.png", ".jpg")))
        prediction = predict_mask(model, image, config, max_side=training_scale(image, config), recipe=recipe)
        target = np.array(Image.open(mask_path), dtype=np.int64)
        matrix.update(torch.from_numpy(prediction.astype(np.int64))[None], torch.from_numpy(target)[None])
    scores = matrix.compute()
    return {
        "frames": [m.name.replace(".mask.png", "") for m in masks],
        "miou": scores.miou,
        "pixel_accuracy": scores.pixel_accuracy,
        "weights_sha256": file_sha256(Path(checkpoint_dir) / WEIGHTS_FILE),
    }
