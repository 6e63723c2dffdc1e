"""``segzoo leaderboard``: one table of every evaluated checkpoint.

Collects ``checkpoints/<dataset>/<model>/metrics.json`` (written by ``segzoo evaluate``)
with each model's parameter count, GFLOPs at the data set's input size and measured
latency, into ``benchmarks/leaderboard.csv`` and ``benchmarks/leaderboard.json``: one row
per model and data set. The app reads it with :func:`load_leaderboard`.

Columns: ``dataset, model, family, task, interim, split, num_images, partial, miou, mdice,
pixel_accuracy, mean_class_accuracy, fw_iou, mask_ap, box_ap, reference_miou,
reference_source, params, gflops, input_size, latency_ms, latency_precision, latency_runtime,
latency_ms_float32, latency_threads, latency_device, trained_on, train_precision,
train_epochs, train_hours, train_cpu_hours, best_epoch, train_seconds, checkpoint,
weights_sha256, evaluated_at``. Scores are fractions (0-1). ``reference_miou`` is the
published result for the architecture on the same protocol, where one exists
(:mod:`segzoo.references`). ``gflops`` is 2 x multiply-accumulates / 1e9 for one image (see
:mod:`segzoo.profiling`); ``latency_ms`` is the median of several batch-1 passes (forward and
arg-max) at ``input_size`` on ``latency_device`` with ``latency_threads`` threads, the way
the app serves the model (``latency_precision``: bf16 on CPUs where bf16 pays, see
:mod:`segzoo.devices`; ``latency_runtime``: onnxruntime where the app serves through it, on
CPUs where it does not), and
``latency_ms_float32`` the same in float32 eager. ``train_hours`` is the wall time of the
whole training (every stage), ``train_cpu_hours`` the CPU time of the training process
(all threads; empty when not recorded), on ``trained_on``. ``partial`` marks evaluations limited to part of a split
(``segzoo evaluate --limit``); ``interim`` marks stand-in models (e.g. trained at reduced
resolution on a CPU).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from segzoo.checkpoint import (
    CONFIG_FILE,
    METRICS_FILE,
    CheckpointError,
    atomic_write_text,
    read_json,
    training_stages,
    write_json,
)
from segzoo.references import published

COLUMNS = [
    "dataset", "model", "family", "task", "interim", "split", "num_images", "partial",
    "miou", "mdice", "pixel_accuracy", "mean_class_accuracy", "fw_iou", "mask_ap", "box_ap",
    "reference_miou", "reference_source",
    "params", "gflops", "input_size", "latency_ms", "latency_precision", "latency_runtime", "latency_ms_float32",
    "latency_threads", "latency_device", "trained_on", "train_precision", "train_epochs", "train_hours",
    "train_cpu_hours", "best_epoch", "train_seconds", "checkpoint", "weights_sha256", "evaluated_at",
]  # fmt: skip
# Joins the machines (and precisions) of a training's stages: a model fine-tuned elsewhere.
STAGE_SEPARATOR = " + "
_PROFILE_COLUMNS = (
    "params", "gflops", "input_size", "latency_ms", "latency_precision", "latency_runtime", "latency_ms_float32",
    "latency_threads", "latency_device",
)  # fmt: skip


def _input_size(config: dict[str, Any]) -> tuple[int, int]:
    """The size the model runs at on a photo of the data set's standard size (so rows of one
    data set compare), else of the model's: photos are first resized to the scale the model
    runs at (:func:`segzoo.inference.inference_scale`), as the app and ``segzoo predict`` do."""
    import numpy as np

    from segzoo.inference import inference_scale
    from segzoo.training.defaults import DATASET_DEFAULTS

    defaults = DATASET_DEFAULTS.get(config.get("dataset", ""))
    if defaults is not None and defaults.size is not None and config.get("dataset") != "folder":
        height, width = defaults.size
    else:
        height, width = (int(side) for side in config.get("input_size") or (512, 512))
    photo = np.empty((height, width, 0))  # inference_scale reads only its shape
    longer = inference_scale(photo, config, fallback=max(height, width))
    if longer >= max(height, width):
        return height, width
    return round(height * longer / max(height, width)), round(width * longer / max(height, width))


def _profile_key(config: dict[str, Any], size: tuple[int, int], device: str, threads: int | None) -> str:
    """What the cost figures depend on: architecture, classes, size and where latency ran."""
    parts = [config["model"], config.get("model_kwargs", {}), config["num_classes"], list(size), device, threads]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _score_row(metrics: dict[str, Any]) -> dict[str, Any]:
    if metrics.get("task") == "instance":
        return {
            "miou": metrics.get("thing_miou"),
            "mask_ap": metrics.get("mask_AP"),
            "box_ap": metrics.get("box_AP"),
        }
    return {k: metrics.get(k) for k in ("miou", "mdice", "pixel_accuracy", "mean_class_accuracy", "fw_iou")}


def context_columns(config: dict[str, Any]) -> dict[str, Any]:
    """What explains a checkpoint's score: the published reference for its architecture and
    what its whole training cost (every stage), from its ``config.json``."""
    training = config.get("training", {})
    reference = published(config.get("dataset", ""), config["model"])
    wall = training.get("total_train_seconds", training.get("train_seconds"))
    cpu = training.get("total_cpu_seconds") if not training.get("epochs_without_cpu_time") else None
    return {
        "reference_miou": reference.miou if reference else None,
        "reference_source": f"{reference.source} ({reference.note})" if reference else None,
        # A model fine-tuned elsewhere names every machine and precision, in stage order.
        "trained_on": _stage_values(training, "device_name"),
        "train_precision": _stage_values(training, "precision"),
        "train_epochs": training.get("total_epochs", training.get("epochs")),
        "train_hours": round(wall / 3600, 2) if isinstance(wall, (int, float)) else None,
        "train_cpu_hours": round(cpu / 3600, 2) if isinstance(cpu, (int, float)) and cpu else None,
    }


def _stage_values(training: dict[str, Any], key: str) -> str | None:
    """The distinct values of ``key`` over the training's stages, first seen first."""
    values = dict.fromkeys(str(stage[key]) for stage in training_stages(training) if stage.get(key))
    return STAGE_SEPARATOR.join(values) or None


def _row(directory: Path, root: Path) -> dict[str, Any]:
    from segzoo.registry import get_spec

    config = read_json(directory / CONFIG_FILE)
    metrics = read_json(directory / METRICS_FILE)
    spec = get_spec(config["model"])
    training = config.get("training", {})
    checkpoint_info = metrics.get("checkpoint", {})
    try:
        location = str(directory.relative_to(root.parent))
    except ValueError:
        location = str(directory)
    return {
        "dataset": config.get("dataset"),
        "model": config["model"],
        "family": spec.family,
        "task": config.get("task", spec.task),
        "interim": bool(config.get("interim", False)),
        "split": metrics.get("split"),
        "num_images": metrics.get("num_images"),
        "partial": bool(metrics.get("partial", False)),
        **_score_row(metrics),
        **context_columns(config),
        "best_epoch": training.get("best_epoch"),
        "train_seconds": training.get("train_seconds"),
        "checkpoint": location,
        "weights_sha256": (checkpoint_info.get("weights_sha256") or "")[:12] or None,
        "evaluated_at": metrics.get("evaluated_at"),
        "_config": config,
        "_directory": directory,
    }


def _preference(row: dict[str, Any]) -> tuple:
    """Which checkpoint represents a (data set, model) pair: full evaluations first, then
    final (non-interim) models, then the best mIoU."""
    score = row.get("miou")
    return (not row["partial"], not row["interim"], score if isinstance(score, float) else -math.inf)


def _previous_profiles(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {r["profile_key"]: r for r in data.get("rows", []) if r.get("profile_key")}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def build_leaderboard(
    checkpoints: str | Path = "checkpoints",
    out: str | Path = "benchmarks",
    device: str = "cpu",
    latency_runs: int = 5,
    measure_latency: bool = True,
    reprofile: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Collect ``<checkpoints>/*/*/metrics.json`` into ``<out>/leaderboard.csv`` and ``.json``.

    Cost figures of a row are reused from the previous ``leaderboard.json`` when the
    architecture, classes, input size, device and thread count are unchanged (latency is
    noisy; re-measuring every model on every call would reshuffle the table), unless
    ``reprofile``.
    """
    import torch

    from segzoo.checkpoint import load
    from segzoo.devices import compute_recipe, device_name, resolve_runtime
    from segzoo.export import ExportError, OnnxModule, cached_onnx
    from segzoo.profiling import GFLOPS_CONVENTION, profile_model

    checkpoints, out = Path(checkpoints), Path(out)
    found = sorted(checkpoints.glob(f"*/*/{METRICS_FILE}"))
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for metrics_path in found:
        try:
            row = _row(metrics_path.parent, checkpoints)
        except (CheckpointError, ValueError, KeyError) as exc:
            print(f"skipping {metrics_path.parent}: {exc}", file=sys.stderr)
            continue
        key = (row["dataset"], row["model"])
        if key not in rows or _preference(row) > _preference(rows[key]):
            rows[key] = row

    torch_device = torch.device(device)
    runtime = resolve_runtime("auto", compute_recipe(torch_device))  # what the app serves with here
    threads = torch.get_num_threads() if torch_device.type == "cpu" else None
    where = device_name(torch_device)
    previous = {} if reprofile else _previous_profiles(out / "leaderboard.json")
    table = []
    for key in sorted(rows):
        row = rows[key]
        config, directory = row.pop("_config"), row.pop("_directory")
        size = _input_size(config)
        profile_key = _profile_key(config, size, where, threads)
        cached = previous.get(profile_key)
        task = config.get("task", "semantic")
        row_runtime = runtime if task == "semantic" else "torch"
        measured = cached is not None and cached.get("latency_precision") is not None
        if cached is not None and (
            not measure_latency or (measured and (cached.get("latency_runtime") or "torch") == row_runtime)
        ):
            profile = {k: cached.get(k) for k in _PROFILE_COLUMNS}
            if measured and profile["latency_runtime"] is None:  # measured before the column existed
                profile["latency_runtime"] = "torch"
        else:
            if progress:
                print(f"profiling {row['model']} ({row['dataset']}) at {size[0]}x{size[1]} on {where}", file=sys.stderr)
            model, _ = load(directory, device=torch_device)
            served_by = None
            if measure_latency and row_runtime == "onnxruntime":
                try:
                    served_by = OnnxModule(cached_onnx(directory), threads=threads)
                except (ExportError, RuntimeError) as exc:  # the app serves it with PyTorch then
                    print(f"{directory}: no onnxruntime export ({exc}); timed on PyTorch", file=sys.stderr)
            profile = profile_model(model, size, task, latency_runs, measure_latency, served_by=served_by)
            del model, served_by
        table.append({**{c: None for c in COLUMNS}, **row, **profile, "profile_key": profile_key})

    frame = pd.DataFrame(table, columns=[*COLUMNS, "profile_key"])
    frame = frame.sort_values(["dataset", "miou"], ascending=[True, False], na_position="last", kind="stable")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "leaderboard.csv", frame[COLUMNS].to_csv(index=False))
    records = json.loads(frame.to_json(orient="records"))  # NaN -> null
    write_json(
        out / "leaderboard.json",
        {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "gflops": GFLOPS_CONVENTION,
            "latency": f"median of {latency_runs} batch-1 passes (forward and arg-max) at input_size after one "
            "warm-up: latency_ms as served (latency_precision), latency_ms_float32 in float32 eager",
            "columns": COLUMNS,
            "rows": records,
        },
    )
    return frame[COLUMNS].reset_index(drop=True)


def load_leaderboard(path: str | Path = "benchmarks/leaderboard.csv") -> pd.DataFrame:
    """The leaderboard as a DataFrame, from ``leaderboard.csv`` or ``leaderboard.json``
    (a folder is looked into). Missing file: an empty frame with the columns."""
    path = Path(path)
    if path.is_dir():
        path = path / "leaderboard.csv"
    if not path.is_file():
        alternative = path.with_suffix(".json" if path.suffix == ".csv" else ".csv")
        if not alternative.is_file():
            return pd.DataFrame(columns=COLUMNS)
        path = alternative
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return pd.DataFrame(data["rows"], columns=COLUMNS)
    return pd.read_csv(path)


def _print_table(frame: pd.DataFrame) -> None:
    if frame.empty:
        print("no evaluated checkpoints found (run `segzoo evaluate CKPT` first)")
        return
    columns = ["dataset", "model", "split", "miou", "mdice", "pixel_accuracy"]
    if frame["mask_ap"].notna().any():
        columns += ["mask_ap", "box_ap"]
    shown = frame[[*columns, "params", "gflops", "latency_ms"]].copy()
    for column in columns[3:]:
        shown[column] = (100 * shown[column].astype(float)).round(2)
    shown["params"] = (shown["params"] / 1e6).round(2)
    names = {"miou": "mIoU %", "mdice": "mDice %", "pixel_accuracy": "pixel acc %", "mask_ap": "mask AP %",
             "box_ap": "box AP %", "params": "params M", "latency_ms": "latency ms"}  # fmt: skip
    shown = shown.rename(columns=names)
    flags = [("*" if p else "") + ("†" if i else "") for p, i in zip(frame["partial"], frame["interim"])]
    shown.insert(2, "", flags)
    print(shown.to_string(index=False))
    if any(flags):
        print("* partial evaluation (--limit)   † interim model (reduced-resolution stand-in)")


def run(args: argparse.Namespace) -> int:
    frame = build_leaderboard(
        args.checkpoints,
        args.out,
        device=args.device,
        latency_runs=args.latency_runs,
        measure_latency=not args.no_latency,
        reprofile=args.reprofile,
    )
    _print_table(frame)
    print(f"wrote {Path(args.out) / 'leaderboard.csv'} and leaderboard.json ({len(frame)} rows)")
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "leaderboard",
        help="collect every evaluated checkpoint into benchmarks/leaderboard.csv/.json",
        description="One row per model and data set from CHECKPOINTS/*/*/metrics.json, with parameter "
        "count, GFLOPs (2 x multiply-accumulates / 1e9) at the data set's input size and measured latency.",
    )
    p.add_argument("--checkpoints", default="checkpoints", help="folder of <dataset>/<model>/ checkpoints")
    p.add_argument("--out", default="benchmarks", help="where to write leaderboard.csv/.json (default: benchmarks)")
    p.add_argument("--device", default="cpu", help="device for latency (default: cpu)")
    p.add_argument("--latency-runs", type=int, default=5, help="timed forward passes per model (default: 5)")
    p.add_argument("--no-latency", action="store_true", help="skip latency measurement")
    p.add_argument("--reprofile", action="store_true", help="measure every model again (ignore earlier figures)")
    p.set_defaults(func=run)
