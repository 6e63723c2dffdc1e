from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import segzoo
from segzoo.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_weights,
    save_checkpoint,
)


def _config() -> dict:
    return {
        "model": "unet",
        "model_kwargs": {"base_channels": 4, "depth": 2},
        "task": "semantic",
        "num_classes": 3,
        "class_names": ["a", "b", "c"],
        "palette": [[0, 0, 0], [255, 0, 0], [0, 255, 0]],
        "ignore_index": None,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "input_size": [32, 32],
        "dataset": "synthetic",
    }


@pytest.fixture()
def checkpoint(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    model = segzoo.create_model("unet", num_classes=3, base_channels=4, depth=2).eval()
    return save_checkpoint(tmp_path / "ckpt", model, _config()), model


def test_round_trip_gives_the_same_predictions(checkpoint: tuple[Path, torch.nn.Module]) -> None:
    directory, model = checkpoint
    loaded, config = segzoo.load(directory)
    assert config["segzoo_version"] == segzoo.__version__
    x = torch.randn(1, 3, 20, 28)
    # Weights were stored in half precision: compare with the model rounded the same way.
    rounded = {k: (v.half().float() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    model.load_state_dict(rounded)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
    assert not loaded.training


def test_values_beyond_float16_range_are_stored_in_float32(tmp_path: Path) -> None:
    """A running variance past float16's 65,504 (batch norm after a scale-invariant layer whose
    outputs grew) is stored in float32, not as inf, which would silence its channel; the other
    tensors stay float16, and validation rounds exactly what is stored."""
    from segzoo.training.validation import weights_rounded_to_half

    model = segzoo.create_model("unet", num_classes=3, base_channels=4, depth=2).eval()
    conv, bn = model.net.stem[0], model.net.stem[1]
    with torch.no_grad():
        conv.weight.mul_(1000.0)  # outputs 1000x larger: their variance 1e6x
        bn.running_mean.mul_(1000.0)
        bn.running_var.fill_(1e5)
    x = torch.randn(1, 3, 20, 28)
    directory = save_checkpoint(tmp_path / "ckpt", model, _config())
    stored = load_weights(directory / "model.safetensors")
    assert stored["net.stem.1.running_var"].dtype == torch.float32
    assert torch.equal(stored["net.stem.1.running_var"], bn.running_var)
    assert {v.dtype for k, v in stored.items() if v.is_floating_point() and k != "net.stem.1.running_var"} == {
        torch.float16
    }
    loaded, _ = segzoo.load(directory)
    with torch.no_grad(), weights_rounded_to_half(model):
        assert torch.equal(model.net.stem[1].running_var, bn.running_var)
        expected = model(x)
    with torch.no_grad():
        assert torch.isfinite(expected).all() and torch.allclose(loaded(x), expected, atol=1e-5)


def test_loading_weights_that_are_not_finite_warns(tmp_path: Path) -> None:
    model = segzoo.create_model("unet", num_classes=3, base_channels=4, depth=2).eval()
    with torch.no_grad():
        model.net.stem[1].running_var[0] = float("inf")  # as an older segzoo stored an overflow
    directory = save_checkpoint(tmp_path / "ckpt", model, _config())
    with pytest.warns(UserWarning, match=r"net\.stem\.1\.running_var hold inf or NaN"):
        segzoo.load(directory)


def test_no_temporary_files_left(checkpoint: tuple[Path, torch.nn.Module]) -> None:
    directory, _ = checkpoint
    assert sorted(p.name for p in directory.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]


def test_truncated_weights_name_the_file(checkpoint: tuple[Path, torch.nn.Module]) -> None:
    directory, _ = checkpoint
    weights = directory / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=str(weights)):
        segzoo.load(directory)


def test_tampered_weights_are_detected(checkpoint: tuple[Path, torch.nn.Module]) -> None:
    directory, _ = checkpoint
    weights = directory / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside the last tensor's data
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="modified"):
        load_weights(weights)


def test_corrupt_config_names_the_file(checkpoint: tuple[Path, torch.nn.Module]) -> None:
    directory, _ = checkpoint
    (directory / CONFIG_FILE).write_text('{"model": "unet", ')
    with pytest.raises(CheckpointError, match=CONFIG_FILE):
        segzoo.load(directory)


def test_weights_that_do_not_fit_the_config(checkpoint: tuple[Path, torch.nn.Module]) -> None:
    directory, _ = checkpoint
    config = json.loads((directory / CONFIG_FILE).read_text())
    config["num_classes"] = 5
    (directory / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit"):
        segzoo.load(directory)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        segzoo.load(tmp_path / "nope")


def test_pickle_files_are_never_read(checkpoint: tuple[Path, torch.nn.Module]) -> None:
    """A pickle dropped in place of the weights is rejected, not executed."""
    directory, model = checkpoint
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="corrupt"):
        segzoo.load(directory)
