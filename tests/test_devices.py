"""The compute recipe and the serving runtime each device gets (segzoo.devices)."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys

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


# Allocates and frees a 64 MB tensor, 15 times to warm up and 10 times counted, then prints
# what keep_freed_memory() returned and the minor page faults (in a child process: malloc's
# settings are process-wide).
_FAULTS_SCRIPT = """
import resource, sys, torch
from segzoo.devices import keep_freed_memory
applied = keep_freed_memory()
for _ in range(15):  # rounds before counting: the heap grows to its size first
    torch.ones(16 * 2**20).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(16 * 2**20).sum()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="keep_freed_memory tunes glibc's malloc")
def test_keep_freed_memory_stops_refaulting_freed_blocks() -> None:
    def faults(setting: str) -> tuple[str, int]:
        env = {**os.environ, "SEGZOO_KEEP_FREED_MEMORY": setting}
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS_SCRIPT], env=env, check=True, capture_output=True, text=True
        )
        applied, count = out.stdout.split()
        return applied, int(count)

    default_applied, default_faults = faults("0")
    kept_applied, kept_faults = faults("1")
    assert (default_applied, kept_applied) == ("False", "True")
    # glibc's default maps each 64 MB block afresh: 16,384 pages faulted in per round.
    assert default_faults > 10 * 16_000
    assert kept_faults < default_faults / 4  # kept blocks are reused: no faults once the heap is grown
