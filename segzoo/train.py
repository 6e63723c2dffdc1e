"""``segzoo train``: train any registered model on a supported data set.

The options given become the task's typed config: :class:`segzoo.training.TrainConfig` for
semantic models (trained on Lightning Fabric: CPU, one GPU, or several GPUs/nodes with
``--devices N --strategy ddp``), :class:`segzoo.instance.train.InstanceTrainConfig` for
instance models (Mask R-CNN). An option the task has no field for is refused.
"""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import fields
from typing import Any

from segzoo.data import dataset_names
from segzoo.data.cli import key_value
from segzoo.training.defaults import DATASET_DEFAULTS

EPILOG = """\
examples:
  segzoo train --model unet_resnet34 --dataset camvid --data-root ../shared/datasets/camvid \\
      --epochs 200 --loss combined --out checkpoints/camvid/unet_resnet34
  segzoo train --model unet --dataset camvid --data-root ../shared/datasets/camvid \\
      --size 180 240 --epochs 30 --interim          # a quick CPU stand-in at half resolution
  segzoo train ... --resume                         # continue a killed run (same options)
  segzoo train ... --devices 4 --strategy ddp       # four GPUs

defaults per data set (--size, --batch-size, --epochs, --lr, --scale):
""" + "\n".join(
    f"  {name:<11} size {'x'.join(map(str, d.size)) if d.size else 'required':<9} batch {d.batch_size:<3} "
    f"epochs {d.epochs:<4} lr {d.lr:g}  scale {d.scale[0]:g}-{d.scale[1]:g}"
    + ("  (images resized to the crop's short side)" if d.resize else "  (images at their own size)")
    for name, d in DATASET_DEFAULTS.items()
)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"base_channels\": 32}'")
    return value


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "off", "0") else int(text)


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model and write a checkpoint directory",
        description="Train a registered model on a data set. Writes <out>/model.safetensors (best "
        "epoch by validation mIoU), config.json and history.csv, atomically, after every epoch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_argument_group("what to train")
    what.add_argument("--model", required=True, help="registered model name (see `segzoo models`)")
    what.add_argument("--model-kwargs", type=_json_object, default={}, metavar="JSON",
                      help="extra builder arguments, e.g. '{\"base_channels\": 32}' for unet")  # fmt: skip
    what.add_argument(
        "--dataset",
        required=True,
        help=f"semantic models: {', '.join(dataset_names('semantic'))}; instance models: "
        f"{', '.join(dataset_names('instance'))}",
    )
    what.add_argument("--data-root", required=True, help="folder holding the data set, e.g. ../shared/datasets/camvid")
    what.add_argument("--dataset-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                      help="data set option, repeatable (e.g. mode=binary for oxford_pet)")  # fmt: skip
    what.add_argument("--train-split", default="train", help="split to train on (default: train)")
    what.add_argument("--val-split", default="val", help="split validated after every epoch (default: val)")
    what.add_argument("--out", help="checkpoint directory (default: checkpoints/<dataset>/<model>)")
    what.add_argument("--encoder-weights", choices=["none", "imagenet"], default="none",
                      help="start the encoder from ImageNet weights (downloads them; default: none)")  # fmt: skip
    what.add_argument(
        "--init-from",
        metavar="CKPT",
        help="start from this checkpoint's weights (a new run: fine-tuning, or continuing a run "
        "whose resume state is lost); a classifier for another class count is re-initialised",
    )
    what.add_argument("--interim", action="store_true",
                      help="mark the checkpoint as an interim stand-in (e.g. reduced resolution on CPU)")  # fmt: skip

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int,
                     help="number of epochs (default: per data set; with --resume, the run's own)")  # fmt: skip
    opt.add_argument("--batch-size", type=int, help="images per batch and process (default: per data set)")
    opt.add_argument("--lr", type=float, help="peak learning rate (default: per data set, 1e-3)")
    opt.add_argument("--weight-decay", type=float, default=1e-4, help="decoupled weight decay (default: 1e-4)")
    opt.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw", help="default: adamw")
    opt.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    opt.add_argument("--scheduler", choices=["poly", "cosine", "none"], default="poly",
                     help="decay after warm-up: poly (power 0.9), cosine or none (default: poly)")  # fmt: skip
    opt.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up length (default: 1)")
    opt.add_argument("--grad-clip", type=float, help="clip the gradient norm to this value")
    opt.add_argument("--loss", choices=["ce", "dice", "tversky", "focal", "combined"], default="combined",
                     help="combined = lam * Tversky + (1 - lam) * cross-entropy (default)")  # fmt: skip
    opt.add_argument("--lam", type=float, default=0.75, help="Tversky share of the combined loss (default: 0.75)")
    opt.add_argument("--alpha", type=float, default=0.3, help="Tversky false-positive weight (default: 0.3)")
    opt.add_argument("--beta", type=float, default=0.7, help="Tversky false-negative weight (default: 0.7)")
    opt.add_argument("--focal-gamma", type=float, default=2.0, help="focal loss exponent (default: 2)")
    opt.add_argument("--class-weights", choices=["none", "median"], default="none",
                     help="weight the loss by median-frequency class balancing (default: none)")  # fmt: skip
    opt.add_argument(
        "--ema-decay",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="validate and save an exponential moving average of the weights, e.g. 0.999 (default: off)",
    )
    opt.add_argument("--val-every", type=int, default=1, metavar="N",
                     help="validate every N epochs and after the last one (default: 1)")  # fmt: skip
    opt.add_argument("--early-stopping", type=_optional_int, metavar="PATIENCE",
                     help="stop after PATIENCE epochs without a better validation mIoU")  # fmt: skip
    opt.add_argument("--seed", type=int, default=0, help="seed of weights, order and augmentation (default: 0)")

    data = p.add_argument_group("input and augmentation")
    data.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                      help="training crop size (default: per data set)")  # fmt: skip
    data.add_argument("--short-side", type=int, metavar="PIXELS",
                      help="resize images so the shorter side is PIXELS before cropping and at validation "
                      "(0: keep their size; default: per data set)")  # fmt: skip
    data.add_argument("--scale", type=float, nargs=2, metavar=("MIN", "MAX"),
                      help="random scale range of training crops (default: per data set)")  # fmt: skip
    data.add_argument("--no-augment", dest="augment", action="store_false",
                      help="no random scale, flip or colour jitter (centre crops)")  # fmt: skip
    data.add_argument(
        "--color-jitter", type=float, default=0.2, help="brightness/contrast/saturation range (default: 0.2)"
    )
    data.add_argument("--data-on-gpu", choices=["auto", "on", "off"], default="auto",
                      help="keep the decoded data set in device memory and augment there (auto: on a GPU "
                      "when it takes < 25%% of its memory)")  # fmt: skip
    data.add_argument("--num-workers", type=int, help="data-loading processes (default: 0 on CPU, up to 8 on GPU)")
    data.add_argument("--limit-train-batches", type=int, metavar="N", help="at most N batches per epoch (quick runs)")
    data.add_argument("--limit-val-images", type=int, metavar="N", help="validate on the first N images only")

    hw = p.add_argument_group("hardware")
    hw.add_argument("--accelerator", choices=["auto", "cpu", "gpu", "cuda"], default="auto", help="default: auto")
    hw.add_argument("--devices", type=int, default=1, help="number of devices (processes) per node (default: 1)")
    hw.add_argument("--num-nodes", type=int, default=1, help="number of nodes (default: 1)")
    hw.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn, ... (Lightning Fabric strategies)")
    hw.add_argument("--precision", choices=["auto", "32-true", "bf16-mixed", "16-mixed"], default="auto",
                    help="auto: bf16-mixed on CPUs with native bf16 (avx512_bf16/AMX) where it is faster than "
                    "float32 (segzoo.devices' probe) and on GPUs that support it (else 16-mixed on GPUs, "
                    "32-true on CPUs)")  # fmt: skip
    hw.add_argument("--channels-last", nargs="?", const="on", choices=["auto", "on", "off"], default="auto",
                    help="channels-last memory format (auto: on with bf16/fp16, on GPUs, and for float32 on CPUs "
                    "where the probe finds it faster)")  # fmt: skip
    hw.add_argument("--compile", action="store_true", help="torch.compile the model")
    hw.add_argument("--backend", choices=["auto", "torchvision", "detectron2"], default="auto",
                    help="Mask R-CNN implementation (instance models only)")  # fmt: skip
    hw.add_argument("--max-iters", type=int, help="instance models: stop after this many iterations")

    run_group = p.add_argument_group("run")
    run_group.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    run_group.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    run_group.add_argument("--keep-resume-state", action="store_true",
                           help="keep <out>/resume/ after training finishes (default: delete it)")  # fmt: skip
    run_group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=functools.partial(run, parser=p))


# Command-line values that are not training options: how the command runs.
_NOT_OPTIONS = frozenset({"command", "func"})
# Config fields whose flag is not "--" + the field's name with dashes.
_FLAGS = {"dataset_options": "--dataset-option", "augment": "--no-augment", "progress": "--no-progress"}


def _given_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The options the user set (those that differ from the parser's default), under the
    config's field names."""
    given = {k: v for k, v in vars(args).items() if k not in _NOT_OPTIONS and v != parser.get_default(k)}
    if "dataset_option" in given:
        given["dataset_options"] = dict(given.pop("dataset_option"))
    if "encoder_weights" in given:
        given["encoder_weights"] = None if given["encoder_weights"] == "none" else given["encoder_weights"]
    for name in ("size", "scale"):
        if given.get(name) is not None:
            given[name] = tuple(given[name])
    return given


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
    """The task's typed config (:class:`~segzoo.training.TrainConfig` or
    :class:`~segzoo.instance.train.InstanceTrainConfig`) from the options given; an option
    the task has no field for is refused, not ignored."""
    from segzoo.registry import get_spec

    if get_spec(args.model).task == "instance":
        from segzoo.instance.train import InstanceTrainConfig as config_class
    else:
        from segzoo.training import TrainConfig as config_class
    names = {f.name for f in fields(config_class)}
    given = _given_options(args, parser)
    refused = sorted(k for k in given if k not in names)
    if refused:
        flags = ", ".join(_FLAGS.get(k, "--" + k.replace("_", "-")) for k in refused)
        task = get_spec(args.model).task
        raise ValueError(f"{flags}: not an option for {args.model} ({task} segmentation); see `segzoo train --help`")
    return config_class(**given)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from segzoo.devices import keep_freed_memory
    from segzoo.instance.train import InstanceTrainConfig, train_instance
    from segzoo.training import fit

    cfg = config_from_args(args, parser)
    keep_freed_memory()
    train_instance(cfg) if isinstance(cfg, InstanceTrainConfig) else fit(cfg)
    return 0
