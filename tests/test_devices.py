"""The compute recipe and the serving runtime each device gets (segzoo.devices)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from segzoo.devices import ComputeRecipe, compute_recipe, resolve_precision, resolve_runtime

CPU_FLOAT32 = ComputeRecipe(torch.device("cpu"), "32-true", channels_last=False)
CPU_BF16 = ComputeRecipe(torch.device("cpu"), "bf16-mixed", channels_last=True)


@pytest.mark.parametrize("bf16, precision, channels_last", [("1", "bf16-mixed", True), ("0", "32-true", False)])
def test_cpu_recipe_follows_native_bf16(
    monkeypatch: pytest.MonkeyPatch, bf16: str, precision: str, channels_last: bool
) -> None:
    monkeypatch.setenv("SEGZOO_CPU_BF16", bf16)
    recipe = compute_recipe("cpu")
    assert (recipe.precision, recipe.channels_last) == (precision, channels_last)
    assert compute_recipe("cpu", "32-true").precision == "32-true"  # forced, whatever the CPU
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", "cpu")


def test_runtime_auto_is_onnxruntime_only_for_float32_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGZOO_RUNTIME", raising=False)
    assert importlib.util.find_spec("onnxruntime") is not None  # a requirement
    assert resolve_runtime("auto", CPU_FLOAT32) == "onnxruntime"
    assert resolve_runtime("auto", CPU_BF16) == "torch"  # bf16 autocast beats onnxruntime's float32
    gpu = ComputeRecipe(torch.device("cuda"), "bf16-mixed", channels_last=True)
    assert resolve_runtime("auto", gpu) == "torch"
    assert (
        resolve_runtime("torch", CPU_FLOAT32) == "torch" and resolve_runtime("onnxruntime", CPU_BF16) == "onnxruntime"
    )
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # onnxruntime not installed
    assert resolve_runtime("auto", CPU_FLOAT32) == "torch"


def test_runtime_environment_override_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGZOO_RUNTIME", "torch")
    assert resolve_runtime("auto", CPU_FLOAT32) == "torch"
    assert resolve_runtime("onnxruntime", CPU_FLOAT32) == "onnxruntime"  # an explicit choice wins
    monkeypatch.setenv("SEGZOO_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match="SEGZOO_RUNTIME must be one of"):
        resolve_runtime("auto", CPU_FLOAT32)
    with pytest.raises(ValueError, match="runtime must be one of"):
        resolve_runtime("openvino", CPU_FLOAT32)
