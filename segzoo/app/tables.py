"""The numbers behind the Leaderboard and Training-curves tabs.

The leaderboard comes from ``benchmarks/leaderboard.json`` (written by ``segzoo leaderboard``)
when present, completed with a row for every checkpoint it does not list, built from that
checkpoint's ``metrics.json`` and ``config.json``. Every score is read defensively: a key
that is missing or not a number becomes NaN, never an error.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from segzoo.app.catalog import Catalog, ModelEntry
from segzoo.devices import PRECISION_NAMES

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["miou", "mdice", "pixel_accuracy", "mean_class_accuracy"]
LEADERBOARD_COLUMNS = [
    "dataset",
    "model",
    "family",
    "interim",
    "miou",
    "mdice",
    "pixel_accuracy",
    "mean_class_accuracy",
    "mask_ap",
    "params",
    "gflops",
    "latency_ms",
    "latency_ms_float32",
    "latency_runtime",
    "latency_precision",
    "latency_device",
    "reference_miou",
    "reference_source",
    "train_hours",
    "train_epochs",
    "trained_on",
    "iou",
]
_NUMBER_COLUMNS = [*SCORE_COLUMNS, "mask_ap", "params", "gflops", "latency_ms", "latency_ms_float32", "reference_miou",
                   "train_hours", "train_epochs"]  # fmt: skip
_TEXT_COLUMNS = ["latency_runtime", "latency_precision", "latency_device", "reference_source", "trained_on"]
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_miou", "lr", "seconds", "epochs_per_min"]


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _per_class(metrics: dict[str, Any], key: str) -> dict[str, float]:
    """``{"iou": {class: v}}``, ``{"per_class_iou": {class: v}}``, ``{"thing_iou": {class: v}}`` (Mask
    R-CNN on CamVid) or ``{"per_class": {class: {"iou": v}}}`` -> ``{class: v}``."""
    for values in (metrics.get(key), metrics.get(f"per_class_{key}"), metrics.get(f"thing_{key}")):
        if isinstance(values, dict):
            return {str(k): _number(v) for k, v in values.items()}
    per_class = metrics.get("per_class")
    if isinstance(per_class, dict):
        return {str(k): _number(v.get(key)) for k, v in per_class.items() if isinstance(v, dict)}
    return {}


def parameter_count(weights: Path) -> float:
    """Number of parameters in a safetensors file, read from its header (no tensor data)."""
    try:
        from safetensors import safe_open

        total = 0
        with safe_open(str(weights), framework="pt") as f:
            for name in f.keys():
                if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
                    continue  # buffers, not parameters
                shape = f.get_slice(name).get_shape()
                total += math.prod(shape)
        return float(total)
    except Exception as exc:  # an unreadable file is reported elsewhere; here it is unknown
        log.debug("cannot count parameters of %s: %s", weights, exc)
        return math.nan


def checkpoint_row(entry: ModelEntry) -> dict[str, Any]:
    from segzoo.leaderboard import context_columns

    metrics = entry.metrics()
    context = context_columns({"dataset": entry.dataset, **entry.config})
    row = {
        "dataset": entry.dataset,
        "model": entry.key,
        "family": entry.family,
        "interim": entry.interim,
        **{k: _number(metrics.get(k)) for k in SCORE_COLUMNS},
        "mask_ap": _number(metrics.get("mask_AP")),
        "params": _number(metrics.get("params")),
        "gflops": _number(metrics.get("gflops")),
        "latency_ms": _number(metrics.get("latency_ms")),
        **{k: metrics.get(k) for k in ("latency_runtime", "latency_precision", "latency_device")},
        **{k: context[k] for k in ("reference_miou", "reference_source", "train_hours", "train_epochs", "trained_on")},
        "iou": _per_class(metrics, "iou"),
    }
    if math.isnan(row["params"]):
        row["params"] = parameter_count(entry.weights_path)
    return row


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in LEADERBOARD_COLUMNS:
        if column not in frame:
            frame[column] = [{} for _ in range(len(frame))] if column == "iou" else math.nan
    for column in _NUMBER_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame["interim"] = [bool(v) if isinstance(v, (bool, int, float)) and v == v else False for v in frame["interim"]]
    frame["iou"] = [v if isinstance(v, dict) else {} for v in frame["iou"]]
    for column in ("dataset", "model", "family"):
        frame[column] = [v if isinstance(v, str) else "" for v in frame[column]]
    for column in _TEXT_COLUMNS:
        frame[column] = [v if isinstance(v, str) else None for v in frame[column]]
    return frame[LEADERBOARD_COLUMNS]


def _from_file(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        from segzoo.leaderboard import load_leaderboard
    except ImportError:
        log.warning("%s exists but segzoo.leaderboard is not installed; using checkpoint metrics", path)
        return None
    try:
        return load_leaderboard(path)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("cannot read %s (%s); using checkpoint metrics", path, exc)
        return None


def _entry_for(row: pd.Series, entries: list[ModelEntry]) -> ModelEntry | None:
    """The checkpoint a leaderboard row describes: by its path, else by data set and model."""
    location = row.get("checkpoint")
    if isinstance(location, str) and location:
        for entry in entries:
            if entry.directory.as_posix().endswith(Path(location).as_posix()):
                return entry
    for entry in entries:
        if (entry.config.get("dataset"), entry.model) == (row["dataset"], row["model"]) or (
            entry.dataset,
            entry.key,
        ) == (row["dataset"], row["model"]):
            return entry
    return None


def leaderboard_frame(catalog: Catalog, path: str | Path | None = None) -> pd.DataFrame:
    """One row per model and data set: the leaderboard file's rows, then checkpoints it lacks.

    File rows that match a checkpoint take its folder names (so they line up with the other
    tabs) and, when the file has none, its per-class IoU from ``metrics.json``.
    """
    entries = catalog.entries()
    frames, listed = [], set()
    raw = _from_file(Path(path)) if path else None
    if raw is not None and len(raw):
        raw = raw.reset_index(drop=True)
        from_file = _normalise(raw)
        for i, row in raw.iterrows():
            entry = _entry_for(row, entries)
            if entry is None:
                continue
            listed.add(id(entry))
            from_file.at[i, "dataset"], from_file.at[i, "model"] = entry.dataset, entry.key
            if not from_file.at[i, "iou"]:
                from_file.at[i, "iou"] = _per_class(entry.metrics(), "iou")
            if entry.label_set_indices is not None:  # its mIoU is over its few classes, not the label set's
                from_file.at[i, "miou"] = math.nan
        frames.append(from_file)
    rows = [checkpoint_row(e) for e in entries if id(e) not in listed]
    if rows:
        frames.append(_normalise(pd.DataFrame(rows)))
    if not frames:
        return _normalise(pd.DataFrame(columns=LEADERBOARD_COLUMNS))
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["dataset", "miou"], ascending=[True, False], na_position="last", ignore_index=True)


def served_by(runtime: str | None, precision: str | None) -> str | None:
    """``"PyTorch bf16"``, ``"onnxruntime float32"``: what the latency was measured with."""
    if not isinstance(precision, str) or not precision:  # not measured (NaN in a CSV)
        return None
    name = "onnxruntime" if runtime == "onnxruntime" else "PyTorch"  # rows before the column: PyTorch
    return f"{name} {PRECISION_NAMES.get(precision, precision)}"


def display_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Leaderboard rows as shown: percentages, millions of parameters, readable headers (mask AP
    only when a Mask R-CNN row has one)."""

    def percent(column: str) -> pd.Series:
        return (100 * frame[column]).round(1)

    table = pd.DataFrame(
        {
            "Data set": frame["dataset"],
            "Model": [f"{m} (interim)" if i else m for m, i in zip(frame["model"], frame["interim"], strict=True)],
            "Family": frame["family"],
            "mIoU (%)": percent("miou"),
            "Dice (%)": percent("mdice"),
            "Pixel acc. (%)": percent("pixel_accuracy"),
            "Mean class acc. (%)": percent("mean_class_accuracy"),
            "Mask AP (%)": percent("mask_ap"),
            "Published mIoU (%)": percent("reference_miou"),
            "Params (M)": (frame["params"] / 1e6).round(2),
            "GFLOPs": frame["gflops"].round(1),
            "Latency (ms)": frame["latency_ms"].round(1),
            "Served by": [
                served_by(r, p) for r, p in zip(frame["latency_runtime"], frame["latency_precision"], strict=True)
            ],
            "Latency float32 (ms)": frame["latency_ms_float32"].round(1),
            "Training (h)": frame["train_hours"].round(2),
            "Epochs": frame["train_epochs"],
            "Trained on": frame["trained_on"],
        }
    )
    return table if frame["mask_ap"].notna().any() else table.drop(columns="Mask AP (%)")


def read_history(path: str | Path) -> pd.DataFrame | None:
    """A checkpoint's ``history.csv`` (one row per epoch), or None when absent or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    if "epoch" not in frame or frame.empty:
        return None
    for column in HISTORY_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else math.nan
    return frame
