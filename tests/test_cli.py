"""The `segzoo` command line: sub-commands, help texts and user errors."""

from __future__ import annotations

import argparse

import pytest

import segzoo.train
from segzoo.cli import build_parser, main


def test_commands_are_listed(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "leaderboard"):
        assert command in out


def test_train_help_lists_every_option(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    out = capsys.readouterr().out
    for option in (
        "--model", "--model-kwargs", "--dataset", "--data-root", "--epochs", "--loss", "--out", "--size",
        "--batch-size", "--lr", "--class-weights", "--seed", "--precision", "--devices", "--strategy",
        "--accelerator", "--early-stopping", "--channels-last", "--data-on-gpu", "--num-workers",
        "--limit-train-batches", "--resume", "--interim", "--encoder-weights", "--backend",
    ):  # fmt: skip
        assert option in out, option
    assert "camvid" in out and "360x480" in out  # per-data-set defaults


@pytest.mark.parametrize(
    "command, expected",
    [
        (["evaluate", "--help"], "--split"),
        (["predict", "--help"], "--alpha"),
        (["leaderboard", "--help"], "--checkpoints"),
    ],
)
def test_subcommand_help(command, expected, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(command)
    assert expected in capsys.readouterr().out


def test_user_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["train", "--model", "no_such_model", "--dataset", "camvid", "--data-root", str(tmp_path)]) == 1
    assert "unknown model" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing"), "x.png", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_model_kwargs_rejected_by_the_parser(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--model", "unet", "--dataset", "camvid", "--data-root", "x",
                                   "--model-kwargs", "[1, 2]"])  # fmt: skip
    assert "JSON object" in capsys.readouterr().err


def _train_args(*extra: str) -> list[str]:
    return ["--dataset", "camvid", "--data-root", "x", *extra]


def _train_parser() -> argparse.ArgumentParser:
    subparsers = argparse.ArgumentParser().add_subparsers()
    segzoo.train.add_subparser(subparsers)
    return subparsers.choices["train"]


def test_train_builds_each_task_its_typed_config() -> None:
    from segzoo.instance.train import InstanceTrainConfig
    from segzoo.train import config_from_args
    from segzoo.training import TrainConfig

    parser = _train_parser()
    args = parser.parse_args(
        _train_args(
            "--model",
            "unet",
            "--size",
            "64",
            "96",
            "--dataset-option",
            "a=1",
            "--no-augment",
            "--encoder-weights",
            "none",
            "--ema-decay",
            "0.99",
        )
    )
    cfg = config_from_args(args, parser)
    assert isinstance(cfg, TrainConfig) and cfg.size == (64, 96) and cfg.dataset_options == {"a": 1}
    assert cfg.augment is False and cfg.encoder_weights is None and cfg.ema_decay == 0.99
    args = parser.parse_args(_train_args("--model", "maskrcnn_r50_fpn", "--size", "64", "96", "--max-iters", "5"))
    cfg = config_from_args(args, parser)
    assert isinstance(cfg, InstanceTrainConfig) and cfg.max_iters == 5 and cfg.resolved().size == 96


@pytest.mark.parametrize(
    "model, extra, refused",
    [
        ("maskrcnn_r50_fpn", ["--loss", "dice", "--devices", "2"], "--devices, --loss"),
        ("maskrcnn_r50_fpn", ["--no-augment"], "--no-augment"),
        ("unet", ["--backend", "torchvision"], "--backend"),
        ("unet", ["--max-iters", "10"], "--max-iters"),
    ],
)
def test_train_refuses_options_the_task_does_not_have(model, extra, refused, capsys) -> None:
    assert main(["train", *_train_args("--model", model, *extra)]) == 1
    err = capsys.readouterr().err
    assert f"{refused}: not an option for {model}" in err and err.count("\n") == 1


def test_train_option_defaults_are_the_configs() -> None:
    """The help text's defaults are the ones that apply: options not given take the config's."""
    import dataclasses

    from segzoo.instance.train import InstanceTrainConfig
    from segzoo.training import TrainConfig

    parser = _train_parser()
    flags = set(vars(parser.parse_args(["--model", "unet", "--dataset", "camvid", "--data-root", "x"])))
    checked = 0
    for config_class in (TrainConfig, InstanceTrainConfig):
        for f in dataclasses.fields(config_class):
            if f.name not in flags or f.name in ("model", "dataset", "data_root"):
                continue  # set by the API only, or required
            default = parser.get_default(f.name)
            expected = None if f.name == "encoder_weights" and default == "none" else default
            own = f.default_factory() if f.default is dataclasses.MISSING else f.default
            assert own == expected, (config_class.__name__, f.name, default, own)
            checked += 1
    assert checked > 50
