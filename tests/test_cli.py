"""The `segzoo` command line: sub-commands, help texts and user errors."""

from __future__ import annotations

import pytest

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
