"""torch.compile against eager PyTorch for a training step on the CPU, side by side in one run.

    python benchmarks/bench_compile.py                                  # unet_resnet34
    python benchmarks/bench_compile.py --models unet_resnet34 unet_efficientnet_b0 --steps 5

For each model, with segzoo's default recipe (``segzoo.devices.compute_recipe()``), a full AdamW
step on a fixed batch of random crops (``bench_cpu.training_step``), eager and with the forward
pass through ``torch.compile`` (as ``segzoo train --compile`` runs it): the first step (for the
compiled model, most of it is compiling) and the median of ``--steps`` further steps, the two
models taking turns. The
break-even is the number of steps after which compiling has paid for itself; none when the
compiled step is not faster. Inductor's on-disk caches go to a new temporary folder, so the
first compiled step pays the whole compile, as in a fresh ``segzoo train --compile``. Writes
``benchmarks/compile.json`` with the CPU's name.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Before torch is imported: an earlier run's compiled kernels must not be reused.
INDUCTOR_CACHE = tempfile.mkdtemp(prefix="bench_compile_")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = INDUCTOR_CACHE
atexit.register(shutil.rmtree, INDUCTOR_CACHE, ignore_errors=True)

from segzoo.devices import compute_recipe  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpu import run_header, training_step, write_record  # noqa: E402


def timed(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def first_and_median_steps(steps: dict[str, Callable[[], None]], count: int) -> dict[str, tuple[float, float]]:
    """Per named step: the seconds of its first call and the median of ``count`` calls after
    it. After the first calls, the steps take turns, so the machine's speed drifting over the
    minutes of a run (by up to a third on a shared 2-core VM) slows them alike."""
    first = {name: timed(step) for name, step in steps.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(count):
        for name, step in steps.items():
            times[name].append(timed(step))
    return {name: (first[name], statistics.median(times[name])) for name in steps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["unet_resnet34"])
    parser.add_argument("--crop", type=int, nargs=2, default=(192, 256), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each, after the first")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("compile.json"))
    args = parser.parse_args()

    recipe = compute_recipe("cpu")
    result = {**run_header(), "recipe": recipe.describe(), "crop": list(args.crop), "batch": args.batch, "models": []}
    for name in args.models:
        row: dict = {"model": name}
        steps = {
            mode: training_step(name, recipe, tuple(args.crop), args.batch, compile=mode == "compiled")
            for mode in ("eager", "compiled")
        }
        for mode, (first, median) in first_and_median_steps(steps, args.steps).items():
            row[f"first_step_s_{mode}"] = round(first, 2)
            row[f"step_s_{mode}"] = round(median, 3)
        saved = row["step_s_eager"] - row["step_s_compiled"]
        extra = row["first_step_s_compiled"] - row["first_step_s_eager"]
        row["speedup"] = round(row["step_s_eager"] / row["step_s_compiled"], 2)
        row["break_even_steps"] = round(extra / saved) if saved > 0 else None
        print(json.dumps(row), flush=True)
        result["models"].append(row)
    write_record(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
