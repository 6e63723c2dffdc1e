"""Folders in and out: `segzoo predict` and `segzoo evaluate --images` over folders and globs,
the per-image CSV and its scores (checked against an independent computation), and a run
that keeps going past unreadable files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segzoo
from segzoo.checkpoint import save_checkpoint
from segzoo.cli import main
from segzoo.export import random_weights
from segzoo.predict import expand_inputs, predict_files
from segzoo.training.synthetic import CLASSES, make_synthetic_folder

NAMES = list(CLASSES)
PALETTE = [list(c) for c in CLASSES.values()]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny UNet with random weights that still predicts several classes."""
    model = random_weights(segzoo.create_model("unet", num_classes=4, base_channels=8), seed=3)
    config = {
        "model": "unet", "model_kwargs": {"base_channels": 8}, "task": "semantic", "num_classes": 4,
        "class_names": NAMES, "palette": PALETTE, "ignore_index": 255, "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225], "dataset": "folder",
    }  # fmt: skip
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "unet", model, config)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic_folder(tmp_path_factory.mktemp("data"), num_train=4, num_val=2, size=(48, 64), seed=5)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def independent_scores(labels: np.ndarray, truth: np.ndarray, num_classes: int = 4) -> tuple[float, float, list]:
    confusion = np.bincount(truth.ravel() * num_classes + labels.ravel(), minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou)), float(tp.sum() / confusion.sum()), iou.tolist()


def test_folder_with_an_unreadable_file(checkpoint, data, tmp_path, capsys) -> None:
    photos = shutil.copytree(data / "images", tmp_path / "photos")
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (photos / "notes.txt").write_text("not an image, not an input")
    out = tmp_path / "out"
    status = main(["predict", str(checkpoint), str(photos), "--out", str(out), "--masks", str(data / "masks"),
                   "--no-progress"])  # fmt: skip
    assert status == 1  # the broken file is reported, the six photos are segmented all the same
    err = capsys.readouterr().err
    assert "1 of 7 images failed" in err and "broken.png" in err and "Traceback" not in err

    rows = read_rows(out / "predictions.csv")
    assert [Path(r["image"]).name for r in rows] == ["broken.png"] + [f"img{i:03d}.png" for i in range(6)]
    assert list(rows[0])[:4] == ["image", "seconds", "width", "height"]
    assert {"ground_truth", "miou", "pixel_accuracy", "iou_background", "iou_bar", "error"} <= set(rows[0])
    broken, good = rows[0], rows[1:]
    assert broken["error"] and broken["miou"] == "" and not (out / "broken_mask.png").exists()
    labels_seen = set()
    for row in good:
        stem = Path(row["image"]).stem
        assert row["error"] == "" and float(row["seconds"]) > 0 and (row["width"], row["height"]) == ("64", "48")
        for kind in ("mask", "overlay", "labels"):
            assert Image.open(out / f"{stem}_{kind}.png").size == (64, 48)
        labels = np.array(Image.open(out / f"{stem}_labels.png")).astype(np.int64)
        truth = np.array(Image.open(data / "masks" / f"{stem}.png")).astype(np.int64)
        miou, accuracy, iou = independent_scores(labels, truth)
        assert float(row["miou"]) == pytest.approx(miou, abs=1e-6)
        assert float(row["pixel_accuracy"]) == pytest.approx(accuracy, abs=1e-6)
        for name, value in zip(NAMES, iou):
            assert (
                (row[f"iou_{name}"] == "")
                if np.isnan(value)
                else float(row[f"iou_{name}"]) == pytest.approx(value, abs=1e-6)
            )
        labels_seen |= set(np.unique(labels).tolist())
    assert len(labels_seen) >= 2  # the scores are not those of a constant prediction


def test_globs_files_and_duplicates(checkpoint, data, tmp_path) -> None:
    images = data / "images"
    inputs = [f"{images}/img00[0-1].png", str(images / "img004.png"), str(images / "img000.png")]
    assert [p.name for p in expand_inputs(inputs)] == ["img000.png", "img001.png", "img004.png"]
    records = predict_files(checkpoint, inputs, tmp_path / "out", progress=False)
    assert len(records) == 3 and not any(r.get("error") for r in records)
    rows = read_rows(tmp_path / "out" / "predictions.csv")
    assert len(rows) == 3 and "miou" not in rows[0]  # no masks, no score columns
    recursive = expand_inputs([f"{data}/**/img005.png"])
    assert sorted(p.parent.name for p in recursive) == ["images", "masks"]


def test_missing_inputs_are_clear_errors(checkpoint, tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(checkpoint), str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    assert "no images" in capsys.readouterr().err
    assert main(["predict", str(checkpoint), f"{tmp_path}/*.jpg", "--out", str(tmp_path / "o")]) == 1
    assert "no image matches this pattern" in capsys.readouterr().err
    # A named file that does not exist is one of the failures, not the end of the run.
    assert main(["predict", str(checkpoint), str(tmp_path / "gone.png"), "--out", str(tmp_path / "o")]) == 1
    assert "gone.png: file not found" in capsys.readouterr().err


def test_masks_beside_photos_and_colour_masks(checkpoint, data, tmp_path) -> None:
    """examples/ style: <stem>.jpg with <stem>.mask.png in the same folder (not inputs themselves);
    a mask drawn in the palette's colours scores as its index twin; a photo without a mask is
    segmented and left unscored."""
    folder = tmp_path / "examples"
    folder.mkdir()
    for i in range(3):
        shutil.copy(data / "images" / f"img00{i}.png", folder / f"img00{i}.png")
    shutil.copy(data / "masks" / "img000.png", folder / "img000.mask.png")
    index = np.array(Image.open(data / "masks" / "img001.png"))
    Image.fromarray(np.asarray(PALETTE, dtype=np.uint8)[index]).save(folder / "img001.mask.png")  # colour
    records = predict_files(checkpoint, [folder], tmp_path / "out", masks=folder, progress=False)
    assert [Path(r["image"]).name for r in records] == ["img000.png", "img001.png", "img002.png"]
    assert "miou" in records[0] and "miou" in records[1] and "miou" not in records[2]
    labels = np.array(Image.open(tmp_path / "out" / "img001_labels.png")).astype(np.int64)
    assert records[1]["miou"] == pytest.approx(independent_scores(labels, index.astype(np.int64))[0], abs=1e-9)


def test_evaluate_a_folder(checkpoint, data, tmp_path, capsys) -> None:
    out = tmp_path / "evaluation"
    assert main(["evaluate", str(checkpoint), "--images", str(data / "images"), "--masks", str(data / "masks"),
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 6 and metrics["failed"] == [] and metrics["precision"] == "32-true"
    assert np.array(metrics["confusion_matrix"]).sum() == 6 * 48 * 64  # every pixel once, at full size
    # One confusion matrix over all images, recomputed from the labels `segzoo predict` writes.
    predict_files(checkpoint, [data / "images"], tmp_path / "pred", precision="32-true", progress=False)
    labels = np.concatenate([np.array(Image.open(p)).ravel() for p in sorted((tmp_path / "pred").glob("*_labels.png"))])
    truth = np.concatenate([np.array(Image.open(p)).ravel() for p in sorted((data / "masks").glob("*.png"))])
    assert metrics["miou"] == pytest.approx(independent_scores(labels.astype(np.int64), truth.astype(np.int64))[0])
    assert len(read_rows(out / "predictions.csv")) == 6
    assert "mIoU" in capsys.readouterr().out
    assert main(["evaluate", str(checkpoint), "--images", str(data / "images")]) == 1
    assert "--masks" in capsys.readouterr().err


@pytest.mark.shared_data
def test_predict_the_camvid_test_folder(shared_datasets, tmp_path) -> None:
    """The bar: `segzoo predict CKPT camvid/test --out DIR` writes 233 results and a CSV."""
    camvid = shared_datasets / "camvid"
    model = random_weights(segzoo.create_model("unet", num_classes=11, base_channels=8), seed=0)
    config = {
        "model": "unet", "model_kwargs": {"base_channels": 8}, "task": "semantic", "num_classes": 11,
        "class_names": [f"class{i}" for i in range(11)], "palette": [[20 * i, 10 * i, 255 - 20 * i] for i in range(11)],
        "ignore_index": 11, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "dataset": "camvid",
    }  # fmt: skip
    ckpt = save_checkpoint(tmp_path / "unet", model, config)
    out = tmp_path / "out"
    status = main(["predict", str(ckpt), str(camvid / "test"), "--out", str(out), "--masks", str(camvid / "testannot"),
                   "--max-side", "120", "--no-progress"])  # fmt: skip
    assert status == 0
    rows = read_rows(out / "predictions.csv")
    assert len(rows) == 233 and all(r["error"] == "" and r["miou"] != "" for r in rows)
    assert {(r["width"], r["height"]) for r in rows} == {("480", "360")}
    assert len(list(out.glob("*_labels.png"))) == 233 and len(list(out.glob("*_overlay.png"))) == 233
