"""``segzoo evaluate CKPT``: score a checkpoint on a data set split; writes ``metrics.json``.

The protocol is the data set's standard one (CamVid: the 233 test frames, 11 classes,
label 11 ignored), computed from one confusion matrix over every pixel of the split, with
the same code that validated the model during training: images at the scale the model
runs at (the training scale, or the one ``segzoo tune-scale`` chose on the validation
split), scores on the full-resolution label masks.

``segzoo evaluate CKPT --images DIR|GLOB... --masks DIR --out DIR`` scores any folder of
photos against masks matched by file stem instead (the ``segzoo predict`` path): one
confusion matrix over all their pixels in ``metrics.json``, and per image ``predictions.csv``.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from segzoo.checkpoint import METRICS_FILE, WEIGHTS_FILE, file_sha256, load, load_config, write_json
from segzoo.devices import PRECISIONS, compute_recipe, device_name, keep_freed_memory, resolve_device
from segzoo.version import __version__


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
    from segzoo.hub import is_hub_uri, local_name, resolve_checkpoint_dir

    metrics = score_checkpoint(checkpoint, split, data_root, device, limit, num_workers, progress, precision)
    if out is None:  # the Hub cache is not ours to write into
        out = f"{local_name(str(checkpoint))}.metrics.json" if is_hub_uri(str(checkpoint)) else None
    write_json(Path(out) if out else resolve_checkpoint_dir(checkpoint) / METRICS_FILE, metrics)
    return metrics


def score_checkpoint(
    checkpoint: str | Path,
    split: str = "test",
    data_root: str | Path | None = None,
    device: str = "auto",
    limit: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
    precision: str = "32-true",
    short_side: int | None = None,
) -> dict[str, Any]:
    """The metrics :func:`evaluate_checkpoint` writes, without writing them. Images are
    resized to ``short_side`` (default: the checkpoint's :func:`~segzoo.inference.inference_short_side`);
    scores are always on the full-resolution masks."""
    from segzoo.data import get_dataset
    from segzoo.hub import resolve_checkpoint_dir
    from segzoo.inference import inference_short_side
    from segzoo.metrics import scores_from_confusion
    from segzoo.training.data import PreparedSamples, validation_samples
    from segzoo.training.validation import validate

    given = str(checkpoint)
    checkpoint = resolve_checkpoint_dir(checkpoint)
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
    short_side = short_side or inference_short_side(config)
    samples = PreparedSamples(dataset, short_side, train=False)
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
        "short_side": short_side,
        **scores.to_dict(config["class_names"]),
        "per_class_iou": {
            name: (None if torch.isnan(v) else float(v)) for name, v in zip(config["class_names"], scores.iou)
        },
        "checkpoint": {
            "path": given,
            "weights_sha256": file_sha256(checkpoint / WEIGHTS_FILE),
            "best_epoch": training.get("best_epoch"),
            "best_val_miou": training.get("best_val_miou"),
            "interim": config.get("interim", False),
        },
        "device_name": device_name(torch_device),
        "precision": recipe.precision,
        "channels_last": recipe.channels_last,
        "seconds": round(seconds, 3),
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    metrics["segzoo_version"] = __version__
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


FOLDER_OUT = "evaluation"


def evaluate_folder(
    checkpoint: str | Path,
    images: list[str | Path],
    masks: str | Path,
    out: str | Path | None = None,
    device: str = "auto",
    precision: str = "32-true",
    max_side: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], Any]:
    """Score a checkpoint on photos (files, folders, globs) against the masks in ``masks``
    (matched by stem). Writes ``metrics.json`` (one confusion matrix over all pixels of the
    images that have a mask) and ``predictions.csv`` (per image) into ``out`` (default
    ``evaluation/``); returns the metrics and the :class:`~segzoo.predict.PredictionRun`."""
    from segzoo.metrics import scores_from_confusion
    from segzoo.predict import CSV_FILE, segment_images, write_csv

    out = Path(out or FOLDER_OUT)
    start = time.perf_counter()
    run = segment_images(checkpoint, images, None, masks=masks, device=device, max_side=max_side,
                         progress=progress, precision=precision)  # fmt: skip
    config = run.config
    scored = [r for r in run.records if "miou" in r]
    if not scored:
        raise ValueError(f"{masks}: no mask matches any of the {len(run.records)} images by file stem "
                         "(<stem>.png, <stem>.mask.png or <stem>_mask.png)")  # fmt: skip
    scores = scores_from_confusion(run.confusion, config.get("ignore_index"))
    recipe = compute_recipe(device, precision)
    metrics = {
        "model": config["model"],
        "dataset": config.get("dataset"),
        "split": None,
        "images": [str(i) for i in images],
        "masks": str(masks),
        "num_images": len(scored),
        "without_mask": [r["image"] for r in run.records if "miou" not in r and not r.get("error")],
        "failed": [r["image"] for r in run.failures],
        "ignore_index": config.get("ignore_index"),
        **scores.to_dict(config["class_names"]),
        "per_class_iou": {
            name: (None if torch.isnan(v) else float(v)) for name, v in zip(config["class_names"], scores.iou)
        },
        "checkpoint": {"path": str(checkpoint)},
        "device_name": device_name(recipe.device),
        "precision": recipe.precision,
        "seconds": round(time.perf_counter() - start, 3),
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    metrics["segzoo_version"] = __version__
    write_json(out / METRICS_FILE, metrics)
    write_csv(out / CSV_FILE, run)
    return metrics, run


def _run_folder(args: argparse.Namespace) -> int:
    from segzoo.predict import report_failures

    if not args.masks:
        raise ValueError("--images needs --masks DIR (the ground truth, matched by file stem)")
    metrics, run = evaluate_folder(
        args.checkpoint,
        args.images,
        args.masks,
        out=args.out,
        device=args.device,
        precision=args.precision,
        max_side=args.max_side,
        progress=args.progress,
    )
    metrics["split"] = f"{metrics['num_images']} images from {', '.join(metrics['images'])}"
    print_metrics(metrics)
    out = Path(args.out or FOLDER_OUT)
    print(f"wrote {out / METRICS_FILE} and {out / 'predictions.csv'}")
    if metrics["without_mask"]:
        print(f"{len(metrics['without_mask'])} images have no mask in {args.masks} and were not scored "
              f"(listed in {out / METRICS_FILE})")  # fmt: skip
    return report_failures(run, "evaluate")


def run(args: argparse.Namespace) -> int:
    from segzoo.hub import is_hub_uri, local_name, resolve_checkpoint_dir

    keep_freed_memory()
    if args.images:
        return _run_folder(args)
    checkpoint = resolve_checkpoint_dir(args.checkpoint)
    config = load_config(checkpoint)
    if config.get("task") == "instance":
        from segzoo.instance.evaluate import evaluate_instance

        if is_hub_uri(args.checkpoint):
            raise ValueError(f"{args.checkpoint}: Mask R-CNN evaluation writes into the checkpoint folder; "
                             "download it first (`hf download`) and evaluate the local copy")  # fmt: skip
        evaluate_instance(
            checkpoint,
            args.split,
            data_root=args.data_root,
            device=str(resolve_device(args.device)),
            precision=args.precision,
        )
        return 0
    metrics = evaluate_checkpoint(
        args.checkpoint,
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
    written = args.out or (f"{local_name(args.checkpoint)}.metrics.json" if is_hub_uri(args.checkpoint) else None)
    print(f"wrote {written or checkpoint / METRICS_FILE}")
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint on a data set split (writes metrics.json)",
        description="Per-class IoU, mIoU, Dice, pixel accuracy, mean class accuracy, frequency-weighted "
        "IoU and the confusion matrix of a checkpoint on a split, written to CKPT/metrics.json.",
    )
    p.add_argument(
        "checkpoint",
        metavar="CKPT",
        help="checkpoint directory (with model.safetensors, config.json) or hf://user/repo[/subfolder]",
    )
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--data-root", help="data folder (default: the one recorded at training time)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N images (marked partial)")
    p.add_argument("--precision", choices=PRECISIONS, default="32-true",
                   help="32-true: the reference float32 numbers (default); auto: the device's fast path, "
                   "as served by the app")  # fmt: skip
    p.add_argument("--num-workers", type=int, default=0, help="data-loading processes (default: 0)")
    p.add_argument(
        "--out",
        help="where to write the metrics (default: CKPT/metrics.json; "
        "./<user>--<repo>.metrics.json for hf://); with --images a folder for metrics.json and "
        "predictions.csv (default: evaluation/)",
    )
    p.add_argument(
        "--images",
        metavar="IMAGE",
        nargs="+",
        help="score these photos (files, folders, globs) instead of a data set split; needs --masks",
    )
    p.add_argument(
        "--masks",
        metavar="DIR",
        help="with --images: ground-truth masks, <stem>.png (class indices or the palette's colours)",
    )
    p.add_argument("--max-side", type=int, help="with --images: downscale longer sides beyond this (default: to "
                   "the scale the model runs at)")  # fmt: skip
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


REGRESSION_FILE = "regression.json"


def score_example_frames(
    checkpoint_dir: str | Path, examples_dir: str | Path, precision: str = "32-true"
) -> dict[str, Any]:
    """Score a checkpoint on the shipped example frames of its data set.

    Examples are ``<dataset>-<name>.jpg`` with a ``<dataset>-<name>.mask.png`` of class
    indices. Prediction goes through the same path as the app and ``segzoo predict``
    (inference scale, full-size mask), and one confusion matrix covers all the frames.
    Instance checkpoints: :func:`segzoo.instance.evaluate.score_example_frames` (float32).
    """
    import numpy as np
    from PIL import Image

    from segzoo.inference import inference_scale, predict_mask, read_image
    from segzoo.metrics import ConfusionMatrix

    if load_config(checkpoint_dir).get("task") == "instance":
        from segzoo.instance.evaluate import score_example_frames as score_instance_examples

        return score_instance_examples(checkpoint_dir, examples_dir)
    recipe = compute_recipe("cpu", precision)
    model, config = load(checkpoint_dir)
    model = recipe.prepare_model(model)
    masks = sorted(Path(examples_dir).glob(f"{config['dataset']}-*.mask.png"))
    if not masks:
        raise FileNotFoundError(f"{examples_dir}: no {config['dataset']}-*.mask.png example frames")
    matrix = ConfusionMatrix(config["num_classes"], ignore_index=config.get("ignore_index"))
    for mask_path in masks:
        image = read_image(mask_path.with_name(mask_path.name.replace(".mask.png", ".jpg")))
        prediction = predict_mask(model, image, config, max_side=inference_scale(image, config), recipe=recipe)
        target = np.array(Image.open(mask_path), dtype=np.int64)
        matrix.update(torch.from_numpy(prediction.astype(np.int64))[None], torch.from_numpy(target)[None])
    scores = matrix.compute()
    return {
        "frames": [m.name.replace(".mask.png", "") for m in masks],
        "miou": scores.miou,
        "pixel_accuracy": scores.pixel_accuracy,
        "weights_sha256": file_sha256(Path(checkpoint_dir) / WEIGHTS_FILE),
    }
