"""End-to-end training: the checkpoint it leaves, that it learns, seeds, resume after
SIGKILL, 2-process DDP, and a quick run on the real CamVid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import segzoo
from segzoo.checkpoint import save_checkpoint, training_stages
from segzoo.cli import main
from segzoo.evaluate import evaluate_checkpoint, file_sha256
from segzoo.training import HISTORY_COLUMNS, TIMING_COLUMNS, TrainConfig, fit, read_history
from segzoo.training.loop import init_from_checkpoint
from segzoo.training.synthetic import make_synthetic_folder

TINY_UNET = '{"base_channels": 8}'
CONFIG_KEYS = {
    "model", "model_kwargs", "task", "num_classes", "class_names", "palette", "ignore_index", "mean", "std",
    "input_size", "dataset", "dataset_options", "training", "segzoo_version", "interim",
}  # fmt: skip
TRAINING_KEYS = {
    "loss", "lam", "alpha", "beta", "lr", "epochs", "batch_size", "optimizer", "scheduler", "seed", "precision",
    "devices", "encoder_weights", "best_epoch", "best_val_miou", "device_name", "train_seconds",
}  # fmt: skip


def train_args(data: Path, out: Path, *extra: str, epochs: int = 2, size: int = 48) -> list[str]:
    return [
        "train", "--model", "unet", "--model-kwargs", TINY_UNET, "--dataset", "folder", "--data-root", str(data),
        "--size", str(size), str(size), "--batch-size", "2", "--epochs", str(epochs), "--out", str(out),
        "--no-progress", *extra,
    ]  # fmt: skip


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic_folder(tmp_path_factory.mktemp("synthetic"), num_train=8, num_val=4, size=(64, 64))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "unet"
    assert main(train_args(data, out)) == 0
    return out


def test_run_leaves_a_complete_checkpoint(trained) -> None:
    assert {p.name for p in trained.iterdir()} == {"model.safetensors", "config.json", "history.csv"}
    config = json.loads((trained / "config.json").read_text())
    assert CONFIG_KEYS <= set(config) and TRAINING_KEYS <= set(config["training"])
    assert config["model"] == "unet" and config["model_kwargs"] == {"base_channels": 8}
    assert config["class_names"] == ["background", "disc", "box", "bar"] and config["num_classes"] == 4
    assert config["input_size"] == [48, 48] and config["interim"] is False
    assert config["segzoo_version"] == segzoo.__version__ and config["training"]["completed"] is True
    header = (trained / "history.csv").read_text().splitlines()[0].split(",")
    assert header == HISTORY_COLUMNS
    history = read_history(trained)
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(r["epochs_per_min"] > 0 and r["seconds"] > 0 for r in history)
    best = max(history, key=lambda r: r["val_miou"])
    assert config["training"]["best_val_miou"] == best["val_miou"]


def test_epoch_lines_say_how_long_the_run_has_left(data, tmp_path, capsys) -> None:
    assert main(train_args(data, tmp_path / "unet", epochs=2)) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2
    assert lines[0].endswith(" left]") and "left" not in lines[1]  # nothing is left after the last


def test_load_round_trips(trained) -> None:
    model, config = segzoo.load(trained)
    assert not model.training and config["model"] == "unet"
    weights = segzoo.checkpoint.load_weights(trained / "model.safetensors")
    assert all(v.dtype == torch.float16 for v in weights.values() if v.is_floating_point())
    state = model.state_dict()
    assert all(torch.equal(state[k].half(), v) for k, v in weights.items() if v.is_floating_point())
    logits = model(torch.randn(1, 3, 40, 56))
    assert logits.shape == (1, 4, 40, 56)


def test_evaluate_reproduces_the_recorded_validation_miou(trained) -> None:
    config = json.loads((trained / "config.json").read_text())
    # Validation ran with the training's compute recipe (bf16 on CPUs with native bf16):
    # evaluating with the same precision gives the recorded number exactly.
    precision = config["training"]["val_precision"]
    metrics = evaluate_checkpoint(trained, split="val", progress=False, precision=precision)
    assert metrics["num_images"] == 4 and not metrics["partial"]
    assert metrics["miou"] == pytest.approx(config["training"]["best_val_miou"], abs=1e-9)
    assert json.loads((trained / "metrics.json").read_text())["miou"] == metrics["miou"]
    (trained / "metrics.json").unlink()  # keep the fixture's directory as training left it


def test_predict_writes_masks_and_overlays(trained, data, tmp_path) -> None:
    images = sorted((data / "images").glob("*.png"))[:2]
    assert main(["predict", str(trained), *map(str, images), "--out", str(tmp_path / "pred"), "--no-progress"]) == 0
    from PIL import Image

    for image in images:
        for kind in ("mask", "overlay", "labels"):
            out = Image.open(tmp_path / "pred" / f"{image.stem}_{kind}.png")
            assert out.size == (64, 64)
        assert Image.open(tmp_path / "pred" / f"{image.stem}_mask.png").mode == "RGB"


def test_existing_run_is_not_overwritten_without_asking(trained, data, capsys) -> None:
    assert main(train_args(data, trained)) == 1
    assert "--resume" in capsys.readouterr().err


def test_same_seed_same_history_whatever_the_data_path(data, tmp_path) -> None:
    """Seeds fix weights, order and augmentation: two runs agree exactly, and keeping the data in
    device memory (here: CPU memory) or streaming it through loader workers changes nothing."""
    base = dict(model="unet", model_kwargs={"base_channels": 8}, dataset="folder", data_root=str(data),
                size=(40, 40), epochs=2, batch_size=2, scale=(0.7, 1.4), progress=False)  # fmt: skip
    fit(TrainConfig(**base, out=str(tmp_path / "a"), data_on_gpu="off"))
    fit(TrainConfig(**base, out=str(tmp_path / "b"), data_on_gpu="on"))
    fit(TrainConfig(**base, out=str(tmp_path / "c"), seed=1))
    a, b, c = (without_timing(read_history(tmp_path / n)) for n in "abc")
    assert a == b
    assert a != c


def test_early_stopping(data, tmp_path) -> None:
    out = tmp_path / "stop"
    # With a learning rate this small the scores barely move (only batch-norm statistics do).
    assert main(train_args(data, out, "--lr", "1e-12", "--early-stopping", "1", epochs=6)) == 0
    scores = [r["val_miou"] for r in read_history(out)]
    best_before = [max(scores[:i]) for i in range(1, len(scores))]
    assert all(s > b for s, b in zip(scores[1:-1], best_before))  # it went on while improving
    assert len(scores) < 6 and scores[-1] <= best_before[-1]  # and stopped at the first stall
    best_epoch = json.loads((out / "config.json").read_text())["training"]["best_epoch"]
    assert best_epoch == len(scores) - 1


def test_init_from_continues_the_history_as_a_new_stage(trained, data, tmp_path) -> None:
    out = tmp_path / "stage2"
    assert main(train_args(data, out, "--init-from", str(trained), epochs=1)) == 0
    history = read_history(out)
    assert [(r["stage"], r["epoch"]) for r in history] == [(1, 1), (1, 2), (2, 1)]
    assert history[:2] == read_history(trained)  # the earlier stage's rows, unchanged
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["stage"] == 2 and training["total_epochs"] == 3
    assert training["init_from"]["reinitialised"] == []
    assert training["init_from"]["weights_sha256"] == file_sha256(trained / "model.safetensors")
    # Each stage's machine and precision stay on record (a fine-tuning stage may run elsewhere).
    (first,) = training_stages(json.loads((trained / "config.json").read_text())["training"])
    machine = {"device_name": training["device_name"], "precision": training["precision"]}
    assert first == {"stage": 1, "epochs": 2, "train_seconds": first["train_seconds"], **machine}
    second = {"stage": 2, "epochs": 1, "train_seconds": training["train_seconds"], **machine}
    assert training["init_from"]["stages"] == [first] and training_stages(training) == [first, second]


def test_init_from_reinitialises_only_a_classifier_of_another_class_count(tmp_path) -> None:
    torch.manual_seed(0)
    source = segzoo.create_model("unet", num_classes=3, base_channels=8)
    save_checkpoint(tmp_path / "three", source, {"model": "unet", "num_classes": 3})
    target = segzoo.create_model("unet", num_classes=5, base_channels=8)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    info = init_from_checkpoint(target, tmp_path / "three", "unet")
    changed = {k for k, v in target.state_dict().items() if not torch.equal(v, before[k])}
    assert info["reinitialised"] and all(k not in changed for k in info["reinitialised"])
    assert len(info["reinitialised"]) == 2  # the 1x1 classifier's weight and bias
    kept = set(before) - set(info["reinitialised"])
    source_state = source.state_dict()
    assert all(torch.equal(target.state_dict()[k], source_state[k].half().to(source_state[k].dtype)) for k in kept)
    with pytest.raises(ValueError, match="holds a unet checkpoint, not segnet"):
        init_from_checkpoint(segzoo.create_model("segnet", num_classes=3), tmp_path / "three", "segnet")


@pytest.mark.slow
def test_overfits_four_images(tmp_path) -> None:
    """The loop really learns: a small UNet fits 4 images (validated on the same 4) to mIoU > 0.9."""
    data = make_synthetic_folder(tmp_path / "four", num_train=4, num_val=0, size=(64, 64), seed=1)
    (data / "val.txt").write_text((data / "train.txt").read_text())
    out = tmp_path / "overfit"
    fit(TrainConfig(model="unet", model_kwargs={"base_channels": 8, "depth": 3}, dataset="folder",
                    data_root=str(data), size=(64, 64), epochs=25, batch_size=2, lr=1e-2, augment=False,
                    out=str(out), progress=False))  # fmt: skip
    history = read_history(out)
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert max(r["val_miou"] for r in history) > 0.9
    metrics = evaluate_checkpoint(out, split="val", progress=False)
    assert metrics["miou"] > 0.9 and min(s["iou"] for s in metrics["per_class"].values()) > 0.8


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "segzoo.cli", *args]


@pytest.mark.slow
def test_resume_after_sigkill_completes_history_exactly_once(data, tmp_path) -> None:
    out = tmp_path / "killed"
    args = train_args(data, out, epochs=8, size=32)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(_cli(*args), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if (out / "history.csv").is_file() and len(read_history(out)) >= 2:
                break
            time.sleep(0.02)
        assert process.poll() is None, (
            f"training ended before it could be killed: {process.stderr.read().decode()[-2000:]}"
        )
        process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    done = read_history(out)
    assert 2 <= len(done) < 8 and (out / "resume" / "state.safetensors").is_file()
    segzoo.load(out)  # what the kill left is a valid checkpoint

    assert main([*args, "--resume"]) == 0
    history = read_history(out)
    assert [r["epoch"] for r in history] == list(range(1, 9))
    model, config = segzoo.load(out)
    assert config["training"]["completed"] and not (out / "resume").exists()
    assert not list(out.glob(".*.tmp"))
    assert main([*args, "--resume"]) == 0  # a finished run: nothing to do, nothing touched
    assert read_history(out) == history

    # Resuming restores weights, optimizer, schedule and random state: the history equals an
    # uninterrupted run's.
    straight = tmp_path / "straight"
    assert main(train_args(data, straight, epochs=8, size=32)) == 0
    assert without_timing(history) == without_timing(read_history(straight))


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(data, tmp_path) -> None:
    """Real 2-process DDP (gloo): each process trains on half the batches and validates half the
    images; the summed confusion matrix equals a single-process evaluation of the saved model."""
    out = tmp_path / "ddp"
    args = train_args(data, out, "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu")
    result = subprocess.run(_cli(*args), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    history = read_history(out)
    assert [r["epoch"] for r in history] == [1, 2]
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["world_size"] == 2
    precision = config["training"]["val_precision"]
    metrics = evaluate_checkpoint(out, split="val", progress=False, precision=precision)
    assert metrics["miou"] == pytest.approx(config["training"]["best_val_miou"], abs=1e-9)


@pytest.mark.shared_data
def test_train_on_camvid_runs(shared_datasets, tmp_path, capsys) -> None:
    """`segzoo train` on the real CamVid (reduced size, a few batches), then evaluate on the test split."""
    out = tmp_path / "camvid" / "unet"
    args = [
        "train", "--model", "unet", "--model-kwargs", TINY_UNET, "--dataset", "camvid",
        "--data-root", str(shared_datasets / "camvid"), "--size", "48", "64", "--batch-size", "2",
        "--epochs", "1", "--limit-train-batches", "2", "--limit-val-images", "2", "--out", str(out), "--interim",
    ]  # fmt: skip
    assert main(args) == 0
    assert "epoch 1/1" in capsys.readouterr().err  # the progress bar
    config = json.loads((out / "config.json").read_text())
    assert config["class_names"][0] == "sky" and config["num_classes"] == 11 and config["ignore_index"] == 11
    assert config["short_side"] == 48 and config["interim"] is True
    assert config["training"]["train_images"] == 367 and config["training"]["val_images"] == 2
    assert main(["evaluate", str(out), "--split", "test", "--limit", "2", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["split_images"] == 233 and metrics["partial"]
    assert len(metrics["per_class_iou"]) == 11 and len(metrics["confusion_matrix"]) == 11
