"""``segzoo predict CKPT IMAGE... --out DIR``: colour masks and overlays for photos.

For every image ``<stem>.<ext>`` it writes ``<stem>_mask.png`` (the classes in the
checkpoint's palette), ``<stem>_overlay.png`` (the mask blended over the photo) and
``<stem>_labels.png`` (class indices, for further processing), all at the photo's size.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from segzoo.checkpoint import atomic_write, load, load_config
from segzoo.devices import PRECISIONS, compute_recipe


def _save_png(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def training_scale(image: np.ndarray, config: dict[str, Any], fallback: int = 1024) -> int:
    """The longer side an image has at the scale the model was trained at: images are
    resized so their shorter side is ``config["short_side"]`` (no upscaling of small photos)."""
    short_side = config.get("short_side")
    height, width = image.shape[:2]
    if not short_side:
        return fallback  # trained at the images' own size: only very large photos are shrunk
    if min(height, width) <= short_side:
        return max(height, width)
    return round(short_side * max(height, width) / min(height, width))


def predict_files(
    checkpoint: str | Path,
    images: list[str | Path],
    out: str | Path,
    device: str = "auto",
    max_side: int | None = None,
    alpha: float = 0.5,
    progress: bool = True,
    precision: str = "auto",
) -> list[dict[str, Any]]:
    """Segment ``images`` with a checkpoint; returns one record of written files per image.

    ``precision`` ``auto`` is the device's fast path (:mod:`segzoo.devices`); ``32-true``
    forces float32."""
    from segzoo.inference import colorize, overlay, predict_mask, read_image

    out = Path(out)
    recipe = compute_recipe(device, precision)
    torch_device = recipe.device
    config = load_config(checkpoint)
    if config.get("task") == "instance":
        return _predict_instances(checkpoint, images, out, torch_device, alpha, progress)
    model, config = load(checkpoint, device=torch_device)
    model = recipe.prepare_model(model)
    stems = [Path(p).stem for p in images]
    if len(set(stems)) != len(stems):
        raise ValueError("two input images share a file name stem; their outputs would overwrite each other")
    written = []
    for path in tqdm(images, desc="predict", disable=not progress or len(images) < 2):
        image = read_image(path)
        labels = predict_mask(model, image, config, max_side=max_side or training_scale(image, config), recipe=recipe)
        stem = Path(path).stem
        files = {
            "mask": out / f"{stem}_mask.png",
            "overlay": out / f"{stem}_overlay.png",
            "labels": out / f"{stem}_labels.png",
        }
        _save_png(files["mask"], colorize(labels, config["palette"]))
        _save_png(files["overlay"], overlay(image, labels, config["palette"], alpha))
        _save_png(files["labels"], labels)
        present = np.bincount(labels.ravel(), minlength=config["num_classes"]) / labels.size
        classes = {
            config["class_names"][c]: round(float(f), 4)
            for c, f in enumerate(present[: config["num_classes"]])
            if f > 0
        }
        written.append({"image": str(path), **{k: str(v) for k, v in files.items()}, "class_fractions": classes})
    return written


def _predict_instances(
    checkpoint: str | Path, images: list[str | Path], out: Path, device: Any, alpha: float, progress: bool
) -> list[dict[str, Any]]:
    try:
        from segzoo.instance.predict import draw_instances, predict_instances
    except ImportError as exc:
        raise RuntimeError(f"instance prediction is not available ({exc})") from None
    from segzoo.inference import read_image

    model, config = load(checkpoint, device=device)
    written = []
    for path in tqdm(images, desc="predict", disable=not progress or len(images) < 2):
        image = read_image(path)
        instances = predict_instances(model, image, config, device=device)
        target = out / f"{Path(path).stem}_overlay.png"
        drawn = draw_instances(image, instances, config["class_names"], config.get("palette"), alpha=alpha)
        _save_png(target, drawn)
        counts: dict[str, int] = {}
        for label in instances["labels"].tolist():
            counts[config["class_names"][label]] = counts.get(config["class_names"][label], 0) + 1
        written.append({"image": str(path), "overlay": str(target), "instances": counts})
    return written


def run(args: argparse.Namespace) -> int:
    records = predict_files(
        args.checkpoint,
        args.images,
        args.out,
        device=args.device,
        max_side=args.max_side,
        alpha=args.alpha,
        progress=args.progress,
        precision=args.precision,
    )
    for record in records:
        fractions = ", ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(record.get("class_fractions", {}).items(),
                                                                       key=lambda kv: -kv[1])[:5])  # fmt: skip
        if "instances" in record:
            fractions = ", ".join(f"{n} {name}" for name, n in record["instances"].items()) or "no objects"
        print(
            f"{record['image']} -> {record.get('mask', record['overlay'])}" + (f"  ({fractions})" if fractions else "")
        )
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="segment images with a checkpoint (colour masks and overlays)",
        description="Write <stem>_mask.png (colour), <stem>_overlay.png and <stem>_labels.png (class "
        "indices) for every image, at the image's size.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint directory")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (jpg, png, ...)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--max-side", type=int,
                   help="downscale images whose longer side exceeds this before the model (default: to the "
                   "scale the model was trained at)")  # fmt: skip
    p.add_argument("--alpha", type=float, default=0.5, help="mask opacity in the overlay, 0-1 (default: 0.5)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 on CPUs with native bf16 and on GPUs, else float32 (default: auto)")  # fmt: skip
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)
