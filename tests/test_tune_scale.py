"""`segzoo tune-scale`: the scale chosen on the validation split, and every path that runs at it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segzoo.cli import main
from segzoo.evaluate import evaluate_checkpoint, score_checkpoint
from segzoo.export import export_metadata
from segzoo.inference import inference_scale, inference_short_side
from segzoo.leaderboard import _input_size
from segzoo.training import TrainConfig, fit
from segzoo.training.synthetic import make_synthetic_folder
from segzoo.tune_scale import tune_scale


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tune_scale")
    data = make_synthetic_folder(root / "data", num_train=4, num_val=4, size=(48, 64), seed=3)
    out = root / "ckpt"
    fit(TrainConfig(model="unet", model_kwargs={"base_channels": 8}, dataset="folder", data_root=str(data),
                    size=(48, 48), short_side=48, epochs=1, batch_size=2, out=str(out), progress=False))  # fmt: skip
    return out


def test_the_best_validation_scale_is_recorded_and_then_used(checkpoint: Path, capsys) -> None:
    assert main(["tune-scale", str(checkpoint), "--factors", "1", "0.5", "0.75", "--no-progress"]) == 0
    assert "runs at a short side of" in capsys.readouterr().out
    config = json.loads((checkpoint / "config.json").read_text())
    record = config["scale_tuning"]
    assert record["split"] == "val" and record["trained_short_side"] == 48 and config["short_side"] == 48
    scores = record["miou_by_short_side"]
    assert set(scores) == {"48", "36", "24"}
    # Each recorded score is what evaluation gives at that scale, and the best one is chosen.
    for side, miou in scores.items():
        assert score_checkpoint(checkpoint, "val", progress=False, short_side=int(side))["miou"] == miou
    best = max(scores.values())
    assert scores[str(record["chosen"])] == best and config["inference_short_side"] == record["chosen"]
    assert all(int(side) <= record["chosen"] for side, miou in scores.items() if miou == best)  # ties: larger
    # `segzoo evaluate` now runs at the chosen scale, still scoring every full-resolution pixel.
    metrics = evaluate_checkpoint(checkpoint, split="val", out=checkpoint / "val_metrics.json", progress=False)
    assert metrics["short_side"] == record["chosen"] and metrics["miou"] == best
    assert np.array(metrics["confusion_matrix"]).sum() == 4 * 48 * 64


def test_photos_the_leaderboard_and_onnx_metadata_follow_the_chosen_scale() -> None:
    config = {"dataset": "camvid", "short_side": 360, "inference_short_side": 180, "model": "segnet",
              "num_classes": 11, "class_names": ["c"] * 11, "mean": [0.5] * 3, "std": [0.25] * 3}  # fmt: skip
    assert inference_short_side(config) == 180
    assert inference_scale(np.zeros((720, 960, 3), np.uint8), config) == 240  # longer side at a short side of 180
    assert inference_scale(np.zeros((100, 120, 3), np.uint8), config) == 120  # small photos are not upscaled
    assert _input_size(config) == (180, 240)  # latency is measured at the size the model runs at
    assert json.loads(export_metadata(config)["short_side"]) == 180
    untuned = {k: v for k, v in config.items() if k != "inference_short_side"}
    assert inference_short_side(untuned) == 360 and _input_size(untuned) == (360, 480)
    # Oxford-IIIT Pet models run at a short side of 160 on the 256x256 standard photo.
    assert _input_size({"dataset": "oxford_pet", "short_side": 160}) == (160, 160)


def test_bad_requests_are_refused_before_any_work(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="validation split"):
        tune_scale(checkpoint, split="test")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        tune_scale(checkpoint, factors=[1.5])
    native = tmp_path / "native"
    native.mkdir()
    config = json.loads((checkpoint / "config.json").read_text())
    (native / "config.json").write_text(json.dumps({**config, "short_side": None}))
    with pytest.raises(ValueError, match="own size"):
        tune_scale(native)
    assert main(["tune-scale", "hf://someone/model"]) != 0
