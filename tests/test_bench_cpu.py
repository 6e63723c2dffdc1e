"""benchmarks/bench_cpu.py: float32 eager against segzoo's path as served, and the README table."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_cpu.py"
MODELS = ["unet_efficientnet_b0", "fcn8s"]  # shipped CamVid checkpoints, quick to export


def load_bench_cpu():
    spec = importlib.util.spec_from_file_location("bench_cpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_bench_cpu_times_the_models_as_the_app_serves_them(tmp_path: Path, runtime: str) -> None:
    if not all((ROOT / "checkpoints" / "camvid" / m / "model.safetensors").is_file() for m in MODELS):
        pytest.skip("the shipped CamVid checkpoints are not in this checkout")
    out = tmp_path / "cpu.json"
    cmd = [sys.executable, str(SCRIPT), "--models", *MODELS, "--crop", "32", "32", "--batch", "2",
           "--train-steps", "1", "--repeats", "1", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "SEGZOO_RUNTIME": runtime, "SEGZOO_CACHE": str(tmp_path / "cache")}
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900, env=env)
    record = json.loads(out.read_text())

    assert record["device"].startswith("CPU ") and record["served_runtime"] == runtime
    assert [row["model"] for row in record["models"]] == MODELS
    for row in record["models"]:
        assert row["weights"] == "shipped checkpoint" and row["runtime"] == runtime
        assert row["latency_ms_float32"] > 0 and row["latency_ms_fast"] > 0
        assert row["label_agreement"] >= 0.995  # issue 10's bar for shipped models
        # Ratios are of the unrounded figures: allow for the rounding of those recorded.
        speedup = row["train_images_per_sec_fast"] / row["train_images_per_sec_float32"]
        assert row["train_speedup"] == pytest.approx(speedup, abs=0.02)
    if runtime == "onnxruntime":  # exported into segzoo's cache, as the app does
        assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == len(MODELS)
    compare = record["compare"]
    assert sorted(compare["names"]) == sorted(MODELS) and compare["served_runtimes"] == {runtime: len(MODELS)}
    assert compare["speedup"] == pytest.approx(compare["seconds_float32"] / compare["seconds_fast"], abs=0.02)
    table = load_bench_cpu().readme_table(record)
    assert "The app's Compare with all 2 shipped CamVid models on one frame" in table
    assert f"{len(MODELS)} by {runtime}" in table


def test_the_readme_block_is_the_table_of_the_recorded_run() -> None:
    """README's CPU-speed block is made from benchmarks/cpu.json, not edited by hand."""
    bench_cpu = load_bench_cpu()
    record = json.loads((ROOT / "benchmarks" / "cpu.json").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[
        readme.index(bench_cpu.README_START) + len(bench_cpu.README_START) : readme.index(bench_cpu.README_END)
    ]
    assert block.strip() == bench_cpu.readme_table(record).strip()
