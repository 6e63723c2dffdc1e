"""benchmarks/bench_cpu_recipes.py: every CPU recipe the probe chooses between, timed per model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from segzoo.devices import CPU_LAYOUTS, cpu_has_native_bf16

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cpu_recipes.py"


def test_bench_cpu_recipes_times_each_recipe_this_cpu_runs(tmp_path: Path) -> None:
    out = tmp_path / "recipes.json"
    cmd = [sys.executable, str(SCRIPT), "--models", "unet_efficientnet_b0", "--crop", "32", "32", "--batch", "2",
           "--train-steps", "1", "--repeats", "1", "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    record = json.loads(out.read_text())
    layouts = [name for name in CPU_LAYOUTS if cpu_has_native_bf16() or not name.startswith("bf16")]
    assert record["device"].startswith("CPU ") and record["auto"].startswith(record["device"])
    assert set(record["probe_seconds"]) == set(layouts)
    (row,) = record["models"]
    for layout in layouts:
        assert row[f"train_images_per_sec_{layout}"] > 0 and row[f"latency_ms_{layout}"] > 0
    assert row["fastest_latency"] == min(layouts, key=lambda layout: row[f"latency_ms_{layout}"])
