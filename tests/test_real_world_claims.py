"""Claims a user relies on (issue 14): the Python floor, and what the weights digest refuses."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from segzoo.checkpoint import CheckpointError, load, load_weights, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def test_python_floor_is_stated_alike_and_holds_here() -> None:
    floor = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert floor == ">=3.11"
    assert sys.version_info >= (3, 11)  # CI's interpreter meets it
    readme = (REPO / "README.md").read_text()
    assert "Python 3.11+" in readme and not re.search(r"Python 3\.10\+", readme)
    assert re.search(r'python_version:\s*"3\.1[1-9]"', readme)  # the Space runs a supported Python too


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    config = {"model": "unet", "num_classes": 3}
    save_checkpoint(tmp_path / "ckpt", model, config)
    return tmp_path / "ckpt"


def test_weights_resaved_without_the_digest_are_refused(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    tensors = load_weights(weights)  # as written: verified
    save_file(load_file(str(weights)), str(weights), metadata={"format": "pt"})  # re-saved by another tool
    with pytest.raises(CheckpointError) as error:
        load_weights(weights)
    message = str(error.value)
    assert str(weights) in message and "segzoo_sha256" in message
    assert "save_weights" in message and "allow_unverified=True" in message  # how to proceed
    with pytest.warns(UserWarning, match="unverified"):
        unverified = load_weights(weights, allow_unverified=True)
    assert all(torch.equal(unverified[k], tensors[k]) for k in tensors)
    with pytest.raises(CheckpointError, match="segzoo_sha256"):
        load(checkpoint)  # the checkpoint loader refuses it too


def test_weights_with_a_wrong_digest_are_refused_even_when_unverified_is_allowed(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    tensors = load_file(str(weights))
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        metadata = f.metadata()
    save_file(tensors, str(weights), metadata=metadata)  # edited, digest kept
    with pytest.raises(CheckpointError, match="do not match their recorded SHA-256"):
        load_weights(weights, allow_unverified=True)
