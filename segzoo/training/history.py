"""``history.csv``: one row per epoch, rewritten atomically after every epoch.

Columns: ``epoch, train_loss, val_loss, val_miou, lr, seconds, epochs_per_min`` and then
extras (``val_mdice, val_pixel_accuracy, train_seconds, val_seconds, train_images_per_sec,
cpu_seconds, stage``). ``seconds`` is the wall time of the epoch (training and validation),
``epochs_per_min = 60 / seconds`` and ``cpu_seconds`` the CPU time the training process
used in it (all threads). Validation columns are empty in epochs that were not validated
(``--val-every``). ``stage`` counts training stages: a run started with ``--init-from``
keeps the checkpoint's rows and numbers its own epochs from 1 in the next stage. Floats are
written with full precision (``repr``), so two runs can be compared exactly. Mask R-CNN
writes its own columns (:data:`segzoo.instance.train.HISTORY_COLUMNS`) the same way.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from segzoo.checkpoint import HISTORY_FILE, CheckpointError, atomic_write_text

COLUMNS = [
    "epoch",
    "train_loss",
    "val_loss",
    "val_miou",
    "lr",
    "seconds",
    "epochs_per_min",
    "val_mdice",
    "val_pixel_accuracy",
    "train_seconds",
    "val_seconds",
    "train_images_per_sec",
    "cpu_seconds",
    "stage",
]
#: Columns that measure time: they differ between otherwise identical runs.
TIMING_COLUMNS = frozenset(
    {"seconds", "epochs_per_min", "train_seconds", "val_seconds", "train_images_per_sec", "cpu_seconds"}
)
_INT_COLUMNS = {"epoch": None, "stage": 1}  # integer columns and their value when absent (older files)
_COUNT_COLUMNS = frozenset({"epoch", "stage", "iterations"})  # written as integers


def _format(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if key in _COUNT_COLUMNS:
        return str(int(value))  # a resumed run reads some of them back as floats
    return repr(float(value)) if isinstance(value, float) else str(value)


def write_history(directory: str | Path, rows: list[dict[str, Any]], columns: list[str] = COLUMNS) -> None:
    """Write ``history.csv`` atomically; ``columns``: the task's (Mask R-CNN has its own)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _format(k, row.get(k)) for k in columns})
    atomic_write_text(Path(directory) / HISTORY_FILE, buffer.getvalue())


def read_history(directory: str | Path) -> list[dict[str, Any]]:
    """Rows of ``history.csv`` with ``epoch`` as int and the other columns as float (NaN if empty)."""
    path = Path(directory) / HISTORY_FILE
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        parsed = []
        for row in rows:
            values = {k: (float(v) if v != "" else math.nan) for k, v in row.items() if k not in _INT_COLUMNS}
            values["epoch"] = int(row["epoch"])
            values["stage"] = int(row["stage"]) if row.get("stage") else 1
            parsed.append(values)
        return parsed
    except (ValueError, TypeError, csv.Error) as exc:
        raise CheckpointError(f"{path}: not a valid history file ({exc})") from None
