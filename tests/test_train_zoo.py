"""benchmarks/train_zoo.py's epoch plan: per CPU precision for new runs, the run's own on resume."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import segzoo
from segzoo.training.state import save_resume_state

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_zoo.py"


@pytest.fixture(scope="module")
def train_zoo():
    spec = importlib.util.spec_from_file_location("train_zoo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_new_camvid_runs_follow_the_cpu_precision(train_zoo, tmp_path):
    for model in train_zoo.CAMVID_EPOCHS:
        bf16 = train_zoo.planned_epochs("camvid", model, tmp_path / model, resume=False, float32_cpu=False)
        float32 = train_zoo.planned_epochs("camvid", model, tmp_path / model, resume=False, float32_cpu=True)
        assert bf16 == train_zoo.CAMVID_EPOCHS[model]
        assert float32 == train_zoo.CAMVID_EPOCHS_FLOAT32[model]
        # float32 is the slower path: fewer epochs in the same hours. DeepLabV3+'s bf16 plan is
        # sized to one 3-hour session, its float32 one to 3.1 h over several.
        assert 0 < float32 < bf16 or model == "deeplabv3plus_resnet50", model
    pets = train_zoo.planned_epochs("oxford_pet", "unet", tmp_path, resume=False, float32_cpu=True)
    assert pets == train_zoo.PET_EPOCHS
    fruits = train_zoo.planned_epochs("fruits_nuts", "maskrcnn_r50_fpn", tmp_path, resume=False, float32_cpu=False)
    assert fruits == train_zoo.INSTANCE_EPOCHS["fruits_nuts"]
    for float32_cpu, plan in ((False, train_zoo.INSTANCE_EPOCHS), (True, train_zoo.INSTANCE_EPOCHS_FLOAT32)):
        camvid = train_zoo.planned_epochs("camvid_instances", "maskrcnn_r50_fpn", tmp_path, False, float32_cpu)
        assert camvid == plan["camvid_instances"]
    assert 0 < train_zoo.INSTANCE_EPOCHS_FLOAT32["camvid_instances"] < train_zoo.INSTANCE_EPOCHS["camvid_instances"]


def test_a_resumed_run_keeps_its_own_epochs(train_zoo, tmp_path):
    # Started on a bf16 CPU, continued on one without: the schedule stays the one it began.
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    info = {"options": {"epochs": 150}}
    save_resume_state(tmp_path, 3, model.state_dict(), optimizer.state_dict(), {"step": 3}, info)
    assert train_zoo.planned_epochs("camvid", "unet_resnet50", tmp_path, resume=True, float32_cpu=True) == 150
    fresh = train_zoo.planned_epochs("camvid", "unet_resnet50", tmp_path, resume=False, float32_cpu=True)
    assert fresh == train_zoo.CAMVID_EPOCHS_FLOAT32["unet_resnet50"]
    # --resume where nothing was started yet: the plan for this CPU.
    empty = tmp_path / "none"
    assert (
        train_zoo.planned_epochs("camvid", "unet", empty, resume=True, float32_cpu=False)
        == train_zoo.CAMVID_EPOCHS["unet"]
    )


def test_an_interim_checkpoint_is_retrained_by_the_full_recipe(train_zoo, tmp_path):
    from segzoo.checkpoint import write_json

    out = tmp_path / "camvid" / "unet_efficientnet_b0"
    out.mkdir(parents=True)
    write_json(out / "config.json", {"model": "unet_efficientnet_b0", "interim": True})
    assert not train_zoo.already_shipped(out, interim=False)  # not evaluated yet
    write_json(out / "metrics.json", {"miou": 0.259})
    assert not train_zoo.already_shipped(out, interim=False)  # the stand-in is replaced
    assert train_zoo.already_shipped(out, interim=True)
    write_json(out / "config.json", {"model": "unet_efficientnet_b0", "interim": False})
    assert train_zoo.already_shipped(out, interim=False) and train_zoo.already_shipped(out, interim=True)


def test_models_train_in_the_order_given(train_zoo):
    planned = ["deeplabv3plus_resnet50", "pspnet_resnet50", "unet_efficientnet_b0", "unet_resnet50"]
    queue = ["unet_efficientnet_b0", "unet_resnet50", "maskrcnn_r50_fpn", "deeplabv3plus_resnet50"]
    # Another data set's model is left to its own entry of the plan.
    assert train_zoo.models_in_order(planned, queue) == [
        "unet_efficientnet_b0",
        "unet_resnet50",
        "deeplabv3plus_resnet50",
    ]
    assert train_zoo.models_in_order(planned, None) == planned
    assert train_zoo.models_in_order(planned, []) == planned


def test_every_model_option_of_the_plan_builds_its_model(train_zoo):
    # The options go to `segzoo train --model-kwargs` as JSON: a typo would only show hours
    # into a queue, when that model's turn comes.
    options = [(model, kwargs) for plan in train_zoo.MODEL_KWARGS.values() for model, kwargs in plan.items()]
    assert ("pspnet_resnet50", '{"output_stride": 16}') in options
    for model, kwargs in options:
        segzoo.create_model(model, num_classes=3, **json.loads(kwargs))


def test_the_classics_train_on_their_smaller_crops(train_zoo):
    # The model's own options follow the data set's recipe, and `segzoo train` keeps the last.
    from segzoo.cli import build_parser

    parser = build_parser()
    for model in ("unet", "segnet", "unet_vgg16", "fcn8s", "unet_resnet34"):
        recipe = train_zoo.train_recipe("camvid", model, interim=False)
        args = parser.parse_args(
            ["train", "--model", model, "--dataset", "camvid", "--data-root", "camvid", "--out", "runs/x", *recipe]
        )
        classic = model in train_zoo.CAMVID_MODEL_RECIPE
        assert args.size == ([128, 192] if classic else [192, 256]), model
        assert args.val_every == {"unet": 10, "segnet": 5, "fcn8s": 4}.get(model, 3), model
        assert args.batch_size == 8 and args.loss == "combined"


def test_train_args_come_last_and_camvid_models_are_tuned_before_their_test_score(train_zoo, tmp_path, monkeypatch):
    from segzoo.cli import build_parser

    commands: list[list[str]] = []
    monkeypatch.setattr(train_zoo, "run", commands.append)
    for name in ("ship", "record_regression", "update_readme"):
        monkeypatch.setattr(train_zoo, name, lambda *args: None)
    monkeypatch.setattr(sys, "argv", [
        "train_zoo.py", "--data", str(tmp_path), "--checkpoints", str(tmp_path / "ckpt"), "--runs", str(tmp_path),
        "--datasets", "camvid", "--models", "segnet", "--epochs", "12",
        "--train-args", "--init-from checkpoints/camvid/segnet --lr 1e-4 --ema-decay 0.99",
    ])  # fmt: skip
    assert train_zoo.main() == 0
    train, tune, evaluate, leaderboard = (command[3:] for command in commands)  # after `python -m segzoo.cli`
    assert train[-6:] == ["--init-from", "checkpoints/camvid/segnet", "--lr", "1e-4", "--ema-decay", "0.99"]
    args = build_parser().parse_args(train)
    assert args.lr == 1e-4 and args.ema_decay == 0.99 and args.epochs == 12 and args.size == [128, 192]
    assert tune[:2] == ["tune-scale", str(tmp_path / "ckpt" / "camvid" / "segnet")]
    assert evaluate[:4] == ["evaluate", str(tmp_path / "ckpt" / "camvid" / "segnet"), "--split", "test"]
    assert leaderboard[0] == "leaderboard"


def test_the_readme_table_names_every_stage_of_a_fine_tuned_model(train_zoo, tmp_path):
    import pandas as pd

    from segzoo.leaderboard import COLUMNS

    base = {**dict.fromkeys(COLUMNS), "interim": False, "partial": False}
    rows = [
        {**base, "dataset": "camvid", "model": "segnet", "miou": 0.41, "train_epochs": 156,
         "trained_on": "CPU A + CPU B", "train_precision": "bf16-mixed + 32-true"},
        {**base, "dataset": "camvid", "model": "fcn8s", "miou": 0.53, "train_epochs": 100,
         "trained_on": "CPU A", "train_precision": "bf16-mixed"},
    ]  # fmt: skip
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / "leaderboard.csv", index=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{train_zoo.README_START}\n{train_zoo.README_END}\n{train_zoo.THINGS_START}\n"
                      f"{train_zoo.THINGS_END}\n")  # fmt: skip
    train_zoo.update_readme(readme, tmp_path / "leaderboard.csv", tmp_path / "checkpoints")
    lines = readme.read_text().splitlines()
    (segnet,) = [line for line in lines if "`segnet`" in line]
    (fcn8s,) = [line for line in lines if "`fcn8s`" in line]
    assert segnet.endswith("156, bf16 + float32 |  |") and fcn8s.endswith("100, bf16 |  |")
    assert any(line.startswith("Trained on: CPU A; CPU B. ") for line in lines)
