"""The compute recipe and the serving runtime each device gets (segzoo.devices)."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segzoo import devices
from segzoo.devices import CPU_LAYOUTS, ComputeRecipe, compute_recipe, resolve_precision, resolve_runtime

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


@pytest.fixture
def probed_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path):  # noqa: ANN201
    """A CPU whose probe reports the timings the test sets (``probed_cpu.timings``) and counts
    how often it ran; the probe's cache goes to ``tmp_path``."""

    class Probe:
        timings: dict[str, float] = {}
        native_bf16 = True
        runs = 0

    def fake_timings() -> dict[str, float]:
        Probe.runs += 1
        return {name: t for name, t in Probe.timings.items() if Probe.native_bf16 or not name.startswith("bf16")}

    monkeypatch.delenv("SEGZOO_CPU_BF16", raising=False)
    monkeypatch.delenv("SEGZOO_CPU_PROBE", raising=False)
    monkeypatch.setenv("SEGZOO_CACHE", str(tmp_path))
    monkeypatch.setattr(devices, "_time_cpu_layouts", fake_timings)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: Probe.native_bf16)
    devices.cpu_layout_timings.cache_clear()
    yield Probe
    devices.cpu_layout_timings.cache_clear()


@pytest.mark.parametrize(
    "native_bf16, float32, channels_last, bf16, expected",
    [
        (True, 1.0, 0.6, 0.3, ("bf16-mixed", True)),  # an AMX Xeon or a Zen 4: bf16 wins
        (True, 1.0, 0.6, 0.58, ("32-true", True)),  # bf16 within the margin: float32's exact results
        (True, 1.0, 0.6, 0.8, ("32-true", True)),  # a Xeon VM with avx512_bf16 but no AMX: bf16 loses
        (True, 1.0, 0.95, 1.2, ("32-true", False)),  # channels-last within the margin: NCHW
        (False, 1.0, 0.6, 0.1, ("32-true", True)),  # no native bf16: bf16 is never timed nor chosen
        (False, 1.0, 1.3, 0.1, ("32-true", False)),
    ],
)
def test_auto_takes_the_recipe_the_probe_finds_fastest(
    probed_cpu, native_bf16: bool, float32: float, channels_last: float, bf16: float, expected: tuple[str, bool]
) -> None:
    probed_cpu.native_bf16 = native_bf16
    probed_cpu.timings = {"float32": float32, "float32-channels-last": channels_last, "bf16-channels-last": bf16}
    recipe = compute_recipe("cpu")
    assert (recipe.precision, recipe.channels_last) == expected
    # Forced parts stay forced; a forced float32 still gets the layout the probe chose for it.
    assert compute_recipe("cpu", "bf16-mixed").channels_last
    assert compute_recipe("cpu", "32-true", "off").channels_last is False
    assert compute_recipe("cpu", "32-true").channels_last == (channels_last < devices.PROBE_MARGIN * float32)


def test_probe_runs_once_per_machine_and_environment_overrides_it(probed_cpu, monkeypatch, tmp_path) -> None:
    probed_cpu.timings = {"float32": 1.0, "float32-channels-last": 0.6, "bf16-channels-last": 0.8}
    assert compute_recipe("cpu").precision == "32-true" and probed_cpu.runs == 1
    devices.cpu_layout_timings.cache_clear()  # a new process: reads the cache file
    assert compute_recipe("cpu").precision == "32-true" and probed_cpu.runs == 1
    (tmp_path / "cpu_probe.json").write_text("{not json")  # a damaged cache: probe again, rewrite it
    devices.cpu_layout_timings.cache_clear()
    assert devices.cpu_layout_timings()["bf16-channels-last"] == 0.8 and probed_cpu.runs == 2
    assert json.loads((tmp_path / "cpu_probe.json").read_text())
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)  # another thread count: another key
    devices.cpu_layout_timings.cache_clear()
    devices.cpu_layout_timings()
    assert probed_cpu.runs == 3 and len(json.loads((tmp_path / "cpu_probe.json").read_text())) == 2

    monkeypatch.setenv("SEGZOO_CPU_PROBE", "0")  # the flags alone: native bf16 -> bf16, float32 NCHW
    devices.cpu_layout_timings.cache_clear()
    assert compute_recipe("cpu").precision == "bf16-mixed" and not compute_recipe("cpu", "32-true").channels_last
    monkeypatch.delenv("SEGZOO_CPU_PROBE")
    monkeypatch.setenv("SEGZOO_CPU_BF16", "1")  # forced: bf16 whatever the probe says
    assert compute_recipe("cpu").precision == "bf16-mixed"
    assert probed_cpu.runs == 3


def test_the_real_probe_times_every_layout_this_cpu_can_run(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SEGZOO_CACHE", str(tmp_path))
    timings = devices._time_cpu_layouts(rounds=1)
    expected = set(CPU_LAYOUTS) if devices.cpu_has_native_bf16() else {"float32", "float32-channels-last"}
    assert set(timings) == expected and all(0 < seconds < 60 for seconds in timings.values())


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


def test_device_name_tells_apart_cpus_that_share_a_generic_name() -> None:
    devices.cpu_model_name.cache_clear()
    name = devices.device_name("cpu")
    assert name.startswith("CPU ") and f"({torch.get_num_threads()} threads" in name
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        pytest.skip("no /proc/cpuinfo here")
    if "cpu family" in cpuinfo:  # x86: "Intel(R) Xeon(R) Processor, family 6 model 207"
        family = next(line for line in cpuinfo.splitlines() if line.startswith("cpu family")).split(":")[1].strip()
        assert f", family {family} model " in name
