"""`segzoo leaderboard`: one row per (data set, model), costs, caching, and the app's loader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from segzoo.checkpoint import save_checkpoint, write_json
from segzoo.cli import main
from segzoo.evaluate import evaluate_checkpoint
from segzoo.leaderboard import COLUMNS, build_leaderboard, context_columns, load_leaderboard
from segzoo.profiling import count_parameters, gflops
from segzoo.registry import create_model
from segzoo.training import TrainConfig, fit
from segzoo.training.synthetic import make_synthetic_folder


def fake_checkpoint(directory: Path, model: str, miou: float, interim: bool = False, partial: bool = False,
                    **model_kwargs) -> None:  # fmt: skip
    """A checkpoint with made-up metrics: enough for the leaderboard, no training needed."""
    config = {
        "model": model, "model_kwargs": model_kwargs, "task": "semantic", "num_classes": 4,
        "class_names": ["a", "b", "c", "d"], "palette": [[0, 0, 0]] * 4, "ignore_index": None,
        "mean": [0.5] * 3, "std": [0.25] * 3, "input_size": [32, 32], "dataset": "folder",
        "dataset_options": {}, "training": {"device_name": "test", "best_epoch": 1}, "interim": interim,
    }  # fmt: skip
    save_checkpoint(directory, create_model(model, num_classes=4, **model_kwargs), config)
    write_json(directory / "metrics.json", {"split": "val", "num_images": 3, "partial": partial, "miou": miou,
                                            "mdice": miou, "pixel_accuracy": 0.9, "mean_class_accuracy": 0.8,
                                            "fw_iou": 0.85, "checkpoint": {"weights_sha256": "ab" * 32}})  # fmt: skip


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("board") / "checkpoints"
    data = make_synthetic_folder(root.parent / "data", num_train=4, num_val=2, size=(32, 32))
    trained = root / "folder" / "unet_efficientnet_b0"
    fit(TrainConfig(model="unet_efficientnet_b0", dataset="folder", data_root=str(data), size=(32, 32), epochs=1,
                    batch_size=2, out=str(trained), progress=False))  # fmt: skip
    evaluate_checkpoint(trained, split="val", progress=False)
    fake_checkpoint(root / "folder" / "unet", "unet", 0.6, base_channels=8)
    fake_checkpoint(root / "folder-interim" / "unet", "unet", 0.7, interim=True, base_channels=8)  # loses: interim
    fake_checkpoint(root / "folder-partial" / "unet", "unet", 0.9, partial=True, base_channels=8)  # loses: partial
    (root / "folder" / "not_evaluated").mkdir()
    return root


def test_one_row_per_dataset_and_model(checkpoints, tmp_path) -> None:
    frame = build_leaderboard(checkpoints, tmp_path, latency_runs=1, progress=False)
    assert list(frame.columns) == COLUMNS
    assert sorted(frame["model"]) == ["unet", "unet_efficientnet_b0"] and set(frame["dataset"]) == {"folder"}
    unet = frame.set_index("model").loc["unet"]
    assert unet["miou"] == 0.6 and not unet["interim"] and not unet["partial"]
    assert unet["checkpoint"].endswith("folder/unet") and unet["family"] == "UNet"
    model = create_model("unet", num_classes=4, base_channels=8)
    assert unet["params"] == count_parameters(model)
    assert unet["gflops"] == pytest.approx(round(gflops(model, (32, 32)), 2))
    assert unet["input_size"] == "32x32" and unet["latency_ms"] > 0 and unet["latency_threads"] >= 1
    trained = frame.set_index("model").loc["unet_efficientnet_b0"]
    metrics = json.loads((checkpoints / "folder" / "unet_efficientnet_b0" / "metrics.json").read_text())
    assert trained["miou"] == pytest.approx(metrics["miou"]) and trained["split"] == "val"
    assert (tmp_path / "leaderboard.csv").is_file() and (tmp_path / "leaderboard.json").is_file()
    data = json.loads((tmp_path / "leaderboard.json").read_text())
    assert "multiply-accumulates" in data["gflops"] and len(data["rows"]) == 2


def test_costs_are_reused_until_reprofile(checkpoints, tmp_path) -> None:
    first = build_leaderboard(checkpoints, tmp_path, latency_runs=1, progress=False)
    second = build_leaderboard(checkpoints, tmp_path, latency_runs=1, progress=False)
    assert list(first["latency_ms"]) == list(second["latency_ms"])
    skipped = build_leaderboard(checkpoints, tmp_path / "fresh", measure_latency=False, progress=False)
    assert skipped["latency_ms"].isna().all() and skipped["gflops"].notna().all()


def test_served_latency_is_onnxruntimes_where_the_app_serves_with_it(
    checkpoints, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_torch = build_leaderboard(checkpoints, tmp_path, latency_runs=1, progress=False)  # tests: PyTorch
    assert set(on_torch["latency_runtime"]) == {"torch"}
    monkeypatch.setenv("SEGZOO_CPU_BF16", "0")  # a CPU without bf16, where the app picks onnxruntime
    monkeypatch.setenv("SEGZOO_RUNTIME", "auto")
    served = build_leaderboard(checkpoints, tmp_path, latency_runs=1, progress=False)  # not the cached PyTorch rows
    assert set(served["latency_runtime"]) == {"onnxruntime"} and set(served["latency_precision"]) == {"32-true"}
    assert (served["latency_ms"] > 0).all()
    exported = {p.name.split("-")[0] for p in (Path(os.environ["SEGZOO_CACHE"]) / "onnx").glob("*.onnx")}
    assert exported == {"unet", "unet_efficientnet_b0"}  # into the serving cache, where the app finds them


def test_load_leaderboard_reads_csv_json_and_missing(checkpoints, tmp_path) -> None:
    built = build_leaderboard(checkpoints, tmp_path, latency_runs=1, progress=False)
    from_csv = load_leaderboard(tmp_path / "leaderboard.csv")
    from_json = load_leaderboard(tmp_path / "leaderboard.json")
    from_dir = load_leaderboard(tmp_path)
    for frame in (from_csv, from_json, from_dir):
        assert list(frame.columns) == COLUMNS and list(frame["model"]) == list(built["model"])
        assert frame["miou"].tolist() == pytest.approx(built["miou"].tolist())
    empty = load_leaderboard(tmp_path / "nothing" / "leaderboard.csv")
    assert isinstance(empty, pd.DataFrame) and empty.empty and list(empty.columns) == COLUMNS


def test_cli_prints_the_table(checkpoints, tmp_path, capsys) -> None:
    assert main(["leaderboard", "--checkpoints", str(checkpoints), "--out", str(tmp_path), "--no-latency"]) == 0
    out = capsys.readouterr().out
    assert "unet_efficientnet_b0" in out and "mIoU" in out and "2 rows" in out


def test_training_columns_name_every_stage_in_order() -> None:
    one_stage = {"device_name": "CPU A", "precision": "bf16-mixed", "train_seconds": 3600.0, "epochs": 10}
    assert context_columns({"model": "segnet", "training": one_stage})["trained_on"] == "CPU A"
    earlier = [
        {"stage": 1, "epochs": 150, "train_seconds": 15825.0, "device_name": "CPU A", "precision": "bf16-mixed"},
        {"stage": 2, "epochs": 6, "train_seconds": 1501.6, "device_name": "CPU B", "precision": "32-true"},
    ]
    training = {"stage": 3, "epochs": 2, "train_seconds": 500.0, "device_name": "CPU A", "precision": "32-true",
                "init_from": {"stages": earlier}, "total_train_seconds": 17826.6}  # fmt: skip
    columns = context_columns({"model": "segnet", "training": training})
    assert columns["trained_on"] == "CPU A + CPU B" and columns["train_precision"] == "bf16-mixed + 32-true"
    assert columns["train_hours"] == round(17826.6 / 3600, 2)
