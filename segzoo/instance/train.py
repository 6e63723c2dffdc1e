"""Training loop for Mask R-CNN (either backend), in the torchvision detection references'
style: SGD with momentum, linear warm-up, a step schedule, one image list per batch.

It writes the same checkpoint directory as the semantic trainer (``segzoo.training``):
``model.safetensors`` + ``config.json`` (the epoch with the best validation mask AP),
``history.csv`` with every loss term per epoch, and ``resume/state.safetensors`` for
``--resume`` (removed when the run completes).
"""
from __future__ import annotations

import argparse
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from segzoo.checkpoint import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, WEIGHTS_FILE, save_checkpoint, write_json
from segzoo.devices import device_name, resolve_device
from segzoo.instance.data import InstanceDataset, collate_instances, get_instance_dataset

# torchvision's names; the Detectron2 wrapper renames its losses to these.
LOSS_TERMS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")
HISTORY_COLUMNS = [
    "epoch", "iterations", "train_loss", *LOSS_TERMS, "val_mask_ap", "val_mask_ap50", "val_box_ap", "lr",
    "seconds", "epochs_per_min", "train_seconds", "val_seconds", "train_images_per_sec",
]  # fmt: skip
DEFAULT_EPOCHS = 24
DEFAULT_BATCH_SIZE = 2
MAX_DEFAULT_SIDE = 640  # default working size: the data's own, at most this (CPU-friendly)
# Proposals sampled per image for the box and mask heads: Detectron2's value for small
# custom data sets (its tutorial); the papers' 512 costs about twice the time per step.
DEFAULT_ROIS_PER_IMAGE = 128
# Linear scaling rule of the Detectron2 / torchvision recipes: 0.02 for 16 images a batch.
BASE_LR_PER_IMAGE = 0.02 / 16
# Detectron2's 3x schedule shape: lr x0.1 at 78% and again at 93% of the iterations.
LR_STEPS = (0.78, 0.93)
# Options that define a run: --resume must repeat them.
RUN_DEFINING = (
    "model", "dataset", "backend", "batch_size", "lr", "size", "seed", "weights", "encoder_weights", "rois_per_image",
)  # fmt: skip


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up from 0.1% (Detectron2's WARMUP_FACTOR), then steps at LR_STEPS."""
    if step < warmup:
        alpha = step / warmup
        return 0.001 * (1 - alpha) + alpha
    return 0.1 ** sum(step >= round(s * total) for s in LR_STEPS)


def count_trainable_stages(model: nn.Module) -> int:
    """ResNet stages (stem, res2-res5) whose weights train, counted from the deepest."""
    if model.backend == "torchvision":
        body = model.detector.backbone.body
        stages = [body.conv1, body.layer1, body.layer2, body.layer3, body.layer4]
    else:
        bottom_up = model.detector.model.backbone.bottom_up
        stages = [bottom_up.stem, *bottom_up.stages]
    return sum(any(p.requires_grad for p in stage.parameters()) for stage in stages)


def default_size(dataset: InstanceDataset) -> int:
    """The first training image's longest side, at most MAX_DEFAULT_SIDE."""
    image = dataset.load(0).image
    return min(max(image.shape[:2]), MAX_DEFAULT_SIDE)


def _option(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    value = getattr(args, name, None)
    return default if value is None else value


def _weights_option(value: Any) -> str | None:
    return None if value in (None, "", "none", "None") else str(value)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _finite_or_none(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def train_instance(args: argparse.Namespace) -> Path:
    """``segzoo train`` for instance models. Reads ``args.model, dataset, data_root, out,
    epochs, batch_size, lr, seed, device, backend, resume, max_iters, size`` and, when
    present, ``weights`` ("coco"), ``encoder_weights``, ``model_kwargs`` (builder arguments;
    ``{"weights": "coco"}`` works too), ``dataset_option`` (KEY=VALUE pairs such as
    ``min_area``), ``train_split``, ``val_split``, ``workers``/``num_workers``,
    ``warmup_iters``, ``grad_clip``, ``rois_per_image``, ``limit_train_batches``,
    ``limit_val_images``, ``interim``, ``overwrite``, ``keep_resume_state``, ``progress``.
    The semantic trainer's optimiser, loss, augmentation and precision options do not apply:
    Mask R-CNN trains with SGD (momentum 0.9), horizontal flips, in float32.
    Returns the checkpoint directory."""
    return _InstanceRun(args).fit()


class _InstanceRun:
    def __init__(self, args: argparse.Namespace) -> None:
        from segzoo.instance.backends import resolve_backend

        self.model_name = args.model
        self.dataset_name = args.dataset.replace("-", "_")
        if getattr(args, "data_root", None) is None:
            raise ValueError(f"--data-root is needed: the folder of the {args.dataset!r} data set")
        self.data_root = Path(args.data_root)
        self.out = Path(_option(args, "out", Path("checkpoints") / self.dataset_name / self.model_name))
        self.epochs = int(_option(args, "epochs", DEFAULT_EPOCHS))
        self.batch_size = int(_option(args, "batch_size", DEFAULT_BATCH_SIZE))
        self.seed = int(_option(args, "seed", 0))
        self.device = resolve_device(_option(args, "device", None) or "auto")
        self.backend = resolve_backend(_option(args, "backend", "auto"))
        self.weights = _weights_option(getattr(args, "weights", None))
        self.encoder_weights = _weights_option(getattr(args, "encoder_weights", None))
        self.lr = float(_option(args, "lr", BASE_LR_PER_IMAGE * self.batch_size))
        self.max_iters = getattr(args, "max_iters", None)
        self.warmup_iters = getattr(args, "warmup_iters", None)
        self.grad_clip = _option(args, "grad_clip", 10.0)
        self.rois_per_image = int(_option(args, "rois_per_image", DEFAULT_ROIS_PER_IMAGE))
        self.workers = _option(args, "workers", getattr(args, "num_workers", None))
        if self.workers is None:
            self.workers = 0 if self.device.type == "cpu" else 4
        self.train_split = _option(args, "train_split", "train")
        self.val_split = _option(args, "val_split", "val")
        self.limit_val_images = getattr(args, "limit_val_images", None)
        self.resume = bool(getattr(args, "resume", False))
        self.overwrite = bool(getattr(args, "overwrite", False))
        self.keep_resume_state = bool(getattr(args, "keep_resume_state", False))
        self.show = bool(_option(args, "progress", True))
        # Data set options: --dataset-option KEY=VALUE pairs, or attributes of the same name.
        self.dataset_options = dict(getattr(args, "dataset_option", None) or [])
        for key in ("min_area", "annotation_file"):
            if getattr(args, key, None) is not None:
                self.dataset_options[key] = getattr(args, key)
        # --model-kwargs: "weights" is the starting point; the rest goes to the builder.
        self.extra_model_kwargs = dict(getattr(args, "model_kwargs", None) or {})
        if "weights" in self.extra_model_kwargs:
            self.weights = _weights_option(self.extra_model_kwargs.pop("weights"))
        if "rois_per_image" in self.extra_model_kwargs:
            self.rois_per_image = int(self.extra_model_kwargs.pop("rois_per_image"))
        self.extra_model_kwargs.pop("encoder_weights", None)
        self.limit_train_batches = getattr(args, "limit_train_batches", None)
        self.interim = bool(getattr(args, "interim", False))
        self.size = getattr(args, "size", None)
        if isinstance(self.size, (list, tuple)):  # the semantic CLI's --size H W: use the longer
            self.size = max(self.size)
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("--epochs and --batch-size must be >= 1 and --lr > 0")

    # -- set-up -------------------------------------------------------------------------------

    def _check_output_dir(self) -> None:
        if self.resume or self.overwrite or not self.out.exists():
            return
        existing = [n for n in (WEIGHTS_FILE, CONFIG_FILE, HISTORY_FILE, "resume") if (self.out / n).exists()]
        if existing:
            raise ValueError(
                f"{self.out} already holds a training run ({', '.join(existing)}): pass --resume to "
                "continue it or --overwrite to start again"
            )

    def _options(self) -> dict[str, Any]:
        return {
            "model": self.model_name, "dataset": self.dataset_name, "backend": self.backend,
            "batch_size": self.batch_size, "lr": self.lr, "size": self.size, "seed": self.seed,
            "weights": self.weights, "encoder_weights": self.encoder_weights, "epochs": self.epochs,
            "rois_per_image": self.rois_per_image,
        }  # fmt: skip

    def _load_resume(self) -> Any:
        from segzoo.training.state import RESUME_DIR, load_resume_state, resume_path

        if not self.resume:
            if self.overwrite:
                for name in (WEIGHTS_FILE, CONFIG_FILE, HISTORY_FILE, METRICS_FILE):
                    (self.out / name).unlink(missing_ok=True)
                shutil.rmtree(self.out / RESUME_DIR, ignore_errors=True)
            return None
        if not resume_path(self.out).is_file():
            if (self.out / WEIGHTS_FILE).is_file():
                raise ValueError(
                    f"{self.out} has no resume state ({resume_path(self.out)}): the run finished; "
                    "use --overwrite to train again"
                )
            print(f"nothing to resume in {self.out}: starting a new run", flush=True)
            return None
        state = load_resume_state(self.out)
        saved = state.info["options"]
        if self.size is None:
            self.size = saved.get("size")
        now = self._options()
        changed = [f"{k} ({saved.get(k)!r} -> {now[k]!r})" for k in RUN_DEFINING if saved.get(k) != now[k]]
        if changed:
            raise ValueError(f"--resume with options that differ from the run in {self.out}: {', '.join(changed)}")
        print(f"resuming {self.out} after epoch {state.epoch}", flush=True)
        return state

    def _load_data(self) -> None:
        get = get_instance_dataset
        self.train_set = get(self.dataset_name, self.data_root, self.train_split, train=True, **self.dataset_options)
        self.val_set = get(self.dataset_name, self.data_root, self.val_split, **self.dataset_options)
        if self.val_set.class_names != self.train_set.class_names:
            raise ValueError(f"{self.data_root}: train and val splits list different categories")
        if self.size is None:
            self.size = default_size(self.train_set)
        generator = torch.Generator().manual_seed(self.seed)
        self.loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(self.train_set) >= 2 * self.batch_size,  # batch norm needs >= 2 images
            num_workers=self.workers,
            collate_fn=collate_instances,
            generator=generator,
            persistent_workers=self.workers > 0,
        )

    def _build_model(self, resume: Any) -> None:
        from segzoo.registry import create_model

        _seed_everything(self.seed)
        self.model_kwargs: dict[str, Any] = {
            "backend": self.backend, "min_size": self.size, "max_size": self.size,
            "rois_per_image": self.rois_per_image, **self.extra_model_kwargs,
        }  # fmt: skip
        if resume is not None:
            self.model_kwargs = dict(resume.info["model_kwargs"])
        model = create_model(
            self.model_name,
            num_classes=self.train_set.num_classes,
            encoder_weights=None if resume else self.encoder_weights,
            weights=None if resume else self.weights,
            **self.model_kwargs,
        )
        if resume is None:
            # What pretrained weights decided, so --resume rebuilds the same network without
            # downloading: which stages train and (Detectron2) frozen or trainable batch
            # norm, which also changes the weights' names.
            self.model_kwargs["trainable_backbone_layers"] = count_trainable_stages(model)
            if self.backend == "detectron2":
                self.model_kwargs["norm"] = model.detector.cfg.MODEL.RESNETS.NORM
        if resume is not None:
            model.freeze_backbone_norm = bool(resume.info["freeze_backbone_norm"])
            model.load_state_dict(resume.model)
        self.model = model.to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]  # biases and norm weights
        self.optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.lr,
            momentum=0.9,
        )
        if resume is not None:
            self.optimizer.load_state_dict(resume.optimizer)

    # -- the loop -----------------------------------------------------------------------------

    def fit(self) -> Path:
        from segzoo.training.history import read_history
        from segzoo.training.state import restore_rng

        self._check_output_dir()
        resume = self._load_resume()
        self._load_data()
        self._build_model(resume)
        steps_per_epoch = len(self.loader)
        if self.limit_train_batches:
            steps_per_epoch = min(steps_per_epoch, int(self.limit_train_batches))
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * self.epochs
        if self.max_iters is not None:
            self.total_steps = min(self.total_steps, int(self.max_iters))
        if self.warmup_iters is None:
            self.warmup_iters = min(1000, self.total_steps // 5)
        self.step, start_epoch = 0, 0
        self.best_ap, self.best_epoch, self.elapsed = -math.inf, 0, 0.0
        history: list[dict[str, Any]] = []
        if resume is not None:
            start_epoch, self.step = resume.epoch, int(resume.scheduler["step"])
            self.best_ap = _finite_or_none(resume.info["best_val_mask_ap"]) or -math.inf
            self.best_epoch, self.elapsed = resume.info["best_epoch"], resume.info["train_seconds"]
            history = [row for row in read_history(self.out) if row["epoch"] <= start_epoch]
            restore_rng(resume.rng["tensors"], resume.rng["plain"])
        self.out.mkdir(parents=True, exist_ok=True)
        self._print_plan(start_epoch, steps_per_epoch)
        for epoch in range(start_epoch, self.epochs):
            if self.step >= self.total_steps:
                break
            row = self._run_epoch(epoch)
            # Ties go to the later epoch: early on AP is 0 while the losses still fall.
            improved = self.best_epoch == 0 or row["val_mask_ap"] >= self.best_ap
            if improved:
                self.best_ap, self.best_epoch = row["val_mask_ap"], epoch + 1
            self.elapsed += row["seconds"]
            history.append(row)
            self._save_epoch(epoch, improved, history)
            self._report(row, improved)
        self._finish(history)
        return self.out

    def _set_lr(self) -> float:
        lr = self.lr * lr_factor(self.step, self.total_steps, self.warmup_iters)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        from segzoo.instance.evaluate import evaluate_model
        from segzoo.training.validation import weights_rounded_to_half

        start = time.perf_counter()
        self.model.train()
        sums = dict.fromkeys(LOSS_TERMS, 0.0)
        steps, images_seen, lr = 0, 0, self.optimizer.param_groups[0]["lr"]
        remaining = self.total_steps - self.step
        bar = tqdm(total=min(self.steps_per_epoch, remaining), desc=f"epoch {epoch + 1}/{self.epochs}",
                   disable=not self.show, dynamic_ncols=True, leave=False)  # fmt: skip
        for images, targets in self.loader:
            if self.step >= self.total_steps or steps >= self.steps_per_epoch:
                break
            images = [i.to(self.device, non_blocking=True) for i in images]
            targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
            lr = self._set_lr()
            losses = self.model(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                terms = ", ".join(f"{k} {v.item():.4g}" for k, v in losses.items())
                raise RuntimeError(
                    f"the loss became {loss.item()} at iteration {self.step + 1} ({terms}); "
                    f"lower --lr (now {self.lr:g}) or lengthen the warm-up"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.grad_clip))
            self.optimizer.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            steps += 1
            self.step += 1
            images_seen += len(images)
            bar.update()
            bar.set_postfix(loss=f"{sum(sums.values()) / steps:.3f}", lr=f"{lr:.1e}")
        bar.close()
        train_seconds = time.perf_counter() - start

        val_start = time.perf_counter()
        with weights_rounded_to_half(self.model):  # score exactly the weights that are saved
            metrics = evaluate_model(
                self.model, self.val_set, self.device, progress=self.show, max_images=self.limit_val_images
            )
        val_seconds = time.perf_counter() - val_start
        seconds = time.perf_counter() - start
        mean = {k: v / max(steps, 1) for k, v in sums.items()}
        return {
            "epoch": epoch + 1,
            "train_loss": sum(mean.values()),
            **mean,
            "val_mask_ap": metrics["mask_AP"],
            "val_mask_ap50": metrics["mask_AP50"],
            "val_box_ap": metrics["box_AP"],
            "lr": lr,
            "seconds": seconds,
            "epochs_per_min": 60.0 / seconds,
            "train_seconds": train_seconds,
            "val_seconds": val_seconds,
            "train_images_per_sec": images_seen / train_seconds,
            "iterations": self.step,
        }

    # -- what is written ----------------------------------------------------------------------

    def checkpoint_config(self, completed: bool = False) -> dict[str, Any]:
        from segzoo import __version__

        training = {
            "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4, "lr": self.lr,
            "lr_steps": list(LR_STEPS), "warmup_iters": self.warmup_iters, "grad_clip": self.grad_clip,
            "epochs": self.epochs, "batch_size": self.batch_size, "iterations": self.step,
            "max_iters": self.max_iters, "limit_train_batches": self.limit_train_batches, "seed": self.seed,
            "weights": self.weights,
            "encoder_weights": self.encoder_weights, "augment": {"hflip": True},
            "data_root": str(self.data_root.resolve()), "train_split": self.train_split,
            "val_split": self.val_split, "train_images": len(self.train_set), "val_images": len(self.val_set),
            "best_epoch": self.best_epoch, "best_val_mask_ap": _finite_or_none(self.best_ap),
            "device_name": device_name(self.device), "train_seconds": round(self.elapsed, 3),
            "completed": completed,
        }  # fmt: skip
        return {
            "model": self.model_name,
            "model_kwargs": dict(self.model_kwargs),
            "task": "instance",
            "backend": self.backend,
            "num_classes": self.train_set.num_classes,
            "class_names": list(self.train_set.class_names),
            "palette": [list(c) for c in self.train_set.palette],
            "ignore_index": None,
            # The model takes RGB in [0, 1] and normalises inside (each backend its own way).
            "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0],
            "input_size": [self.size, self.size],  # longest side, any aspect ratio
            "short_side": None,
            "dataset": self.dataset_name,
            "dataset_options": self.train_set.options(),
            "data_root": str(self.data_root.resolve()),
            "training": training,
            "segzoo_version": __version__,
            "interim": self.interim or not completed,
        }

    def _save_epoch(self, epoch: int, improved: bool, history: list[dict[str, Any]]) -> None:
        """Best checkpoint (if better), then history, then resume state."""
        from segzoo.training.state import save_resume_state

        if improved:
            save_checkpoint(self.out, self.model, self.checkpoint_config(), half=True)
        write_history(self.out, history)
        info = {
            "best_val_mask_ap": _finite_or_none(self.best_ap),
            "best_epoch": self.best_epoch,
            "train_seconds": self.elapsed,
            "freeze_backbone_norm": bool(self.model.freeze_backbone_norm),
            "model_kwargs": self.model_kwargs,
            "options": self._options(),
        }
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_resume_state(self.out, epoch + 1, state, self.optimizer.state_dict(), {"step": self.step}, info)

    def _finish(self, history: list[dict[str, Any]]) -> None:
        from segzoo.training.state import RESUME_DIR

        if not (self.out / WEIGHTS_FILE).is_file():
            return
        # The saved weights are the best epoch's; record the final state of the run.
        best_config = self.checkpoint_config(completed=True)
        write_json(self.out / CONFIG_FILE, best_config)
        if not self.keep_resume_state:
            shutil.rmtree(self.out / RESUME_DIR, ignore_errors=True)
        print(
            f"done: best val mask AP {self.best_ap:.4f} at epoch {self.best_epoch} ({len(history)} epochs, "
            f"{self.step} iterations in {self.elapsed:.1f} s); checkpoint in {self.out}",
            flush=True,
        )

    def _print_plan(self, start_epoch: int, steps_per_epoch: int) -> None:

        print(
            f"training {self.model_name} ({self.backend}) on {self.dataset_name} ({len(self.train_set)} train / "
            f"{len(self.val_set)} val images, {self.train_set.num_classes} classes) at longest side {self.size}, "
            f"batch {self.batch_size}, {steps_per_epoch} steps/epoch, epochs {start_epoch + 1}-{self.epochs} "
            f"(at most {self.total_steps} iterations), lr {self.lr:g}, {device_name(self.device)} -> {self.out}",
            flush=True,
        )

    def _report(self, row: dict[str, Any], improved: bool) -> None:
        terms = "  ".join(f"{k[5:]} {row[k]:.3f}" for k in LOSS_TERMS)
        message = (
            f"epoch {row['epoch']}/{self.epochs}  loss {row['train_loss']:.4f} ({terms})  "
            f"val mask AP {row['val_mask_ap']:.4f}{' *' if improved else ''}  box AP {row['val_box_ap']:.4f}  "
            f"lr {row['lr']:.2e}  {row['seconds']:.1f} s"
        )
        tqdm.write(message) if self.show else print(message, flush=True)


def write_history(directory: str | Path, rows: list[dict[str, Any]]) -> None:
    """``history.csv`` with the loss terms (segzoo.training.history's format, other columns)."""
    import csv
    import io

    from segzoo.checkpoint import atomic_write_text

    def _format(key: str, value: Any) -> str:  # as segzoo.training.history: full precision, NaN empty
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if key in ("epoch", "iterations"):
            return str(int(value))  # read back from a resumed run's history as floats
        return repr(float(value)) if isinstance(value, float) else str(value)

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _format(k, row.get(k)) for k in HISTORY_COLUMNS})
    atomic_write_text(Path(directory) / HISTORY_FILE, buffer.getvalue())
