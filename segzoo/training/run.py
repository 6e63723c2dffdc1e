"""The life of a training run directory, the same for every task.

A run writes into one directory: the best epoch's checkpoint (``model.safetensors`` +
``config.json``), ``history.csv`` and a resume state, each atomically after every epoch,
so a killed run loses at most the epoch it was in. :class:`EpochRun` owns that lifecycle:
the guard against overwriting a finished run, ``--resume`` (with the same options),
best-epoch tracking, early stopping, the saves and the final record. A task (semantic
segmentation in :mod:`segzoo.training.loop`, Mask R-CNN in :mod:`segzoo.instance.train`)
subclasses it and supplies only what differs: its data, model and optimiser, one epoch of
training and validation, and what its checkpoint records.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch.nn as nn
from tqdm.auto import tqdm

from segzoo.checkpoint import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    read_json,
    save_checkpoint,
    write_json,
)
from segzoo.training.history import read_history, write_history
from segzoo.training.state import (
    RESUME_DIR,
    ResumeState,
    load_resume_state,
    restore_rng,
    resume_path,
    save_resume_state,
)

FINISHED = object()  # what ``--resume`` finds in a run that already completed


def comparable(value: Any) -> Any:
    """An option value as it reads back from JSON (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def format_duration(seconds: float) -> str:
    """``"3 h 05 min"``, ``"12 min"`` or ``"40 s"``: how long the rest of a run takes."""
    minutes = round(seconds / 60)
    if minutes >= 60:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{minutes} min" if minutes else f"{round(seconds)} s"


def check_output_dir(out: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an existing one unless told to resume or overwrite."""
    out = Path(out)
    if resume or overwrite or not out.exists():
        return
    existing = [n for n in (WEIGHTS_FILE, CONFIG_FILE, HISTORY_FILE, RESUME_DIR) if (out / n).exists()]
    if existing:
        raise ValueError(
            f"{out} already holds a training run ({', '.join(existing)}): pass --resume to continue it "
            "or --overwrite to start again"
        )


class EpochRun:
    """One training run, epoch by epoch. Subclasses set the class attributes and implement
    the methods that raise :class:`NotImplementedError`; ``self.cfg`` is a config dataclass
    with at least ``out, epochs, resume, overwrite, keep_resume_state`` and ``progress``."""

    metric: str  # the history column that picks the best epoch (higher is better)
    metric_label: str  # its name in messages
    ties_improve = False  # does an equal score count as better (then the later epoch is kept)?
    run_defining: tuple[str, ...] = ()  # options a --resume must repeat
    history_columns: list[str]  # history.csv's columns

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.rank0 = True  # the process that writes (several with DDP)
        self.show = bool(cfg.progress)
        self.stage = 1  # training stages: a run started from another's weights adds one
        self.step, self.total_steps = 0, 0  # optimizer steps: done, planned (set by build)
        self.best_score, self.best_epoch, self.elapsed = -math.inf, 0, 0.0

    # -- what a task supplies ----------------------------------------------------------------

    def build(self, resume: ResumeState | None) -> None:
        """Load the data, build the model and optimiser (from ``resume`` when given) and set
        ``self.total_steps``."""
        raise NotImplementedError

    def run_epoch(self, epoch: int, validate: bool) -> dict[str, Any]:
        """Train one epoch (0-based), validate if asked; returns its history row."""
        raise NotImplementedError

    def checkpoint_config(self, history: list[dict[str, Any]], completed: bool = False) -> dict[str, Any]:
        """What ``config.json`` records; ``history``: the run's rows so far."""
        raise NotImplementedError

    def saved_model(self) -> nn.Module:
        """The module whose weights are validated and saved."""
        raise NotImplementedError

    def trained_model(self) -> nn.Module:
        """The module the optimiser updates (its full-precision state is resumed)."""
        return self.saved_model()

    def ema_model(self) -> nn.Module | None:
        return None

    def resume_info(self) -> dict[str, Any]:
        """Task-specific entries of the resume state's ``info`` (read back by :meth:`build`)."""
        return {}

    def adopt_saved_options(self, saved: dict[str, Any]) -> None:
        """Fill options left to a default from the resumed run's (before they are compared)."""

    def validates(self, epoch: int) -> bool:
        return True

    def initial_history(self) -> list[dict[str, Any]]:
        """The history a new run starts from (a run continuing another's keeps its rows)."""
        return []

    def option_defaults(self) -> dict[str, Any]:
        """Values of options a resume state may predate: they were at their default."""
        return {f.name: f.default for f in fields(self.cfg)}

    def barrier(self) -> None:
        """Wait for the other processes (multi-process training)."""

    def print(self, message: str) -> None:
        if self.rank0:
            print(message, flush=True)

    def plan_message(self, start_epoch: int) -> str:
        raise NotImplementedError

    def epoch_message(self, row: dict[str, Any], improved: bool) -> str:
        raise NotImplementedError

    def done_message(self, history: list[dict[str, Any]]) -> str:
        raise NotImplementedError

    # -- the lifecycle -------------------------------------------------------------------------

    def fit(self) -> Path:
        check_output_dir(self.out, self.cfg.resume, self.cfg.overwrite)
        resume = self._start()
        if resume is FINISHED:
            return self.out
        self.build(resume)
        start_epoch, history = self._restore(resume)
        if self.rank0:
            self.out.mkdir(parents=True, exist_ok=True)
            if resume is not None:
                write_history(self.out, history, self.history_columns)  # drop rows of epochs run again
            self.print(self.plan_message(start_epoch))

        stale = 0 if not self.best_epoch else start_epoch - self.best_epoch
        seconds_here = 0.0  # this process's epochs: after a --resume the machine may differ
        for epoch in range(start_epoch, self.cfg.epochs):
            if self.step >= self.total_steps:  # an iteration budget smaller than the epochs
                break
            validate = self.validates(epoch)
            row = self.run_epoch(epoch, validate)
            improved = validate and self._is_better(row[self.metric])
            if improved:
                self.best_score, self.best_epoch, stale = row[self.metric], epoch + 1, 0
            else:
                stale += 1
            self.elapsed += row["seconds"]
            seconds_here += row["seconds"]
            history.append(row)
            if self.rank0:
                self._save_epoch(epoch, improved, history)
                message = self.epoch_message(row, improved)
                if epochs_left := self.cfg.epochs - epoch - 1:
                    per_epoch = seconds_here / (epoch + 1 - start_epoch)
                    message += f"  [{format_duration(per_epoch * epochs_left)} left]"
                tqdm.write(message) if self.show else print(message, flush=True)
            patience = getattr(self.cfg, "early_stopping", None)
            if patience and stale >= patience:
                self.print(f"early stopping: no better {self.metric_label} for {stale} epochs")
                break
        self.barrier()
        if self.rank0:
            self._finish(history)
        return self.out

    def _is_better(self, score: float) -> bool:
        if self.best_epoch == 0:
            return True
        return score >= self.best_score if self.ties_improve else score > self.best_score

    def _start(self) -> ResumeState | object | None:
        """Clear what a killed write left; then the resume state, ``None`` for a new run, or
        :data:`FINISHED`."""
        cfg, out = self.cfg, self.out
        if self.rank0:
            for leftover in [*out.glob(".*.tmp"), *(out / RESUME_DIR).glob(".*.tmp")]:
                leftover.unlink(missing_ok=True)
        if not cfg.resume:
            if cfg.overwrite and self.rank0:
                for name in (WEIGHTS_FILE, CONFIG_FILE, HISTORY_FILE, METRICS_FILE):
                    (out / name).unlink(missing_ok=True)
                shutil.rmtree(out / RESUME_DIR, ignore_errors=True)
            self.barrier()
            return None
        if not resume_path(out).is_file():
            if (out / CONFIG_FILE).is_file() and read_json(out / CONFIG_FILE).get("training", {}).get("completed"):
                self.print(f"{out}: training already finished; nothing to resume")
                return FINISHED
            if (out / HISTORY_FILE).is_file() or (out / WEIGHTS_FILE).is_file():
                raise ValueError(
                    f"{out} has no resume state ({resume_path(out)}): the run finished or was "
                    "trained without it; use --overwrite to train again"
                )
            self.print(f"nothing to resume in {out}: starting a new run")
            return None
        state = load_resume_state(out)
        saved = state.info["options"]
        self.adopt_saved_options(saved)
        defaults = self.option_defaults()
        changed = [
            f"{k} ({saved.get(k, defaults.get(k))!r} -> {comparable(getattr(cfg, k))!r})"
            for k in self.run_defining
            if comparable(saved.get(k, defaults.get(k))) != comparable(getattr(cfg, k))
        ]
        if changed:
            raise ValueError(
                f"--resume with options that differ from the run in {out}: {', '.join(changed)}; "
                "repeat the original command with --resume"
            )
        if state.epoch >= cfg.epochs:
            self.print(f"{out}: {state.epoch} epochs already done (--epochs {cfg.epochs})")
        else:
            self.print(f"resuming {out} after epoch {state.epoch}")
        return state

    def _restore(self, resume: ResumeState | None) -> tuple[int, list[dict[str, Any]]]:
        """Where the loop starts: the epoch index and the history so far."""
        if resume is None:
            history = self.initial_history()
            return 0, history
        self.step = int(resume.scheduler["step"])
        best = resume.info[f"best_{self.metric}"]
        self.best_score = best if best is not None else -math.inf
        self.best_epoch, self.elapsed = resume.info["best_epoch"], resume.info["train_seconds"]
        self.stage = resume.info.get("stage", 1)
        history = [row for row in read_history(self.out) if row["stage"] < self.stage or row["epoch"] <= resume.epoch]
        restore_rng(resume.rng["tensors"], resume.rng["plain"])
        return resume.epoch, history

    def _save_epoch(self, epoch: int, improved: bool, history: list[dict[str, Any]]) -> None:
        """Best checkpoint (if better), then history, then resume state: a kill between
        two of these writes costs at most a re-run of this epoch."""
        if improved:
            save_checkpoint(self.out, self.saved_model(), self.checkpoint_config(history), half=True)
        write_history(self.out, history, self.history_columns)
        info = {
            f"best_{self.metric}": finite_or_none(self.best_score),
            "best_epoch": self.best_epoch,
            "train_seconds": self.elapsed,
            "options": {k: comparable(v) for k, v in asdict(self.cfg).items()},
            "stage": self.stage,
            **self.resume_info(),
        }
        ema = self.ema_model()
        save_resume_state(
            self.out,
            epoch + 1,
            _detached(self.trained_model()),
            self.optimizer.state_dict(),
            {"step": self.step},
            info,
            None if ema is None else _detached(ema),
        )

    def _finish(self, history: list[dict[str, Any]]) -> None:
        """The saved weights are the best epoch's; record the final state of the run."""
        if not (self.out / WEIGHTS_FILE).is_file():
            return
        write_json(self.out / CONFIG_FILE, self.checkpoint_config(history, completed=True))
        if not self.cfg.keep_resume_state:
            shutil.rmtree(self.out / RESUME_DIR, ignore_errors=True)
        print(self.done_message(history), flush=True)


def _detached(model: nn.Module) -> dict[str, Any]:
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}
