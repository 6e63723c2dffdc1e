"""Training Mask R-CNN (either backend), in the torchvision detection references' style:
SGD with momentum, linear warm-up, a step schedule, one image list per batch.

The run directory's lifecycle is the semantic trainer's (:class:`segzoo.training.run.EpochRun`):
``model.safetensors`` + ``config.json`` (the epoch with the best validation mask AP),
``history.csv`` with every loss term per epoch, and ``resume/state.safetensors`` for
``--resume`` (removed when the run completes). This module supplies the data, the step,
the schedule and the metric.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from segzoo.data import get_instance_dataset
from segzoo.data.instances import InstanceDataset, collate_instances
from segzoo.devices import PRECISIONS, compute_recipe, device_name
from segzoo.training.optim import parameter_groups
from segzoo.training.run import EpochRun, finite_or_none
from segzoo.training.state import ResumeState, resumed_epochs
from segzoo.version import __version__

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
_RUN_DEFINING = (
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


@dataclass
class InstanceTrainConfig:
    """Everything ``segzoo train`` can be told for an instance model. ``None`` means the
    default named in the comment. Mask R-CNN trains with SGD (momentum 0.9) and horizontal
    flips: the semantic trainer's loss, optimiser, augmentation and multi-device options
    have no field here, and the command line refuses them."""

    model: str
    dataset: str
    data_root: str
    out: str | None = None  # default checkpoints/<dataset>/<model>
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # builder arguments; "weights": "coco" too
    dataset_options: dict[str, Any] = field(default_factory=dict)  # e.g. min_area, annotation_file
    train_split: str = "train"
    val_split: str = "val"
    epochs: int | None = None  # DEFAULT_EPOCHS
    batch_size: int | None = None  # DEFAULT_BATCH_SIZE
    lr: float | None = None  # BASE_LR_PER_IMAGE x batch size
    size: int | None = None  # longest image side; None: the data's own, at most MAX_DEFAULT_SIDE
    seed: int = 0
    accelerator: str = "auto"  # auto | cpu | cuda (gpu)
    precision: str = "auto"  # autocast of the forward pass (segzoo.devices); the weights stay float32
    backend: str = "auto"  # auto | torchvision | detectron2
    weights: str | None = None  # "coco": start from the COCO-trained detector
    encoder_weights: str | None = None  # "imagenet": start the backbone from ImageNet
    max_iters: int | None = None  # stop after this many iterations
    warmup_iters: int | None = None  # min(1000, a fifth of the iterations)
    grad_clip: float | None = None  # 10
    rois_per_image: int | None = None  # DEFAULT_ROIS_PER_IMAGE
    num_workers: int | None = None  # 0 on a CPU, 4 on a GPU
    limit_train_batches: int | None = None
    limit_val_images: int | None = None
    interim: bool = False
    resume: bool = False
    overwrite: bool = False
    keep_resume_state: bool = False
    progress: bool = True

    def resolved(self) -> InstanceTrainConfig:
        """A copy with the defaults filled in and every option checked."""
        from segzoo.instance.backends import resolve_backend

        dataset = self.dataset.replace("-", "_")
        kwargs = dict(self.model_kwargs)
        # In --model-kwargs, "weights" is the starting point and rois_per_image a training option.
        weights = _weights_option(kwargs.pop("weights", self.weights))
        rois = kwargs.pop("rois_per_image", self.rois_per_image)
        kwargs.pop("encoder_weights", None)
        size = max(self.size) if isinstance(self.size, (list, tuple)) else self.size  # --size H W: the longer
        batch_size = self.batch_size or DEFAULT_BATCH_SIZE
        out = str(self.out or Path("checkpoints") / dataset / self.model)
        cfg = replace(
            self,
            dataset=dataset,
            out=out,
            model_kwargs=kwargs,
            epochs=self.epochs or (resumed_epochs(out) if self.resume else None) or DEFAULT_EPOCHS,
            batch_size=batch_size,
            lr=self.lr or BASE_LR_PER_IMAGE * batch_size,
            size=None if size is None else int(size),
            accelerator={"gpu": "cuda"}.get(self.accelerator, self.accelerator),
            backend=resolve_backend(self.backend),
            weights=weights,
            encoder_weights=_weights_option(self.encoder_weights),
            grad_clip=10.0 if self.grad_clip is None else self.grad_clip,
            rois_per_image=int(rois or DEFAULT_ROIS_PER_IMAGE),
        )
        if cfg.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}")
        if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
            raise ValueError("--epochs and --batch-size must be >= 1 and --lr > 0")
        return cfg


def _weights_option(value: Any) -> str | None:
    return None if value in (None, "", "none", "None") else str(value)


def train_instance(cfg: InstanceTrainConfig) -> Path:
    """``segzoo train`` for instance models; returns the checkpoint directory."""
    return InstanceRun(cfg.resolved()).fit()


class InstanceRun(EpochRun):
    """Mask R-CNN: best epoch by validation mask AP."""

    metric = "val_mask_ap"
    metric_label = "val mask AP"
    ties_improve = True  # early on AP is 0 while the losses still fall: keep the later epoch
    run_defining = _RUN_DEFINING
    history_columns = HISTORY_COLUMNS

    def __init__(self, cfg: InstanceTrainConfig) -> None:
        # Detection inputs are lists of differently sized images: no channels-last.
        self.recipe = compute_recipe(cfg.accelerator, cfg.precision, channels_last=False)
        super().__init__(replace(cfg, precision=self.recipe.precision))
        self.device = self.recipe.device
        self.workers = cfg.num_workers if cfg.num_workers is not None else (0 if self.device.type == "cpu" else 4)

    def adopt_saved_options(self, saved: dict[str, Any]) -> None:
        if self.cfg.size is None:
            self.cfg = replace(self.cfg, size=saved.get("size"))

    # -- set-up -------------------------------------------------------------------------------

    def build(self, resume: ResumeState | None) -> None:
        self._load_data()
        self._build_model(resume)
        steps_per_epoch = len(self.loader)
        if self.cfg.limit_train_batches:
            steps_per_epoch = min(steps_per_epoch, int(self.cfg.limit_train_batches))
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * self.cfg.epochs
        if self.cfg.max_iters is not None:
            self.total_steps = min(self.total_steps, int(self.cfg.max_iters))
        warmup = self.cfg.warmup_iters
        self.warmup_iters = min(1000, self.total_steps // 5) if warmup is None else warmup

    def _load_data(self) -> None:
        cfg = self.cfg
        options = cfg.dataset_options
        self.train_set = get_instance_dataset(cfg.dataset, cfg.data_root, cfg.train_split, train=True, **options)
        self.val_set = get_instance_dataset(cfg.dataset, cfg.data_root, cfg.val_split, **options)
        if self.val_set.class_names != self.train_set.class_names:
            raise ValueError(f"{cfg.data_root}: train and val splits list different categories")
        if cfg.size is None:
            self.cfg = replace(cfg, size=default_size(self.train_set))
        generator = torch.Generator().manual_seed(cfg.seed)
        self.loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_size=cfg.batch_size,
            shuffle=True,
            drop_last=len(self.train_set) >= 2 * cfg.batch_size,  # batch norm needs >= 2 images
            num_workers=self.workers,
            collate_fn=collate_instances,
            generator=generator,
            persistent_workers=self.workers > 0,
        )

    def _build_model(self, resume: ResumeState | None) -> None:
        from lightning.fabric.utilities.seed import seed_everything

        from segzoo.registry import create_model

        cfg = self.cfg
        seed_everything(cfg.seed, verbose=False)
        self.model_kwargs: dict[str, Any] = {
            "backend": cfg.backend, "min_size": cfg.size, "max_size": cfg.size,
            "rois_per_image": cfg.rois_per_image, **cfg.model_kwargs,
        }  # fmt: skip
        if resume is not None:
            self.model_kwargs = dict(resume.info["model_kwargs"])
        model = create_model(
            cfg.model,
            num_classes=self.train_set.num_classes,
            encoder_weights=None if resume else cfg.encoder_weights,
            weights=None if resume else cfg.weights,
            **self.model_kwargs,
        )
        if resume is None:
            # What pretrained weights decided, so --resume rebuilds the same network without
            # downloading: which stages train and (Detectron2) frozen or trainable batch
            # norm, which also changes the weights' names.
            self.model_kwargs["trainable_backbone_layers"] = count_trainable_stages(model)
            if cfg.backend == "detectron2":
                self.model_kwargs["norm"] = model.detector.cfg.MODEL.RESNETS.NORM
        if resume is not None:
            model.freeze_backbone_norm = bool(resume.info["freeze_backbone_norm"])
            model.load_state_dict(resume.model)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.SGD(parameter_groups(self.model, weight_decay=1e-4), lr=cfg.lr, momentum=0.9)
        if resume is not None:
            self.optimizer.load_state_dict(resume.optimizer)

    def saved_model(self) -> nn.Module:
        return self.model

    def resume_info(self) -> dict[str, Any]:
        return {"freeze_backbone_norm": bool(self.model.freeze_backbone_norm), "model_kwargs": self.model_kwargs}

    # -- the loop -----------------------------------------------------------------------------

    # -- one epoch ----------------------------------------------------------------------------

    def _set_lr(self) -> float:
        lr = self.cfg.lr * lr_factor(self.step, self.total_steps, self.warmup_iters)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def run_epoch(self, epoch: int, validate: bool = True) -> dict[str, Any]:
        from segzoo.instance.evaluate import evaluate_model
        from segzoo.training.validation import weights_rounded_to_half

        cfg = self.cfg
        start = time.perf_counter()
        self.model.train()
        sums = dict.fromkeys(LOSS_TERMS, 0.0)
        steps, images_seen, lr = 0, 0, self.optimizer.param_groups[0]["lr"]
        remaining = self.total_steps - self.step
        bar = tqdm(total=min(self.steps_per_epoch, remaining), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not self.show, dynamic_ncols=True, leave=False)  # fmt: skip
        for images, targets in self.loader:
            if self.step >= self.total_steps or steps >= self.steps_per_epoch:
                break
            images = [i.to(self.device, non_blocking=True) for i in images]
            targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
            lr = self._set_lr()
            with self.recipe.autocast():
                losses = self.model(images, targets)
            losses = {k: v.float() for k, v in losses.items()}
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                terms = ", ".join(f"{k} {v.item():.4g}" for k, v in losses.items())
                raise RuntimeError(
                    f"the loss became {loss.item()} at iteration {self.step + 1} ({terms}); "
                    f"lower --lr (now {cfg.lr:g}) or lengthen the warm-up"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(cfg.grad_clip))
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
                self.model,
                self.val_set,
                self.device,
                progress=self.show,
                max_images=cfg.limit_val_images,
                recipe=self.recipe,
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

    def checkpoint_config(self, history: list[dict[str, Any]], completed: bool = False) -> dict[str, Any]:
        cfg = self.cfg
        data_root = str(Path(cfg.data_root).resolve())
        training = {
            "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4, "lr": cfg.lr,
            "lr_steps": list(LR_STEPS), "warmup_iters": self.warmup_iters, "grad_clip": cfg.grad_clip,
            "epochs": cfg.epochs, "batch_size": cfg.batch_size, "iterations": self.step,
            "max_iters": cfg.max_iters, "limit_train_batches": cfg.limit_train_batches, "seed": cfg.seed,
            "precision": cfg.precision, "val_precision": cfg.precision,
            "weights": cfg.weights,
            "encoder_weights": cfg.encoder_weights, "augment": {"hflip": True},
            "data_root": data_root, "train_split": cfg.train_split,
            "val_split": cfg.val_split, "train_images": len(self.train_set), "val_images": len(self.val_set),
            "best_epoch": self.best_epoch, "best_val_mask_ap": finite_or_none(self.best_score),
            "device_name": device_name(self.device), "train_seconds": round(self.elapsed, 3),
            "completed": completed,
        }  # fmt: skip
        return {
            "model": cfg.model,
            "model_kwargs": dict(self.model_kwargs),
            "task": "instance",
            "backend": cfg.backend,
            "num_classes": self.train_set.num_classes,
            "class_names": list(self.train_set.class_names),
            "palette": [list(c) for c in self.train_set.palette],
            "ignore_index": None,
            # The model takes RGB in [0, 1] and normalises inside (each backend its own way).
            "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0],
            "input_size": [cfg.size, cfg.size],  # longest side, any aspect ratio
            "short_side": None,
            "dataset": cfg.dataset,
            "dataset_options": self.train_set.options(),
            "data_root": data_root,
            "training": training,
            "segzoo_version": __version__,
            "interim": cfg.interim or not completed,
        }

    def plan_message(self, start_epoch: int) -> str:
        cfg = self.cfg
        return (
            f"training {cfg.model} ({cfg.backend}) on {cfg.dataset} ({len(self.train_set)} train / "
            f"{len(self.val_set)} val images, {self.train_set.num_classes} classes) at longest side {cfg.size}, "
            f"batch {cfg.batch_size}, {self.steps_per_epoch} steps/epoch, epochs {start_epoch + 1}-{cfg.epochs} "
            f"(at most {self.total_steps} iterations), lr {cfg.lr:g}, {self.recipe.describe()} -> {self.out}"
        )

    def epoch_message(self, row: dict[str, Any], improved: bool) -> str:
        terms = "  ".join(f"{k[5:]} {row[k]:.3f}" for k in LOSS_TERMS)
        return (
            f"epoch {row['epoch']}/{self.cfg.epochs}  loss {row['train_loss']:.4f} ({terms})  "
            f"val mask AP {row['val_mask_ap']:.4f}{' *' if improved else ''}  box AP {row['val_box_ap']:.4f}  "
            f"lr {row['lr']:.2e}  {row['seconds']:.1f} s"
        )

    def done_message(self, history: list[dict[str, Any]]) -> str:
        return (
            f"done: best val mask AP {self.best_score:.4f} at epoch {self.best_epoch} ({len(history)} epochs, "
            f"{self.step} iterations in {self.elapsed:.1f} s); checkpoint in {self.out}"
        )
