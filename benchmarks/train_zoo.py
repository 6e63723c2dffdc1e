"""Train, evaluate and rank the whole zoo with one recipe per data set.

    python benchmarks/train_zoo.py --data ../shared/datasets --datasets camvid --models unet_resnet34
    python benchmarks/train_zoo.py ... --resume          # continue a run killed mid-way

Every model of a data set gets the same recipe (crop policy, loss, optimiser, schedule
shape, weight average, seed); only the epoch count follows a per-model time budget on the
2-core CPU the zoo is trained on (CAMVID_EPOCHS where bf16 pays, CAMVID_EPOCHS_FLOAT32
where segzoo.devices picks float32; --epochs overrides both, a resumed run keeps the epochs
it started with; --precision and --channels-last force the recipe), PSPNet trains at output stride
16 instead of its paper's 8 to get 2.5 times the epochs in its budget (CAMVID_MODEL_KWARGS),
and the from-scratch classics train on smaller crops (CAMVID_MODEL_RECIPE).
Each model trains with `segzoo train` into runs/<dataset>/<model> (best epoch on val); when
its training has completed, the weights, config and history are copied into
checkpoints/<dataset>/<model>, CamVid's semantic models run at the scale `segzoo tune-scale`
chooses on the val split (TUNE_SCALE_DATASETS), each is scored with `segzoo evaluate --split
test` (float32), and `segzoo leaderboard` regenerates
benchmarks/leaderboard.{csv,json} and the README table (after each model, so a queue of runs
spanning sessions shows every model as soon as it is final). A model whose checkpoint already
has metrics.json is skipped unless --force is given (an interim stand-in is retrained by the
full recipe).

The CamVid recipe (chosen for a 2-core CPU with native bf16): crops of 192x256 from the
frames at their full 360x480 scale (random scale 0.5-2, flips, colour jitter), batch 8,
combined loss (0.75 Tversky + 0.25 cross-entropy, no class weights: the Tversky term
already weighs every class alike), AdamW lr 1e-3 with decoupled weight decay 1e-2, poly
schedule after a 1-epoch warm-up, an exponential moving average of the weights (0.999,
validated and saved), validation every 3 epochs; bf16 autocast and channels-last by
default (segzoo.devices). Evaluation is on the 233 test frames' full 360x480 labels, the frames
resized to the scale chosen on val (`segzoo tune-scale`: models trained on small crops can
segment whole frames better at a smaller scale).

Mask R-CNN trains on fruits-nuts and on CamVid's things (camvid_instances, shipped in
checkpoints/camvid/ beside the semantic models, scored on the test frames' car, pedestrian and
bicyclist pixels as well as by mask AP).

--interim is the old reduced-resolution stand-in recipe: its checkpoints are marked
interim in their config and on the leaderboard.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import segzoo
from segzoo.app.tables import served_by
from segzoo.data import dataset_entry
from segzoo.data.camvid_instances import CAMVID_THINGS
from segzoo.devices import CHANNELS_LAST_CHOICES, PRECISION_NAMES, PRECISIONS, compute_recipe, device_name

# (segzoo data set, folder under --data, extra `segzoo train` options, models)
PLAN: list[tuple[str, str, list[str], list[str]]] = [
    ("camvid", "camvid", [], segzoo.model_names(task="semantic")),
    (
        "oxford_pet",
        "oxford-iiit-pet-sample",
        ["--dataset-option", "mode=trimap"],
        # The encoder UNet is EfficientNet-B0 (12 MB): with ResNet-34's 49 MB the whole zoo
        # (CamVid's nine, pets' three, two Mask R-CNNs of 92 MB) would pass 700 MB.
        ["unet", "segnet", "unet_efficientnet_b0"],
    ),
    ("fruits_nuts", "fruits-nuts", [], ["maskrcnn_r50_fpn"]),
    ("camvid_instances", "camvid", [], ["maskrcnn_r50_fpn"]),
]

CAMVID_RECIPE = [
    "--size", "192", "256", "--short-side", "360", "--batch-size", "8", "--loss", "combined",
    "--weight-decay", "1e-2", "--ema-decay", "0.999", "--val-every", "3", "--seed", "0",
]  # fmt: skip
# Epochs per model: about 3.5 hours of training on the project's 2-core CPU (bf16), from the
# measured step times at 192x256, batch 8 (benchmarks/bench_cpu.py).
CAMVID_EPOCHS = {
    "unet_resnet34": 210,
    "unet_efficientnet_b0": 210,
    "unet_resnet50": 150,
    # A session ends after 3 hours and runs/ (resume state) has not survived between sessions, so
    # DeepLabV3+ gets what fits in one: 56 epochs at the 3.9 training images/s measured in bf16 at
    # 192x256, batch 8 (about 2 h with data, EMA and validation). Its 44 float32 epochs reached 44.7.
    "deeplabv3plus_resnet50": 56,
    # PSPNet trains (and is served) at output stride 16 (CAMVID_MODEL_KWARGS): 60 epochs were
    # sized for stride 8; a stride-16 step is 2.6x faster in float32 (benchmarks/output_stride.json;
    # not measured in bf16).
    "pspnet_resnet50": 156,
    # The classics (issue 12: at most 5 hours each), on their 128x192 crops (CAMVID_MODEL_RECIPE),
    # sized to finish in one 3-hour session (about 2.2 h): 3.0 (unet), 3.7 (segnet), 5.9
    # (unet_vgg16) and 6.6 (fcn8s) training images/s measured in bf16 on the 2-core AMD EPYC
    # (batch 8, training paused), over 0.85 for data and optimiser overhead, plus their bf16
    # validation passes (benchmarks/cpu_epyc_zen4.json latencies).
    # The scratch UNet is sized like SegNet rather than for one session: unet_vgg16, which
    # learns faster from scratch, had 41.4 EMA val mIoU after 45 epochs and 55.0 after 90 (test
    # 46.6), and CamVid's test frames score about 8-10 points under val, so 50 epochs would miss
    # issue 12's 40. 120 epochs at about 120 s each (its step is 0.81x SegNet's measured 87 s
    # epoch, its validation faster): about 4 h over two sessions (bar: 5). A 42-epoch run in
    # float32 channels-last (the Xeon VM without AMX) scored only 28.0 EMA val mIoU, test 24.7, as
    # saved: its first decoder block's batch-norm variances overflowed float16 (stored as inf, 511
    # of 512 channels silenced), which checkpoints now keep in float32.
    "unet": 120,
    # SegNet from scratch learns slowest of the four: its run, started with 60 epochs, had 19.0
    # EMA val mIoU after 15 (fcn8s 42.1 after 16, unet_vgg16 29.0), so it was extended at epoch 18
    # (`--resume --epochs 150`): about 103 s an epoch with its validations, 4.3 h (issue 12: 5),
    # over two sessions. It reached 38.2 test mIoU (39.0 run at a short side of 180, where
    # `segzoo tune-scale` found it segments whole frames best), so the shipped one adds a second
    # stage within the 5 hours: 6 epochs at that scale from its weights (`--epochs 6 --train-args
    # "--init-from checkpoints/camvid/segnet --lr 1e-4 --short-side 180 --size 176 240 --scale 1.0 1.5
    # --ema-decay 0.99 --val-every 2"`), 1,502 s in float32 on the Xeon VM without AMX: test 41.1.
    "segnet": 150,
    "unet_vgg16": 90,
    "fcn8s": 100,
}
# The same budgets on a CPU without native bf16, where training runs in float32 several times
# slower: 3.25 hours (the classics 4.25), leaving room under the bars for a noisy machine. Sized
# on a 2-core AMD EPYC (Zen 3) from float32 step times at 192x256, batch 8, with segzoo's
# keep_freed_memory (`python benchmarks/bench_allocator.py --models ...`, benchmarks/allocator.json),
# over 0.85 for data and optimiser overhead (what the bf16 unet_resnet34 run showed), plus a
# float32 validation of the 101 val frames every 3 epochs (benchmarks/onnx_no_bf16.json's
# PyTorch latencies). Fewer epochs than CAMVID_EPOCHS, so expect lower scores.
CAMVID_EPOCHS_FLOAT32 = {
    # The shipped one is faster than this plan: on the Xeon VM without AMX, float32 channels-last
    # trains it at 5.06 images/s (192x256, batch 8), so it took `--epochs 180` (the bf16 plan's
    # 210 would not fit): 3.59 h measured (its history.csv), val mIoU 66.2, test 55.8.
    "unet_resnet34": 77,
    "unet_efficientnet_b0": 100,
    "unet_resnet50": 50,
    # 44 epochs (the step-time estimate) took 2.5 h wall and reached 44.7 test mIoU, short of
    # issue 11's 45; its epochs measured about 185 s, so 60 fit in about 3.1 h (bar: 4).
    "deeplabv3plus_resnet50": 60,
    # At output stride 16 (21 epochs were the stride-8 budget): the slowest step of
    # `python benchmarks/bench_output_stride.py` (3.9 s) and its 0.46 s per val frame.
    "pspnet_resnet50": 53,
    # The classics' counts at 192x256 (unet 17, segnet 20, unet_vgg16 34, fcn8s 32) times the
    # 1.8x images/s of their smaller crops (measured in bf16; assumed alike in float32).
    # The scratch UNet takes what issue 12's 5 hours allow instead: 30 epochs would miss its 40
    # mIoU (its float32 run had 38.1 val mIoU after 30 epochs, 40.0 after 40); 100 epochs of
    # 130-170 s, with a validation every 10 (85-100 s), on the Xeon VM without AMX: 4.58 h
    # measured (its history.csv), test mIoU 46.4.
    "unet": 100,
    "segnet": 36,
    "unet_vgg16": 60,
    "fcn8s": 56,
}
# Oxford-IIIT Pet, trimap (background, pet, border): the classic UNet-vs-SegNet comparison,
# whose reference is small "U-Net-like" and "SegNet-like" networks trained for 30 epochs at
# 160x160 with cross-entropy (validation loss UNet 0.36, SegNet 0.42). The same recipe for
# the three models: short side 160, 160x160 crops, batch 16, cross-entropy, AdamW 1e-3 poly,
# no weight average, validation every epoch; unet and segnet at the classic's width
# (base_channels 32, recorded in the checkpoint's model_kwargs).
PET_RECIPE = [
    "--size", "160", "160", "--short-side", "160", "--batch-size", "16", "--loss", "ce",
    "--weight-decay", "1e-4", "--seed", "0",
]  # fmt: skip
# The classic's 30 epochs leave SegNet short of 55 test mIoU on the 270 training photos of
# the sample: the shipped models train 100 (`--epochs 30` reruns the classic protocol).
PET_EPOCHS = 100
PET_MODEL_KWARGS = {"unet": '{"base_channels": 32}', "segnet": '{"base_channels": 32}'}
# Mask R-CNN from scratch (no pretrained weights can be downloaded here): SGD, lr 0.01 for
# batch 2, the step schedule and flips of segzoo's instance trainer, bf16 autocast. fruits-nuts
# (15 training photos, 3 held out as val, which is also its test split) at 512 px.
FRUITS_RECIPE = ["--size", "512", "512", "--lr", "0.01", "--seed", "0"]
# CamVid's cars, pedestrians and bicyclists at the frames' own 360x480.
CAMVID_INSTANCES_RECIPE = ["--lr", "0.01", "--seed", "0"]
# camvid_instances with native bf16: 3.3 s per training step (batch 2, 480 px) and 1.2 s per val
# photo on the 2-core AMD EPYC (`python benchmarks/bench_maskrcnn.py --dataset camvid_instances
# --data ../shared/datasets/camvid --size 480`, benchmarks/maskrcnn_camvid.json), so an epoch of
# 184 steps and 101 val photos takes about 12 minutes: 10 epochs fit one 3-hour session.
INSTANCE_EPOCHS = {"fruits_nuts": 60, "camvid_instances": 10}
# camvid_instances in float32: 9.8 s per training step (batch 2, 480 px) and 4.4 s per val
# photo on a 2-core AMD EPYC (Zen 3) (benchmarks/maskrcnn_camvid_float32.json), so an epoch of
# 184 steps and 101 val photos takes about 37 minutes: 5 epochs fill the same 3.25 hours as
# the float32 CamVid budgets. Far fewer iterations than the bf16 plan: expect a lower mask AP.
INSTANCE_EPOCHS_FLOAT32 = {**INSTANCE_EPOCHS, "camvid_instances": 5}
RECIPES = {
    "camvid": CAMVID_RECIPE,
    "oxford_pet": PET_RECIPE,
    "fruits_nuts": FRUITS_RECIPE,
    "camvid_instances": CAMVID_INSTANCES_RECIPE,
}
# PSPNet's dilated ResNet-50 at the paper's output stride 8 costs 2.6x the training step of
# stride 16 (benchmarks/output_stride.json), which would leave it well under half the epochs;
# stride 16 keeps the same weights and is what the app serves (2.7x faster per photo). The
# checkpoint records it in its model_kwargs.
CAMVID_MODEL_KWARGS = {"pspnet_resnet50": '{"output_stride": 16}'}
MODEL_KWARGS = {"oxford_pet": PET_MODEL_KWARGS, "camvid": CAMVID_MODEL_KWARGS}
# The from-scratch classics (unet, segnet, unet_vgg16, fcn8s) keep their published widths and
# take the step the recipe allows instead (issue 12): 128x192 crops, half the pixels of the
# others' 192x256, train 1.8-2.0x as many images/s (bf16, batch 8, both crops alternating in
# one process on the 2-core AMD EPYC), so they get about twice the epochs in a budget. The
# scratch UNet's and SegNet's validation of the 101 frames at 360x480 (about 60-70 s in bf16)
# runs every 5 epochs instead of 3, to stay near 10% of their training time. unet_vgg16's,
# every 3 epochs, measured 17% of its run's time (about 37 s against 60 s epochs, bf16), over
# issue 10's 15%; fcn8s, a little cheaper to validate, validates every 4. The scratch UNet
# validates every 10: on a CPU where bf16 does not pay (float32 channels-last, about 130 s an
# epoch and 75 s a validation on the Xeon VM without AMX) its 120 epochs would otherwise take
# about 5.0 h, issue 12's whole budget. Appended to the data set's recipe: a later option wins.
CAMVID_CLASSIC_CROP = ["--size", "128", "192"]
CAMVID_MODEL_RECIPE = {
    "unet": [*CAMVID_CLASSIC_CROP, "--val-every", "10"],
    "segnet": [*CAMVID_CLASSIC_CROP, "--val-every", "5"],
    "unet_vgg16": CAMVID_CLASSIC_CROP,
    "fcn8s": [*CAMVID_CLASSIC_CROP, "--val-every", "4"],
}
MODEL_RECIPES = {"camvid": CAMVID_MODEL_RECIPE}
# The split each data set's shipped score is on (fruits-nuts has no test split of its own).
EVAL_SPLIT = {"fruits_nuts": "val"}
# Data sets whose semantic models run at the scale `segzoo tune-scale` chooses on their val split.
TUNE_SCALE_DATASETS = {"camvid"}
# Half resolution and a short schedule: what two CPU cores manage in minutes per model.
INTERIM_RECIPE = {
    "camvid": ["--size", "180", "240", "--batch-size", "8"],
    "oxford_pet": ["--size", "160", "160", "--batch-size", "8"],
}


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


README_START, README_END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


def _fmt(value: object, spec: str, scale: float = 1.0) -> str:
    """Format a number; missing values (None, NaN) print as a dash."""
    if isinstance(value, (int, float)) and value == value:
        return format(value * scale, spec)
    return "–"


def update_readme(readme: Path, leaderboard: Path, checkpoints: Path) -> None:
    """Replace the README's tables between their markers: benchmarks/leaderboard.csv, and the
    CamVid thing classes of the checkpoints."""
    from segzoo.leaderboard import STAGE_SEPARATOR, load_leaderboard

    def stage_parts(value: object) -> list[str]:  # a multi-stage training's machines or precisions
        return value.split(STAGE_SEPARATOR) if isinstance(value, str) and value else []

    frame = load_leaderboard(leaderboard)
    lines = [
        "| data set | model | mIoU % | published mIoU % | mDice % | pixel acc % | mask AP % | params | GFLOPs "
        "| CPU latency ms (served / float32) | training: hours, core-hours, epochs, precision | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in frame.to_dict("records"):
        note = "interim (reduced-resolution CPU run)" if row["interim"] else ""
        if row["partial"]:
            note = (note + "; " if note else "") + "partial evaluation"
        precisions = STAGE_SEPARATOR.join(PRECISION_NAMES.get(p, p) for p in stage_parts(row["train_precision"]))
        lines.append(
            f"| {row['dataset']} | `{row['model']}` | {_fmt(row['miou'], '.1f', 100)} | "
            f"{_fmt(row['reference_miou'], '.1f', 100)} | "
            f"{_fmt(row['mdice'], '.1f', 100)} | {_fmt(row['pixel_accuracy'], '.1f', 100)} | "
            f"{_fmt(row['mask_ap'], '.1f', 100)} | {_fmt(row['params'], '.1f', 1e-6)} M | "
            f"{_fmt(row['gflops'], '.1f')} | "
            f"{_fmt(row['latency_ms'], '.0f')} / {_fmt(row['latency_ms_float32'], '.0f')} | "
            f"{_fmt(row['train_hours'], '.1f')}, {_fmt(row['train_cpu_hours'], '.1f')}, "
            f"{_fmt(row['train_epochs'], '.0f')}, {precisions or '–'} | {note} |"
        )
    machines = sorted({m for value in frame["trained_on"] for m in stage_parts(value)})
    if machines:
        lines += [
            "",
            f"Trained on: {'; '.join(machines)}. Hours: the summed wall time of the training epochs, every "
            "stage (pauses between sessions left out; epochs slowed by other work on the cores counted as they "
            "ran). Core-hours: the training process's CPU time, all threads. Precision: bf16 autocast on a CPU "
            "where bf16 pays (segzoo.devices), float32 on others; a model fine-tuned in a later stage (--init-from) "
            "names each stage's machine and precision, in order.",
        ]
    latency_on = sorted({m for m in frame["latency_device"] if isinstance(m, str) and m})
    if latency_on:
        served = sorted(
            {served_by(r, p) for r, p in zip(frame["latency_runtime"], frame["latency_precision"])} - {None}
        )
        lines += [
            "",
            f"Latency measured on: {'; '.join(latency_on)}. Median of batch-1 passes (forward and arg-max) at "
            f"the data set's input size; served: as the app runs the model there ({', '.join(served)}); "
            "float32: eager PyTorch.",
        ]
    text = _replace_between(readme.read_text(encoding="utf-8"), README_START, README_END, "\n".join(lines))
    text = _replace_between(text, THINGS_START, THINGS_END, things_table(checkpoints))
    readme.write_text(text, encoding="utf-8")


def _replace_between(text: str, start_marker: str, end_marker: str, body: str) -> str:
    start, end = text.index(start_marker) + len(start_marker), text.index(end_marker)
    return text[:start] + "\n" + body + "\n" + text[end:]


THINGS_START, THINGS_END = "<!-- camvid-things:start -->", "<!-- camvid-things:end -->"


def things_table(checkpoints: Path) -> str:
    """CamVid's car, pedestrian and bicyclist test IoU for every model shipped in camvid/, the
    Mask R-CNN (its instances painted in) beside the semantic models, and its mask AP."""
    from segzoo.checkpoint import read_json

    lines = [
        "| model | car IoU % | pedestrian IoU % | bicyclist IoU % | mean % | mask AP % |",
        "|---|---|---|---|---|---|",
    ]
    rows = []
    for path in sorted((checkpoints / "camvid").glob("*/metrics.json")):
        metrics = read_json(path)
        iou = metrics.get("thing_iou") or metrics.get("per_class_iou") or {}
        values = [iou.get(name) for name in CAMVID_THINGS.values()]
        known = [v for v in values if isinstance(v, (int, float))]
        mean = sum(known) / len(known) if len(known) == len(values) else None
        rows.append((mean if mean is not None else -1.0, path.parent.name, values, mean, metrics.get("mask_AP")))
    for _, name, values, mean, mask_ap in sorted(rows, reverse=True):
        cells = " | ".join(_fmt(v, ".1f", 100) for v in values)
        lines.append(f"| `{name}` | {cells} | {_fmt(mean, '.1f', 100)} | {_fmt(mask_ap, '.1f', 100)} |")
    return "\n".join(lines)


def record_regression(checkpoint: Path) -> None:
    """What tests/test_shipped_checkpoints.py holds the checkpoint to."""
    from segzoo.checkpoint import write_json
    from segzoo.evaluate import REGRESSION_FILE, score_example_frames

    try:
        write_json(checkpoint / REGRESSION_FILE, score_example_frames(checkpoint, Path("examples")))
    except FileNotFoundError as exc:  # no example frames with masks for this data set
        print(f"no regression record for {checkpoint}: {exc}", flush=True)


def planned_epochs(dataset: str, model: str, run_dir: Path, resume: bool, float32_cpu: bool) -> int | None:
    """The epochs a model trains for: a resumed run keeps its own (its learning-rate schedule
    was laid out for them, whatever machine it continues on); otherwise the data set's plan,
    CamVid's and camvid_instances' for this CPU's precision. ``None`` leaves `segzoo train`'s
    default."""
    from segzoo.training.state import resumed_epochs

    if resume and (epochs := resumed_epochs(run_dir)):
        return epochs
    if dataset == "camvid":
        return (CAMVID_EPOCHS_FLOAT32 if float32_cpu else CAMVID_EPOCHS).get(model)
    if dataset == "oxford_pet":
        return PET_EPOCHS
    return (INSTANCE_EPOCHS_FLOAT32 if float32_cpu else INSTANCE_EPOCHS).get(dataset)


def train_recipe(dataset: str, model: str, interim: bool) -> list[str]:
    """The `segzoo train` options of ``model`` on ``dataset``: the data set's recipe, then the
    model's own (a later option wins)."""
    if interim:
        return ["--interim", *INTERIM_RECIPE[dataset]]
    return [*RECIPES.get(dataset, []), *MODEL_RECIPES.get(dataset, {}).get(model, [])]


def models_in_order(planned: list[str], chosen: list[str] | None) -> list[str]:
    """The planned models that ``--models`` names, in its order (a queue of runs is laid out
    by the user); all of them, in the plan's order, without it."""
    return [model for model in chosen if model in planned] if chosen else planned


def already_shipped(out: Path, interim: bool) -> bool:
    """Whether ``out`` holds an evaluated checkpoint that ``--interim`` (or not) leaves alone:
    an interim stand-in is there to be replaced by the full recipe; an interim run never
    replaces anything evaluated."""
    from segzoo.checkpoint import CONFIG_FILE, METRICS_FILE, read_json

    if not (out / METRICS_FILE).is_file() or not (out / CONFIG_FILE).is_file():
        return False
    return interim or not read_json(out / CONFIG_FILE).get("interim")


def ship(run_dir: Path, out: Path) -> None:
    """Copy a completed run's weights, config and history into the checkpoints folder
    (never its resume state)."""
    from segzoo.checkpoint import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, WEIGHTS_FILE, read_json

    if not read_json(run_dir / CONFIG_FILE).get("training", {}).get("completed"):
        raise SystemExit(f"{run_dir}: training has not completed; continue it with --resume")
    out.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_FILE, CONFIG_FILE, HISTORY_FILE):
        shutil.copy2(run_dir / name, out / name)
    (out / METRICS_FILE).unlink(missing_ok=True)


def write_comparison(checkpoints: Path, dataset: str, models: list[str], out: Path) -> None:
    """One data set's models side by side, from their checkpoints: the last epoch's and the
    lowest validation loss, the best validation mIoU, and the test scores."""
    from segzoo.checkpoint import CONFIG_FILE, METRICS_FILE, read_json, write_json
    from segzoo.training import read_history

    rows = []
    for model in models:
        directory = checkpoints / dataset / model
        history, metrics = read_history(directory), read_json(directory / METRICS_FILE)
        config = read_json(directory / CONFIG_FILE)
        rows.append(
            {
                "model": model,
                "model_kwargs": config.get("model_kwargs", {}),
                "epochs": len(history),
                "final_val_loss": history[-1]["val_loss"],
                "min_val_loss": min(row["val_loss"] for row in history),
                "best_val_miou": config["training"]["best_val_miou"],
                "test_miou": metrics["miou"],
                "test_per_class_iou": metrics["per_class_iou"],
                "test_pixel_accuracy": metrics["pixel_accuracy"],
                "train_seconds": config["training"]["train_seconds"],
            }
        )
    write_json(out, {"dataset": dataset, "command": " ".join(sys.argv), "models": rows})
    print(f"wrote {out}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder holding camvid/ and oxford-iiit-pet-sample/")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where models train (default: runs/)")
    parser.add_argument("--leaderboard", type=Path, default=Path("benchmarks"), help="where leaderboard.csv goes")
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help="whose results tables are rewritten")
    parser.add_argument("--resume", action="store_true", help="continue the runs in --runs")
    parser.add_argument("--datasets", nargs="*", help="only these data sets")
    parser.add_argument("--models", nargs="*", help="only these models, trained in this order")
    parser.add_argument("--epochs", type=int, help="override the per-data-set default")
    parser.add_argument("--interim", action="store_true", help="reduced-resolution CPU recipe")
    parser.add_argument("--force", action="store_true", help="retrain models that have metrics")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="passed to `segzoo train` (default: auto)"
    )
    parser.add_argument(
        "--channels-last",
        choices=CHANNELS_LAST_CHOICES,
        default="auto",
        help="passed to `segzoo train` (default: auto)",
    )
    parser.add_argument(
        "--train-args",
        default="",
        metavar="OPTIONS",
        help="more `segzoo train` options, after the recipe's (so they win), e.g. a fine-tuning stage of a "
        'shipped model: "--init-from checkpoints/camvid/segnet --lr 1e-4"; give them again with --resume',
    )
    parser.add_argument("--comparison", type=Path, metavar="JSON", help="also write the models side by side here")
    parser.add_argument(
        "--readme-only",
        action="store_true",
        help="only refresh the regression records and the README table of trained checkpoints",
    )
    args = parser.parse_args()
    if args.readme_only:
        for checkpoint in sorted(args.checkpoints.glob("*/*/metrics.json")):
            record_regression(checkpoint.parent)
        update_readme(args.readme, args.leaderboard / "leaderboard.csv", args.checkpoints)
        return 0

    compute = compute_recipe(precision=args.precision, channels_last=args.channels_last)
    float32_cpu = compute.device.type == "cpu" and compute.precision == "32-true"
    if float32_cpu and args.precision == "auto":
        print(
            f"note: on {device_name(compute.device)} bf16 does not pay (no native bf16, or slower than float32 in "
            "segzoo.devices' probe), so training runs in float32, slower than on a CPU where bf16 pays; "
            + (
                f"--epochs {args.epochs} is used as given"
                if args.epochs
                else "new CamVid and camvid_instances runs take the epochs sized for such a CPU "
                "(CAMVID_EPOCHS_FLOAT32, INSTANCE_EPOCHS_FLOAT32: fewer), a resumed run keeps its own"
            )
            + "; each epoch line says how long its run has left",
            flush=True,
        )
    segzoo_cmd = [sys.executable, "-m", "segzoo.cli"]

    def refresh_tables() -> None:
        # Latency is measured only for models the leaderboard has not profiled yet.
        run([*segzoo_cmd, "leaderboard", "--checkpoints", str(args.checkpoints), "--out", str(args.leaderboard)])
        update_readme(args.readme, args.leaderboard / "leaderboard.csv", args.checkpoints)

    trained = 0
    for dataset, folder, options, models in PLAN:
        if args.datasets and dataset not in args.datasets:
            continue
        for model in models_in_order(models, args.models):
            # Shipped in its label set's folder: Mask R-CNN on CamVid's things goes to camvid/.
            out = args.checkpoints / dataset_entry(dataset).label_set_name / model
            if already_shipped(out, args.interim) and not args.force:
                print(f"skip {dataset}/{model}: already evaluated", flush=True)
                continue
            run_dir = args.runs / dataset / model
            recipe = train_recipe(dataset, model, args.interim)
            epochs = args.epochs or planned_epochs(dataset, model, run_dir, args.resume, float32_cpu)
            kwargs = MODEL_KWARGS.get(dataset, {}).get(model)
            start = time.monotonic()
            run(
                [*segzoo_cmd, "train", "--model", model, "--dataset", dataset,
                 "--data-root", str(args.data / folder), "--out", str(run_dir), "--no-progress",
                 "--resume" if args.resume else "--overwrite", *options, *recipe,
                 *(["--model-kwargs", kwargs] if kwargs else []),
                 "--precision", args.precision, "--channels-last", args.channels_last,
                 *(["--epochs", str(epochs)] if epochs else []), *shlex.split(args.train_args)]
            )  # fmt: skip
            ship(run_dir, out)
            if dataset in TUNE_SCALE_DATASETS:
                run([*segzoo_cmd, "tune-scale", str(out), "--no-progress"])
            run([*segzoo_cmd, "evaluate", str(out), "--split", EVAL_SPLIT.get(dataset, "test"), "--no-progress"])
            record_regression(out)
            refresh_tables()
            trained += 1
            print(f"{dataset}/{model}: {time.monotonic() - start:.0f} s", flush=True)
        if args.comparison:
            write_comparison(args.checkpoints, dataset, models_in_order(models, args.models), args.comparison)
    if not trained:  # everything was shipped already: the tables still follow the checkpoints
        refresh_tables()
    return 0


if __name__ == "__main__":
    sys.exit(main())
