"""``segzoo tune-scale CKPT``: choose, on the validation split, the scale a model runs at.

A model trained on random crops at random scales need not segment whole frames best at the
scale it was trained at (the train/test resolution discrepancy of Touvron et al., "Fixing
the train-test resolution discrepancy", NeurIPS 2019). This scores the checkpoint on the
validation split with the photos' shorter side at each factor of its training scale (masks
always at full resolution, float32 by default, as ``segzoo evaluate`` scores), and records
the best in ``config.json`` as ``inference_short_side``, with every score beside it
(``scale_tuning``). ``segzoo evaluate``, ``segzoo predict``, the app and ``segzoo export``
then resize photos to it (:func:`segzoo.inference.inference_short_side`). The choice is
made on the validation split only; score the test split afterwards with ``segzoo evaluate``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from segzoo.checkpoint import CONFIG_FILE, load_config, write_json
from segzoo.devices import PRECISIONS

# Factors of the training scale; not above 1, because photos are never upscaled to it.
DEFAULT_FACTORS = (0.375, 0.5, 0.625, 0.75, 0.875, 1.0)


def tune_scale(
    checkpoint: str | Path,
    split: str = "val",
    factors: Sequence[float] = DEFAULT_FACTORS,
    data_root: str | Path | None = None,
    device: str = "auto",
    precision: str = "32-true",
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``checkpoint`` on ``split`` at each factor of its training short side, write the
    best short side (ties go to the larger) to its ``config.json`` and return the record."""
    from segzoo.evaluate import score_checkpoint

    if split == "test":
        raise ValueError("choose the scale on the validation split; the test split only scores the choice")
    checkpoint = Path(checkpoint)
    config = load_config(checkpoint)
    if config.get("task", "semantic") != "semantic":
        raise ValueError(f"{checkpoint}: tune-scale is for semantic models (Mask R-CNN resizes inside)")
    trained_at = config.get("short_side")
    if not trained_at:
        raise ValueError(f"{checkpoint}: the model was trained at the images' own size (no short_side)")
    if not factors or any(not 0 < f <= 1 for f in factors):
        raise ValueError(f"scale factors must lie in (0, 1], got {list(factors)}")
    short_sides = sorted({round(trained_at * f) for f in factors}, reverse=True)
    scores: dict[str, float] = {}
    for side in short_sides:
        metrics = score_checkpoint(
            checkpoint, split, data_root, device, progress=progress, precision=precision, short_side=side
        )
        scores[str(side)] = miou = metrics["miou"]
        print(f"  short side {side:4d} ({side / trained_at:.3f}x): {split} mIoU {100 * miou:.2f}", flush=True)
    best = max(short_sides, key=lambda side: scores[str(side)])  # max keeps the first (larger) on ties
    record = {
        "split": split,
        "trained_short_side": trained_at,
        "miou_by_short_side": scores,
        "chosen": best,
        "precision": precision,
        "tuned_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    config["inference_short_side"] = best
    config["scale_tuning"] = record
    write_json(checkpoint / CONFIG_FILE, config)
    return record


def run(args: argparse.Namespace) -> int:
    from segzoo.hub import is_hub_uri

    if is_hub_uri(args.checkpoint):
        raise ValueError(f"{args.checkpoint}: tune-scale writes the checkpoint's config.json; download it first")
    record = tune_scale(
        args.checkpoint,
        split=args.split,
        factors=args.factors,
        data_root=args.data_root,
        device=args.device,
        precision=args.precision,
        progress=args.progress,
    )
    side, trained_at = record["chosen"], record["trained_short_side"]
    print(
        f"{args.checkpoint}: runs at a short side of {side} ({side / trained_at:.3f}x its training scale), "
        f"{record['split']} mIoU {100 * record['miou_by_short_side'][str(side)]:.2f}; written to its {CONFIG_FILE}. "
        f"Score the test split with `segzoo evaluate {args.checkpoint}`."
    )
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tune-scale",
        help="choose on the validation split the scale a model runs at (writes config.json)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CKPT", help="local checkpoint directory")
    p.add_argument("--split", default="val", help="split to choose on (default: val; not test)")
    p.add_argument(
        "--factors",
        type=float,
        nargs="+",
        default=list(DEFAULT_FACTORS),
        help=f"factors of the training short side to try, in (0, 1] (default: {' '.join(map(str, DEFAULT_FACTORS))})",
    )
    p.add_argument("--data-root", help="data folder (default: the one recorded at training time)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--precision", choices=PRECISIONS, default="32-true", help="default: 32-true, as evaluate scores")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=run)
