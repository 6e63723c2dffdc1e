"""Where one training step's time goes, per operator, for the models the CPU trains slowest.

    python benchmarks/profile_step.py                       # unet, unet_vgg16, segnet, fcn8s
    python benchmarks/profile_step.py --models segnet --crop 192 256 --batch 8

Each model takes the training step of ``benchmarks/bench_cpu.py`` (``training_step``) (segzoo's default compute
recipe: bf16 autocast and channels-last on CPUs with native bf16), warmed up once, then
profiled with ``torch.profiler`` over ``--steps`` steps. Operators are grouped by name
(forward and backward apart, e.g. ``aten::convolution_backward``) with their self CPU time
and share of the step. The result goes to ``benchmarks/profile_step.json`` (``--out``).
Run it on an otherwise idle machine: other work on the cores changes the shares.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench_cpu import run_header, training_step, write_record  # this folder: the step bench_cpu.py times
from torch.profiler import ProfilerActivity, profile

from segzoo.devices import compute_recipe

CLASSICS = ["unet", "unet_vgg16", "segnet", "fcn8s"]


def profile_step(name: str, crop: tuple[int, int], batch: int, steps: int, top: int) -> dict:
    recipe = compute_recipe("cpu", "auto")
    step = training_step(name, recipe, crop, batch)
    step()  # kernel set-up: not profiled
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    seconds = (time.perf_counter() - start) / steps
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "model": name,
        "precision": recipe.precision,
        "channels_last": recipe.channels_last,
        "step_seconds_profiled": round(seconds, 3),
        "ops": [
            {
                "op": e.key,
                "self_ms_per_step": round(e.self_cpu_time_total / 1000 / steps, 1),
                "share": round(e.self_cpu_time_total / total, 4),
                "calls_per_step": e.count // steps,
            }
            for e in events[:top]
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=CLASSICS)
    parser.add_argument("--crop", type=int, nargs=2, default=(192, 256), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="profiled steps per model (default: 2)")
    parser.add_argument("--top", type=int, default=15, help="operators kept per model (default: 15)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "profile_step.json")
    args = parser.parse_args()
    results = []
    for name in args.models:
        result = profile_step(name, tuple(args.crop), args.batch, args.steps, args.top)
        results.append(result)
        print(f"\n{name}: {result['step_seconds_profiled']} s per step (profiled)", flush=True)
        for op in result["ops"]:
            print(f"  {op['share']:6.1%}  {op['self_ms_per_step']:9.1f} ms  x{op['calls_per_step']:<4} {op['op']}")
    record = {
        **run_header(),
        "crop": list(args.crop),
        "batch": args.batch,
        "models": results,
    }
    print()
    write_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
