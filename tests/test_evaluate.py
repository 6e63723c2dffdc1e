"""`segzoo evaluate`: the metrics file, its numbers against an independent computation, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo
from segzoo.cli import main
from segzoo.evaluate import evaluate_checkpoint, file_sha256
from segzoo.training import TrainConfig, fit
from segzoo.training.synthetic import make_synthetic_folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    data = make_synthetic_folder(root / "data", num_train=4, num_val=5, size=(48, 56), seed=2)
    out = root / "ckpt"
    # The crop's short side equals the images' (48): evaluation runs at the stored size.
    fit(TrainConfig(model="unet", model_kwargs={"base_channels": 8}, dataset="folder", data_root=str(data),
                    size=(48, 48), epochs=1, batch_size=2, out=str(out), progress=False))  # fmt: skip
    return out, data


def test_metrics_file_contents(checkpoint) -> None:
    out, _ = checkpoint
    assert main(["evaluate", str(out), "--split", "val", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("miou", "mdice", "pixel_accuracy", "mean_class_accuracy", "fw_iou", "per_class_iou",
                "per_class", "confusion_matrix", "split", "num_images", "checkpoint", "limit", "partial"):  # fmt: skip
        assert key in metrics, key
    assert metrics["split"] == "val" and metrics["num_images"] == 5 and metrics["partial"] is False
    assert list(metrics["per_class_iou"]) == ["background", "disc", "box", "bar"]
    assert np.array(metrics["confusion_matrix"]).sum() == 5 * 48 * 56  # every pixel, once
    assert metrics["checkpoint"]["weights_sha256"] == file_sha256(out / "model.safetensors")
    assert metrics["checkpoint"]["best_epoch"] == 1


def test_scores_match_an_independent_computation(checkpoint) -> None:
    out, data = checkpoint
    metrics = evaluate_checkpoint(out, split="val", progress=False)
    model, config = segzoo.load(out)
    mean, std = torch.tensor(config["mean"]).view(3, 1, 1), torch.tensor(config["std"]).view(3, 1, 1)
    confusion = np.zeros((4, 4), dtype=np.int64)
    for stem in (data / "val.txt").read_text().split():
        image = torch.from_numpy(np.array(Image.open(data / "images" / f"{stem}.png"))).permute(2, 0, 1)
        truth = np.array(Image.open(data / "masks" / f"{stem}.png")).astype(np.int64)
        with torch.no_grad():
            pred = model(((image.float() / 255 - mean) / std)[None]).argmax(1)[0].numpy()
        confusion += np.bincount(truth.ravel() * 4 + pred.ravel(), minlength=16).reshape(4, 4)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    assert np.array_equal(np.array(metrics["confusion_matrix"]), confusion)
    assert metrics["miou"] == pytest.approx(np.nanmean(iou), abs=1e-12)
    assert metrics["pixel_accuracy"] == pytest.approx(tp.sum() / confusion.sum(), abs=1e-12)


def test_limit_marks_partial_and_data_root_override(checkpoint, tmp_path) -> None:
    out, data = checkpoint
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    metrics = evaluate_checkpoint(out, split="val", data_root=moved, limit=2, out=tmp_path / "m.json", progress=False)
    assert metrics["num_images"] == 2 and metrics["partial"] and metrics["limit"] == 2
    assert json.loads((tmp_path / "m.json").read_text())["num_images"] == 2


def test_corrupt_weights_give_a_clear_error(checkpoint, tmp_path, capsys) -> None:
    out, _ = checkpoint
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "metrics.json").unlink(missing_ok=True)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert main(["evaluate", str(broken), "--split", "val", "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert "model.safetensors" in error and "Traceback" not in error
    assert not (broken / "metrics.json").exists()


def test_missing_data_gives_a_clear_error(checkpoint, tmp_path, capsys) -> None:
    out, _ = checkpoint
    assert main(["evaluate", str(out), "--split", "val", "--data-root", str(tmp_path / "nowhere")]) == 1
    assert "nowhere" in capsys.readouterr().err
