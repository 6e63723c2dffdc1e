"""``segzoo predict CKPT IMAGE|DIR|GLOB... --out DIR``: colour masks and overlays for photos.

For every image ``<stem>.<ext>`` it writes ``<stem>_mask.png`` (the classes in the
checkpoint's palette), ``<stem>_overlay.png`` (the mask blended over the photo) and
``<stem>_labels.png`` (class indices, for further processing), all at the photo's size,
and one row per image to ``predictions.csv``: seconds, width, height and, with ``--masks
DIR`` (ground-truth masks matched by file stem), the image's mIoU, pixel accuracy and IoU
per class. Inputs can be files, folders (their images) and glob patterns. A file that
cannot be read is reported at the end and the others are still segmented; the exit status
is then 1.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from segzoo.checkpoint import atomic_write, atomic_write_text, load, load_config
from segzoo.data.base import IMAGE_EXTENSIONS, is_image_file
from segzoo.devices import PRECISIONS, compute_recipe

CSV_FILE = "predictions.csv"
# Ground-truth masks are found by the photo's stem, as <stem>.png or, for masks kept beside
# their photos (as in examples/), <stem>.mask.png or <stem>_mask.png.
MASK_MARKERS = (".mask", "_mask")


def _save_png(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


# ---------------------------------------------------------------------------- inputs


def _is_mask_name(path: Path) -> bool:
    return path.suffix.lower() == ".png" and path.stem.endswith(MASK_MARKERS)


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Files as given; a folder -> its images (sorted, not recursive, leaving out
    ``*.mask.png`` / ``*_mask.png`` masks kept beside photos); a glob pattern (``*``, ``?``,
    ``[...]``, ``**`` recursive) -> its matches. Duplicates are dropped. A folder without
    images or a pattern without matches is an error; a file that does not exist is not (it
    is reported with the unreadable ones)."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            images = [p for p in sorted(path.iterdir()) if p.is_file() and is_image_file(p) and not _is_mask_name(p)]
            if not images:
                raise FileNotFoundError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
            found += images
        elif glob.has_magic(str(item)):
            matches = [Path(m) for m in sorted(glob.glob(str(item), recursive=True))]
            images = [p for p in matches if p.is_file() and is_image_file(p)]
            for folder in (p for p in matches if p.is_dir()):
                images += [p for p in sorted(folder.iterdir()) if p.is_file() and is_image_file(p)]
            if not images:
                raise FileNotFoundError(f"{item}: no image matches this pattern")
            found += images
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def index_masks(masks_dir: str | Path) -> dict[str, Path]:
    """Stem -> mask file in ``masks_dir``: ``<stem>.png`` (any image type), ``<stem>.mask.png``
    or ``<stem>_mask.png``; a PNG wins over other types."""
    masks_dir = Path(masks_dir)
    if not masks_dir.is_dir():
        raise FileNotFoundError(f"{masks_dir}: mask folder not found (--masks)")
    index: dict[str, Path] = {}
    for path in sorted(masks_dir.iterdir(), key=lambda p: (p.suffix.lower() != ".png", p.name)):
        if not (path.is_file() and is_image_file(path)):
            continue
        stem = path.stem
        for marker in MASK_MARKERS:
            if stem.endswith(marker):
                stem = stem[: -len(marker)]
                break
        index.setdefault(stem, path)
    return index


def read_ground_truth(path: Path, config: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """A mask of class indices (index or palette PNG, or RGB drawn in the checkpoint's
    colours) as ``int64 HxW``; ``ValueError`` naming the file when it does not fit."""
    from segzoo.data.base import read_mask_file

    try:
        mask = read_mask_file(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: mask not found") from None
    except ValueError as exc:
        if "colour" not in str(exc):
            raise
        mask = _labels_from_colours(read_mask_file(path, color=True), config, path)
    if mask.shape[:2] != tuple(shape):
        raise ValueError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, its photo {shape[1]}x{shape[0]}")
    mask = mask.astype(np.int64)
    known = mask < config["num_classes"]
    if config.get("ignore_index") is not None:
        known |= mask == config["ignore_index"]
    if not known.all():
        bad = sorted(np.unique(mask[~known]).tolist())[:10]
        raise ValueError(f"{path}: labels {bad} are not classes of this checkpoint (0-{config['num_classes'] - 1})")
    return mask


def _labels_from_colours(rgb: np.ndarray, config: dict[str, Any], path: Path) -> np.ndarray:
    codes = rgb.astype(np.int64) @ np.array([65536, 256, 1])
    labels = np.full(codes.shape, -1, dtype=np.int64)
    for index, colour in enumerate(config.get("palette") or []):
        labels[codes == (colour[0] * 65536 + colour[1] * 256 + colour[2])] = index
    ignore = config.get("ignore_index")
    if ignore is not None:
        labels[(labels < 0) & (codes == 0)] = ignore  # black: unlabelled
    if (labels < 0).any():
        raise ValueError(f"{path}: colours that are not in the checkpoint's palette")
    return labels


# ---------------------------------------------------------------------------- running


@dataclass
class PredictionRun:
    """What :func:`segment_images` did: one record per image (``error`` set for those that
    failed), and the confusion matrix over every scored pixel (None without masks)."""

    config: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    confusion: torch.Tensor | None = None

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("error")]


def _check_stems(images: Sequence[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in images:
        if path.stem in seen:
            raise ValueError(
                f"{seen[path.stem]} and {path} share the file name stem {path.stem!r}; their outputs would "
                "overwrite each other (predict them into different --out folders)"
            )
        seen[path.stem] = path


def segment_images(
    checkpoint: str | Path,
    images: Sequence[str | Path],
    out: str | Path | None,
    masks: str | Path | None = None,
    device: str = "auto",
    max_side: int | None = None,
    alpha: float = 0.5,
    progress: bool = True,
    precision: str = "auto",
) -> PredictionRun:
    """Segment ``images`` (files, folders, globs) with a checkpoint (folder or ``hf://``).

    ``out`` None writes no images (scoring only). ``masks``: folder of ground-truth masks,
    matched by stem. An image that cannot be read or scored is recorded with its ``error``
    and the run goes on."""
    from segzoo.hub import resolve_checkpoint_dir
    from segzoo.inference import colorize, inference_scale, orient, overlay, predict_mask, read_photo
    from segzoo.metrics import confusion_matrix, scores_from_confusion

    paths = expand_inputs(images)
    if out is not None:
        _check_stems(paths)
    directory = resolve_checkpoint_dir(checkpoint)
    recipe = compute_recipe(device, precision)
    config = load_config(directory)
    mask_index = index_masks(masks) if masks is not None else None
    if config.get("task") == "instance":
        if mask_index is not None:
            raise ValueError("--masks scores semantic models; score Mask R-CNN with `segzoo evaluate` on its data set")
        return _predict_instances(directory, paths, Path(out) if out else None, recipe.device, alpha, progress)
    model, config = load(directory, device=recipe.device)
    model = recipe.prepare_model(model)
    num_classes, ignore = config["num_classes"], config.get("ignore_index")
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64) if mask_index is not None else None
    run = PredictionRun(config, confusion=confusion)
    out = Path(out) if out is not None else None
    for path in tqdm(paths, desc="predict", unit="image", disable=not progress or len(paths) < 2):
        record: dict[str, Any] = {"image": str(path)}
        run.records.append(record)
        try:
            photo = read_photo(path)
            image = photo.pixels
            record.update(width=image.shape[1], height=image.shape[0])
            start = time.perf_counter()
            side = max_side or inference_scale(image, config)
            labels = predict_mask(model, image, config, max_side=side, recipe=recipe)
            record["seconds"] = round(time.perf_counter() - start, 4)
            if out is not None:
                files = {kind: out / f"{path.stem}_{kind}.png" for kind in ("mask", "overlay", "labels")}
                _save_png(files["mask"], colorize(labels, config["palette"]))
                _save_png(files["overlay"], overlay(image, labels, config["palette"], alpha))
                _save_png(files["labels"], labels)
                record.update({k: str(v) for k, v in files.items()})
            present = np.bincount(labels.ravel(), minlength=num_classes) / labels.size
            record["class_fractions"] = {
                config["class_names"][c]: round(float(f), 4) for c, f in enumerate(present[:num_classes]) if f > 0
            }
            mask_path = mask_index.get(path.stem) if mask_index is not None else None
            if mask_path is not None:
                # A mask is drawn on the stored pixel grid: turn it as the photo was turned.
                stored = read_ground_truth(mask_path, config, _stored_shape(image.shape[:2], photo.orientation))
                truth = orient(stored, photo.orientation)
                matrix = confusion_matrix(torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(truth),
                                          num_classes, ignore)  # fmt: skip
                run.confusion += matrix
                scores = scores_from_confusion(matrix, ignore)
                record.update(ground_truth=str(mask_path), miou=scores.miou, pixel_accuracy=scores.pixel_accuracy)
                record["iou"] = dict(zip(config["class_names"], scores.iou.tolist()))
        except (ValueError, OSError) as exc:
            record["error"] = str(exc)
    return run


def _stored_shape(shape: tuple[int, int], orientation: int) -> tuple[int, int]:
    """The photo's height and width before EXIF rotation (what its mask was drawn on)."""
    return (shape[1], shape[0]) if orientation in (5, 6, 7, 8) else tuple(shape)


def _predict_instances(
    directory: Path, images: list[Path], out: Path | None, device: Any, alpha: float, progress: bool
) -> PredictionRun:
    try:
        from segzoo.instance.predict import draw_instances, predict_instances
    except ImportError as exc:
        raise RuntimeError(f"instance prediction is not available ({exc})") from None
    from segzoo.inference import read_image

    model, config = load(directory, device=device)
    run = PredictionRun(config)
    for path in tqdm(images, desc="predict", unit="image", disable=not progress or len(images) < 2):
        record: dict[str, Any] = {"image": str(path)}
        run.records.append(record)
        try:
            image = read_image(path)
            record.update(width=image.shape[1], height=image.shape[0])
            start = time.perf_counter()
            instances = predict_instances(model, image, config, device=device)
            record["seconds"] = round(time.perf_counter() - start, 4)
            if out is not None:
                target = out / f"{path.stem}_overlay.png"
                drawn = draw_instances(image, instances, config["class_names"], config.get("palette"), alpha=alpha)
                _save_png(target, drawn)
                record["overlay"] = str(target)
            counts: dict[str, int] = {}
            for label in instances.labels.tolist():
                counts[config["class_names"][label]] = counts.get(config["class_names"][label], 0) + 1
            record["instances"] = counts
        except (ValueError, OSError) as exc:
            record["error"] = str(exc)
    return run


def predict_files(
    checkpoint: str | Path,
    images: list[str | Path],
    out: str | Path,
    device: str = "auto",
    max_side: int | None = None,
    alpha: float = 0.5,
    progress: bool = True,
    precision: str = "auto",
    masks: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Segment ``images`` (files, folders, globs) with a checkpoint; writes the images and
    ``predictions.csv`` into ``out``; returns one record per image (files written, class
    fractions, scores with ``masks``; ``error`` for an image that failed).

    ``precision`` ``auto`` is the device's fast path (:mod:`segzoo.devices`); ``32-true``
    forces float32."""
    run = segment_images(checkpoint, images, out, masks, device, max_side, alpha, progress, precision)
    write_csv(Path(out) / CSV_FILE, run)
    return run.records


# ---------------------------------------------------------------------------- CSV


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else round(value, 6)
    return "" if value is None else value


def write_csv(path: str | Path, run: PredictionRun) -> Path:
    """One row per image: image, seconds, width, height, then where a mask was found
    ``ground_truth, miou, pixel_accuracy, iou_<class>...``, instance counts for Mask R-CNN, and
    ``error`` (empty when the image was segmented)."""
    columns = ["image", "seconds", "width", "height"]
    scored = run.confusion is not None
    if scored:
        columns += ["ground_truth", "miou", "pixel_accuracy"] + [f"iou_{name}" for name in run.config["class_names"]]
    if run.config.get("task") == "instance":
        columns += ["instances"]
    columns += ["error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in run.records:
        row = dict(record)
        for name, iou in (record.get("iou") or {}).items():
            row[f"iou_{name}"] = iou
        if "instances" in record:
            row["instances"] = sum(record["instances"].values())
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    atomic_write_text(path, buffer.getvalue())
    return Path(path)


def report_failures(run: PredictionRun, command: str = "predict") -> int:
    """Print the images that failed (stderr); the exit status: 1 if any did."""
    failures = run.failures
    if not failures:
        return 0
    print(f"segzoo {command}: {len(failures)} of {len(run.records)} images failed:", file=sys.stderr)
    for record in failures:
        print(f"  {record['error']}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    result = segment_images(
        args.checkpoint,
        args.images,
        args.out,
        masks=args.masks,
        device=args.device,
        max_side=args.max_side,
        alpha=args.alpha,
        progress=args.progress,
        precision=args.precision,
    )
    csv_path = write_csv(Path(args.out) / CSV_FILE, result)
    done = [r for r in result.records if not r.get("error")]
    if len(result.records) <= 10:
        for record in done:
            fractions = ", ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(record.get("class_fractions", {}).items(),
                                                                           key=lambda kv: -kv[1])[:5])  # fmt: skip
            if "instances" in record:
                fractions = ", ".join(f"{n} {name}" for name, n in record["instances"].items()) or "no objects"
            target = record.get("mask", record.get("overlay"))
            print(f"{record['image']} -> {target}" + (f"  ({fractions})" if fractions else ""))
    seconds = [r["seconds"] for r in done if "seconds" in r]
    summary = f"segmented {len(done)} of {len(result.records)} images into {args.out}"
    if seconds:
        summary += f" (median {1000 * float(np.median(seconds)):.0f} ms per image)"
    print(f"{summary}; per image: {csv_path}")
    if result.confusion is not None:
        from segzoo.metrics import scores_from_confusion

        scored = sum(1 for r in done if "miou" in r)
        scores = scores_from_confusion(result.confusion, result.config.get("ignore_index"))
        print(f"{scored} images with masks: mIoU {100 * scores.miou:.2f}%, pixel accuracy "
              f"{100 * scores.pixel_accuracy:.2f}% (one confusion matrix over all their pixels)")  # fmt: skip
    return report_failures(result)


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="segment images with a checkpoint (colour masks, overlays, per-image CSV)",
        description="Write <stem>_mask.png (colour), <stem>_overlay.png and <stem>_labels.png (class "
        "indices) for every image, at the image's size, and predictions.csv (per image: seconds, size and, "
        "with --masks, mIoU, pixel accuracy and IoU per class). Unreadable images are listed at the end and "
        "make the exit status 1; the others are still segmented.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint directory or hf://user/repo[/subfolder]")
    p.add_argument("images", metavar="IMAGE", nargs="+",
                   help="image files, folders of images, or glob patterns ('photos/**/*.jpg')")  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--masks", metavar="DIR", help="ground-truth masks, <stem>.png (class indices or the palette's "
                   "colours): adds the scores of each image to predictions.csv")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--max-side", type=int,
                   help="downscale images whose longer side exceeds this before the model (default: to the "
                   "scale the model runs at)")  # fmt: skip
    p.add_argument("--alpha", type=float, default=0.5, help="mask opacity in the overlay, 0-1 (default: 0.5)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 on GPUs and on CPUs with native bf16 where it is faster, else float32 "
                   "(default: auto)")  # fmt: skip
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)
