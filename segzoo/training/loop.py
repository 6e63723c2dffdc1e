"""The training loop, on Lightning Fabric.

Fabric provides the device, mixed precision and multi-process (DDP) plumbing; the loop is
ours because what it writes is ours: a segzoo checkpoint directory (safetensors + JSON,
never Lightning's pickled ``.ckpt``), a history row and a resume state after every epoch,
each written atomically. Validation is the same function ``segzoo evaluate`` uses, run
on the weights rounded to float16 as they are saved, so the recorded validation mIoU is
exactly the saved model's.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from segzoo.checkpoint import WEIGHTS_FILE, training_stages
from segzoo.devices import (
    CHANNELS_LAST_CHOICES,
    PRECISIONS,
    device_name,
    resolve_channels_last,
    resolve_precision,
)
from segzoo.training.augment import AugmentConfig, finish_batch
from segzoo.training.data import (
    AugmentedSamples,
    EpochBatches,
    IndexSubset,
    PreparedSamples,
    ResidentTrainSet,
    estimate_bytes,
    fits_on_device,
    load_resident,
    shard,
    train_batches,
    validation_samples,
)
from segzoo.training.defaults import dataset_defaults
from segzoo.training.history import COLUMNS as HISTORY_COLUMNS
from segzoo.training.history import read_history
from segzoo.training.optim import parameter_groups
from segzoo.training.run import EpochRun, check_output_dir, finite_or_none
from segzoo.training.state import ResumeState, resumed_epochs
from segzoo.training.validation import validate, weights_rounded_to_half
from segzoo.version import __version__

OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("poly", "cosine", "none")


@dataclass
class TrainConfig:
    """Everything ``segzoo train`` can be told. ``None`` means the data set's default
    (:mod:`segzoo.training.defaults`)."""

    model: str
    dataset: str
    data_root: str
    out: str | None = None  # default checkpoints/<dataset>/<model>
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"
    epochs: int | None = None
    batch_size: int | None = None  # per process
    lr: float | None = None
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    momentum: float = 0.9  # SGD only
    scheduler: str = "poly"
    warmup_epochs: float = 1.0
    loss: str = "combined"
    lam: float = 0.75
    alpha: float = 0.3
    beta: float = 0.7
    focal_gamma: float = 2.0
    class_weights: str = "none"  # or "median" (median-frequency balancing)
    size: tuple[int, int] | None = None  # training crop (height, width)
    short_side: int | None = None  # resize images to this short side; 0: keep; None: default
    scale: tuple[float, float] | None = None
    augment: bool = True
    color_jitter: float = 0.2
    seed: int = 0
    precision: str = "auto"
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    early_stopping: int | None = None  # patience in epochs without a better val mIoU
    channels_last: str = "auto"  # auto | on | off (auto: on for reduced precision and GPUs)
    ema_decay: float = 0.0  # exponential moving average of the weights (0: off); EMA weights are saved
    val_every: int = 1  # validate every N epochs (and after the last)
    init_from: str | None = None  # start from this checkpoint's weights (a new run, not a resume)
    data_on_gpu: str = "auto"  # auto | on | off
    num_workers: int | None = None
    limit_train_batches: int | None = None
    limit_val_images: int | None = None
    grad_clip: float | None = None
    compile: bool = False
    encoder_weights: str | None = None
    resume: bool = False
    overwrite: bool = False
    keep_resume_state: bool = False
    interim: bool = False
    progress: bool = True

    def resolved(self) -> TrainConfig:
        """A copy with the data set's defaults filled in and every option checked."""
        defaults = dataset_defaults(self.dataset)
        size = tuple(self.size) if self.size else defaults.size
        if size is None:
            raise ValueError(f"data set {self.dataset!r} has no default input size: give --size HEIGHT WIDTH")
        if self.short_side is None:
            short_side = min(size) if defaults.resize else 0
        else:
            short_side = self.short_side
        out = self.out or str(Path("checkpoints") / self.dataset / self.model)
        cfg = replace(
            self,
            out=out,
            epochs=self.epochs or (resumed_epochs(out) if self.resume else None) or defaults.epochs,
            batch_size=self.batch_size or defaults.batch_size,
            lr=self.lr or defaults.lr,
            size=(int(size[0]), int(size[1])),
            short_side=int(short_side),
            scale=tuple(self.scale) if self.scale else defaults.scale,
        )
        checks = [
            (cfg.optimizer in OPTIMIZERS, f"--optimizer must be one of {OPTIMIZERS}"),
            (cfg.scheduler in SCHEDULERS, f"--scheduler must be one of {SCHEDULERS}"),
            (cfg.precision in PRECISIONS, f"--precision must be one of {PRECISIONS}"),
            (cfg.channels_last in CHANNELS_LAST_CHOICES, f"--channels-last must be one of {CHANNELS_LAST_CHOICES}"),
            (0.0 <= cfg.ema_decay < 1.0, f"--ema-decay must be in [0, 1), got {cfg.ema_decay}"),
            (cfg.val_every >= 1, "--val-every must be >= 1"),
            (cfg.class_weights in ("none", "median"), "--class-weights must be none or median"),
            (cfg.data_on_gpu in ("auto", "on", "off"), "--data-on-gpu must be auto, on or off"),
            (cfg.epochs >= 1 and cfg.batch_size >= 1, "--epochs and --batch-size must be >= 1"),
            (min(cfg.size) >= 8, f"--size must be at least 8x8, got {cfg.size}"),
            (0 < cfg.scale[0] <= cfg.scale[1], f"--scale must be 0 < MIN <= MAX, got {cfg.scale}"),
            (cfg.lr > 0, "--lr must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return cfg


# Options that define the run: a resumed run must use the same ones.
_RUN_DEFINING = (
    "model", "dataset", "model_kwargs", "dataset_options", "train_split", "val_split", "batch_size", "lr",
    "weight_decay", "optimizer", "momentum", "scheduler", "warmup_epochs", "loss", "lam", "alpha", "beta",
    "focal_gamma", "class_weights", "size", "short_side", "scale", "augment", "color_jitter", "seed",
    "limit_train_batches", "encoder_weights", "interim", "ema_decay", "val_every", "init_from",
)  # fmt: skip


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Learning-rate multiplier at optimizer step ``step``: linear warm-up, then poly
    (power 0.9) or cosine decay to 0 at ``total``, or constant."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "none":
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return (1.0 - t) ** 0.9 if kind == "poly" else 0.5 * (1.0 + math.cos(math.pi * t))


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """No weight decay on biases and normalisation weights (1-d parameters)."""
    groups = parameter_groups(model, cfg.weight_decay, initial_lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def class_weights_for(cfg: TrainConfig, train_set: Any, progress: bool) -> list[float] | None:
    """Median-frequency balancing (Eigen & Fergus, 2015): ``median(f) / f_c``, where ``f_c``
    is the share of class ``c`` among the labelled pixels of the images that contain it."""
    if cfg.class_weights == "none":
        return None
    # The one definition `segzoo data check` prints too (a class absent from the masks: 0).
    from segzoo.data.check import median_frequency_weights

    try:
        weights = median_frequency_weights(train_set, progress=progress)
    except ValueError as exc:
        raise ValueError(f"--class-weights median: {exc}") from None
    return [round(float(w), 6) for w in weights]


def _default_workers(device: torch.device, world_size: int) -> int:
    if device.type != "cuda":
        return 0  # on a CPU the model needs every core; decoding inline costs little
    return max(1, min(8, (os.cpu_count() or 2) // max(1, world_size) - 1))


def fit(cfg: TrainConfig) -> Path:
    """Train ``cfg.model`` on ``cfg.dataset``; returns the checkpoint directory."""
    cfg = cfg.resolved()
    from segzoo.registry import get_spec

    if get_spec(cfg.model).task != "semantic":
        raise ValueError(f"{cfg.model} is an instance-segmentation model; segzoo train dispatches it elsewhere")
    check_output_dir(cfg.out, cfg.resume, cfg.overwrite)  # before any process starts
    from lightning.fabric import Fabric

    accelerator = {"gpu": "cuda"}.get(cfg.accelerator, cfg.accelerator)
    device_type = "cuda" if accelerator == "cuda" or (accelerator == "auto" and torch.cuda.is_available()) else "cpu"
    precision = resolve_precision(cfg.precision, device_type)
    cfg = replace(
        cfg, precision=precision, channels_last=resolve_channels_last(cfg.channels_last, device_type, precision)
    )
    try:
        fabric = Fabric(
            accelerator=accelerator,
            devices=cfg.devices,
            num_nodes=cfg.num_nodes,
            strategy=cfg.strategy,
            precision=precision,
        )
    except Exception as exc:  # Lightning's MisconfigurationException: no GPU, unknown strategy ...
        raise ValueError(f"cannot set up --accelerator {cfg.accelerator} --devices {cfg.devices} "
                         f"--strategy {cfg.strategy}: {exc}") from None  # fmt: skip
    fabric.launch()
    try:
        return SemanticRun(fabric, cfg).fit()
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # else exit waits on gloo's shutdown


def training_cost(history: list[dict[str, Any]]) -> dict[str, Any]:
    """What the whole training cost, every stage included: epochs, wall seconds, and the CPU
    seconds of the training process (NaN-free sums; epochs trained before CPU time was
    recorded count as unknown)."""
    cpu = [row.get("cpu_seconds", math.nan) for row in history]
    return {
        "total_epochs": len(history),
        "total_train_seconds": round(sum(row["seconds"] for row in history), 1),
        "total_cpu_seconds": round(sum(c for c in cpu if math.isfinite(c)), 1),
        "epochs_without_cpu_time": sum(1 for c in cpu if not math.isfinite(c)),
    }


def init_from_checkpoint(model: nn.Module, directory: str | Path, model_name: str) -> dict[str, Any]:
    """Load a checkpoint's weights into ``model`` to start a new run from them (fine-tuning,
    or continuing a run whose resume state is gone). Tensors whose shape differs (the
    classifier, when the class count changes) keep their fresh initialisation."""
    from segzoo.checkpoint import file_sha256, load_config, load_weights

    directory = Path(directory)
    config = load_config(directory)
    if config.get("model") != model_name:
        raise ValueError(f"--init-from {directory} holds a {config.get('model')} checkpoint, not {model_name}")
    weights = load_weights(directory / WEIGHTS_FILE)
    own = model.state_dict()
    unknown = sorted(k for k in weights if k not in own)
    if unknown:
        raise ValueError(f"--init-from {directory}: tensors {unknown[:5]} do not exist in {model_name} "
                         "(were its --model-kwargs different?)")  # fmt: skip
    usable = {k: v for k, v in weights.items() if v.shape == own[k].shape}
    model.load_state_dict(usable, strict=False)
    training = config.get("training", {})
    return {
        "path": str(directory.resolve()),
        "weights_sha256": file_sha256(directory / WEIGHTS_FILE),
        "dataset": config.get("dataset"),
        "num_classes": config.get("num_classes"),
        "best_epoch": training.get("best_epoch"),
        "best_val_miou": training.get("best_val_miou"),
        "reinitialised": sorted(k for k in own if k not in usable),
        "stages": training_stages(training),
    }


class SemanticRun(EpochRun):
    """Semantic segmentation on Lightning Fabric: best epoch by validation mIoU."""

    metric = "val_miou"
    metric_label = "val mIoU"
    run_defining = _RUN_DEFINING
    history_columns = HISTORY_COLUMNS

    def __init__(self, fabric: Any, cfg: TrainConfig) -> None:
        # cfg.precision and cfg.channels_last are resolved (no "auto"); channels_last is a bool.
        super().__init__(cfg)
        self.fabric = fabric
        self.init_info: dict[str, Any] | None = None
        self.device = fabric.device
        self.rank0 = fabric.is_global_zero
        self.show = cfg.progress and self.rank0

    def barrier(self) -> None:
        self.fabric.barrier()

    # -- set-up ---------------------------------------------------------------------------------

    def build(self, resume: ResumeState | None) -> None:
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self._load_data()
        self._build_model(resume)
        steps_per_epoch = len(self.batches)
        self.total_steps = steps_per_epoch * self.cfg.epochs
        self.warmup_steps = min(round(self.cfg.warmup_epochs * steps_per_epoch), self.total_steps // 5)

    def _load_data(self) -> None:
        from segzoo.data import get_dataset
        from segzoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PAD_LABEL

        cfg, fabric = self.cfg, self.fabric
        self.mean, self.std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        train_set = get_dataset(cfg.dataset, cfg.data_root, cfg.train_split, **cfg.dataset_options)
        val_set = get_dataset(cfg.dataset, cfg.data_root, cfg.val_split, **cfg.dataset_options)
        self.info = train_set.info
        if len(val_set) == 0:
            raise ValueError(f"{cfg.dataset} at {cfg.data_root}: the {cfg.val_split!r} split is empty")
        self.ignore_index = self.info.ignore_index
        self.pad_label = self.ignore_index if self.ignore_index is not None else PAD_LABEL
        short_side = cfg.short_side or None
        train_samples = PreparedSamples(train_set, short_side, train=True)
        val_samples = PreparedSamples(val_set, short_side, train=False)
        self.augment = AugmentConfig(
            size=cfg.size, scale=cfg.scale, hflip=cfg.augment, color_jitter=cfg.color_jitter, enabled=cfg.augment
        )
        fill = tuple(round(m * 255) for m in self.mean)
        self.workers = (
            cfg.num_workers if cfg.num_workers is not None else _default_workers(self.device, fabric.world_size)
        )
        val_indices = list(range(len(val_set)))[: cfg.limit_val_images or None]
        self.num_val = len(val_indices)
        self.val_indices = shard(val_indices, fabric.global_rank, fabric.world_size)
        if cfg.data_on_gpu == "auto":
            self.resident = fits_on_device(
                estimate_bytes(train_samples) + estimate_bytes(val_samples) * self.num_val // len(val_set), self.device
            )
        else:
            self.resident = cfg.data_on_gpu == "on"
        self.batches = EpochBatches(
            len(train_set), cfg.batch_size, cfg.seed, fabric.global_rank, fabric.world_size, cfg.limit_train_batches
        )
        if self.resident:
            self.train_source = ResidentTrainSet(
                train_samples, self.augment, cfg.seed, fill, self.pad_label, self.device, self.workers, self.show
            )
            images, masks = load_resident(
                IndexSubset(val_samples, self.val_indices), self.device, self.workers, self.show, "val"
            )
            self.val_resident = list(zip(images, masks))
        else:
            self.train_source = AugmentedSamples(train_samples, self.augment, cfg.seed, fill, self.pad_label)
            self.val_resident = None
        self.val_samples = val_samples
        self.class_weights = class_weights_for(cfg, train_set, self.show)
        self.num_train = len(train_set)

    def _build_model(self, resume: Any) -> None:
        from segzoo.losses import build_loss
        from segzoo.registry import create_model

        cfg, fabric = self.cfg, self.fabric
        fabric.seed_everything(cfg.seed, verbose=False)
        model = create_model(
            cfg.model, num_classes=self.info.num_classes, encoder_weights=cfg.encoder_weights, **cfg.model_kwargs
        )
        if resume is not None:
            model.load_state_dict(resume.model)
            self.init_info = resume.info.get("init_from")
        elif cfg.init_from:
            self.init_info = init_from_checkpoint(model, cfg.init_from, cfg.model)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.raw_model = model
        self.ema = None
        if cfg.ema_decay:
            from timm.utils.model_ema import ModelEmaV3

            # Warm-up: the average starts short and reaches ema_decay after ~10k steps (power 3/4).
            self.ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True, warmup_power=0.75)
            self.ema.module.to(self.device)
            if resume is not None and resume.ema:
                self.ema.module.load_state_dict(resume.ema)
        optimizer = build_optimizer(model, cfg)
        forward_model = torch.compile(model) if cfg.compile else model
        self.model, self.optimizer = fabric.setup(forward_model, optimizer)
        if resume is not None:
            self.optimizer.load_state_dict(resume.optimizer)
        self.loss_fn = build_loss(
            cfg.loss,
            self.info.num_classes,
            ignore_index=self.pad_label,
            class_weights=self.class_weights,
            tversky_alpha=cfg.alpha,
            tversky_beta=cfg.beta,
            lam=cfg.lam,
            focal_gamma=cfg.focal_gamma,
        ).to(self.device)

    def _set_lr(self) -> float:
        factor = lr_factor(self.step, self.total_steps, self.warmup_steps, self.cfg.scheduler)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return self.optimizer.param_groups[0]["lr"]

    def saved_model(self) -> nn.Module:
        """The weight average when there is one."""
        return self.ema.module if self.ema is not None else self.raw_model

    def trained_model(self) -> nn.Module:
        return self.raw_model

    def ema_model(self) -> nn.Module | None:
        return None if self.ema is None else self.ema.module

    def validates(self, epoch: int) -> bool:
        return (epoch + 1) % self.cfg.val_every == 0 or epoch + 1 == self.cfg.epochs

    def initial_history(self) -> list[dict[str, Any]]:
        if self.init_info is None:
            return []
        # The history goes on from the checkpoint's: its rows stay, as earlier stages.
        history = read_history(self.cfg.init_from)
        self.stage = max((row["stage"] for row in history), default=0) + 1
        return history

    def resume_info(self) -> dict[str, Any]:
        return {"init_from": self.init_info}

    def run_epoch(self, epoch: int, validate: bool = True) -> dict[str, Any]:
        cfg, fabric = self.cfg, self.fabric
        start, cpu_start = time.perf_counter(), time.process_time()
        self.model.train()
        self.batches.set_epoch(epoch)
        loader = train_batches(self.train_source, self.batches, self.workers, self.device.type == "cuda")
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        steps, lr = 0, self.optimizer.param_groups[0]["lr"]
        bar = tqdm(total=len(self.batches), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not self.show,
                   dynamic_ncols=True, leave=False)  # fmt: skip
        for images, masks, jitter in loader:
            images = images.to(self.device, non_blocking=True)
            masks = masks.to(self.device, non_blocking=True).long()
            x = finish_batch(images, jitter, self.mean, self.std)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = self._set_lr()
            loss = self.loss_fn(self.model(x), masks)
            self.optimizer.zero_grad(set_to_none=True)
            fabric.backward(loss)
            if cfg.grad_clip:
                fabric.clip_gradients(self.model, self.optimizer, max_norm=cfg.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.raw_model, step=self.step + 1)
            loss_sum += loss.detach().double()
            steps += 1
            self.step += 1
            bar.update()
            if self.show and (steps % 10 == 1 or steps == len(self.batches)):
                bar.set_postfix(loss=f"{loss_sum.item() / steps:.4f}", lr=f"{lr:.2e}")
        bar.close()
        train_loss = fabric.all_reduce(loss_sum / max(steps, 1), reduce_op="mean")
        train_seconds = time.perf_counter() - start
        row = {
            "epoch": epoch + 1,
            "train_loss": float(train_loss),
            "lr": lr,
            "train_seconds": train_seconds,
            "train_images_per_sec": steps * cfg.batch_size * fabric.world_size / train_seconds,
        }
        if validate:
            row.update(self._validate())
        else:
            row.update(val_loss=math.nan, val_miou=math.nan, val_mdice=math.nan, val_pixel_accuracy=math.nan,
                       val_seconds=0.0)  # fmt: skip
        row["seconds"] = time.perf_counter() - start
        row["epochs_per_min"] = 60.0 / row["seconds"]
        # CPU time of this process (all its threads): unlike wall time, other work on the
        # machine does not inflate it.
        row["cpu_seconds"] = time.process_time() - cpu_start
        row["stage"] = self.stage
        return row

    def _validate(self) -> dict[str, Any]:
        """Score the model as it will be saved (float16-rounded weights, the weight average
        when there is one), with the training precision."""
        fabric = self.fabric
        val_start = time.perf_counter()
        samples = validation_samples(self.val_samples, self.val_indices, self.val_resident, self.workers)
        model = self.saved_model()
        with weights_rounded_to_half(model):
            sums = validate(
                model,
                samples,
                num_classes=self.info.num_classes,
                ignore_index=self.ignore_index,
                mean=self.mean,
                std=self.std,
                device=self.device,
                loss_fn=self.loss_fn,
                channels_last=self.cfg.channels_last,
                precision=self.cfg.precision,
                progress=self.show,
                total=len(self.val_indices),
            )
        confusion = fabric.all_reduce(sums.confusion, reduce_op="sum")
        loss_total = fabric.all_reduce(sums.loss_sum, reduce_op="sum")
        images_total = fabric.all_reduce(sums.images, reduce_op="sum")
        from segzoo.metrics import scores_from_confusion

        scores = scores_from_confusion(confusion, self.ignore_index)
        return {
            "val_loss": float(loss_total) / max(int(images_total), 1),
            "val_miou": scores.miou,
            "val_mdice": scores.mdice,
            "val_pixel_accuracy": scores.pixel_accuracy,
            "val_seconds": time.perf_counter() - val_start,
        }

    # -- what is written --------------------------------------------------------------------------

    def checkpoint_config(self, history: list[dict[str, Any]], completed: bool = False) -> dict[str, Any]:
        cfg = self.cfg
        info = self.info.to_dict()
        training = {
            "loss": cfg.loss,
            "lam": cfg.lam,
            "alpha": cfg.alpha,
            "beta": cfg.beta,
            "focal_gamma": cfg.focal_gamma,
            "class_weights": cfg.class_weights,
            "class_weight_values": self.class_weights,
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "world_size": self.fabric.world_size,
            "optimizer": cfg.optimizer,
            "scheduler": cfg.scheduler,
            "warmup_epochs": cfg.warmup_epochs,
            "seed": cfg.seed,
            "precision": cfg.precision,
            "val_precision": cfg.precision,
            "ema_decay": cfg.ema_decay,
            "val_every": cfg.val_every,
            "devices": cfg.devices,
            "num_nodes": cfg.num_nodes,
            "strategy": cfg.strategy,
            "encoder_weights": cfg.encoder_weights,
            "augment": asdict(self.augment),
            "data_root": str(Path(cfg.data_root).resolve()),
            "train_split": cfg.train_split,
            "val_split": cfg.val_split,
            "data_on_gpu": self.resident,
            "channels_last": cfg.channels_last,
            "limit_train_batches": cfg.limit_train_batches,
            "limit_val_images": cfg.limit_val_images,
            "val_images": self.num_val,
            "train_images": self.num_train,
            "best_epoch": self.best_epoch,
            "best_val_miou": finite_or_none(self.best_score),
            "device_name": device_name(self.device),
            "train_seconds": round(self.elapsed, 3),
            "init_from": self.init_info,
            "stage": self.stage,
            **training_cost(history),
            "completed": completed,
        }
        return {
            "model": cfg.model,
            "model_kwargs": dict(cfg.model_kwargs),
            "task": "semantic",
            "num_classes": info["num_classes"],
            "class_names": info["class_names"],
            "palette": info["palette"],
            "ignore_index": info["ignore_index"],
            "mean": self.mean,
            "std": self.std,
            "input_size": list(cfg.size),
            "short_side": cfg.short_side or None,
            "dataset": info["dataset"],
            "dataset_options": {**info["dataset_options"], **cfg.dataset_options},
            "training": training,
            "segzoo_version": __version__,
            "interim": cfg.interim,
        }

    def done_message(self, history: list[dict[str, Any]]) -> str:
        speed = f", {60 * len(history) / self.elapsed:.2f} epochs/min" if self.elapsed else ""
        return (
            f"done: best val mIoU {self.best_score:.4f} at epoch {self.best_epoch} "
            f"({len(history)} epochs in {self.elapsed:.1f} s{speed}); checkpoint in {self.out}"
        )

    def plan_message(self, start_epoch: int) -> str:
        cfg = self.cfg
        where = "device memory" if self.resident else f"{self.workers} loader worker(s)"
        return (
            f"training {cfg.model} on {cfg.dataset} ({self.num_train} train / {self.num_val} val images, "
            f"{self.info.num_classes} classes) at {cfg.size[0]}x{cfg.size[1]}, batch {cfg.batch_size} x "
            f"{self.fabric.world_size} process(es), {len(self.batches)} steps/epoch, epochs "
            f"{start_epoch + 1}-{cfg.epochs}, {device_name(self.device)}, precision "
            f"{cfg.precision}{', channels-last' if cfg.channels_last else ''}, data from {where} -> {self.out}"
        )

    def epoch_message(self, row: dict[str, Any], improved: bool) -> str:
        mark = " *" if improved else ""
        return (
            f"epoch {row['epoch']}/{self.cfg.epochs}  train loss {row['train_loss']:.4f}  "
            f"val loss {row['val_loss']:.4f}  val mIoU {row['val_miou']:.4f}{mark}  "
            f"lr {row['lr']:.2e}  {row['seconds']:.1f} s ({row['epochs_per_min']:.2f} epochs/min)"
        )
