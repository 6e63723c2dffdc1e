"""glibc's default malloc against segzoo's ``keep_freed_memory``, side by side in one run.

    python benchmarks/bench_allocator.py                     # two models, 2 rounds
    python benchmarks/bench_allocator.py --models unet_resnet34 --steps 5 --rounds 3

For each model, a fresh process times training steps (forward, cross-entropy, backward,
AdamW) on a fixed random batch with segzoo's compute recipe for this CPU, once with malloc as
it is and once after ``segzoo.devices.keep_freed_memory()`` (what ``segzoo train`` and
``segzoo evaluate`` call). The two alternate, ``--rounds`` times, so drift in the machine's
speed falls on both. Each process reports its median step time, its CPU time in user and
kernel mode and its minor page faults over the timed steps, and its peak resident memory.
With ``--pets DIR`` (the Oxford-IIIT Pet sample), it also times what the steps leave out:
whole ``segzoo train`` runs of the pets recipe's ``unet`` (base 32, batch 16 at 160x160, data
augmented in memory) for ``--epochs`` epochs of ``--train-batches`` batches, the same two
ways, and compares the last epoch's training images/s from each run's ``history.csv``.

Results go to ``benchmarks/allocator.json`` with the CPU's name and thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = ["unet_resnet34", "unet_efficientnet_b0"]


def child(model: str, crop: tuple[int, int], batch: int, steps: int) -> dict[str, Any]:
    """One model's steps in this process (run by the parent with ``--child``; its
    ``SEGZOO_KEEP_FREED_MEMORY`` decides the setting, as for ``segzoo train``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_cpu import training_step

    from segzoo.devices import compute_recipe, keep_freed_memory

    applied = keep_freed_memory()
    step = training_step(model, compute_recipe("cpu"), crop, batch)
    step()  # the first step sets up kernels and the heap: not timed
    before, times = resource.getrusage(resource.RUSAGE_SELF), []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "keep_freed_memory": applied,
        "step_seconds": round(statistics.median(times), 3),
        "user_seconds": round(after.ru_utime - before.ru_utime, 2),
        "system_seconds": round(after.ru_stime - before.ru_stime, 2),
        "minor_faults": after.ru_minflt - before.ru_minflt,
        "peak_rss_mb": round(after.ru_maxrss / 1024),
    }


def setting_env(keep: bool) -> dict[str, str]:
    """The environment of a measured process: with or without keep_freed_memory."""
    return {**os.environ, "SEGZOO_KEEP_FREED_MEMORY": "1" if keep else "0"}


def run_child(args: argparse.Namespace, model: str, keep: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", model, "--steps", str(args.steps),
           "--batch", str(args.batch), "--crop", *map(str, args.crop)]  # fmt: skip
    done = subprocess.run(cmd, env=setting_env(keep), check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_training(args: argparse.Namespace, keep: bool, out: Path) -> dict[str, Any]:
    """One ``segzoo train`` run of the pets recipe; its last epoch's figures."""
    from segzoo.training import read_history

    cmd = [sys.executable, "-m", "segzoo.cli", "train", "--model", "unet", "--dataset", "oxford_pet",
           "--data-root", str(args.pets), "--dataset-option", "mode=trimap", "--size", "160", "160",
           "--short-side", "160", "--batch-size", "16", "--loss", "ce", "--seed", "0",
           "--model-kwargs", '{"base_channels": 32}', "--epochs", str(args.epochs),
           "--limit-train-batches", str(args.train_batches), "--limit-val-images", "4",
           "--out", str(out), "--overwrite", "--no-progress"]  # fmt: skip
    subprocess.run(cmd, env=setting_env(keep), check=True, capture_output=True, text=True)
    last = read_history(out)[-1]
    return {
        "train_images_per_sec": round(float(last["train_images_per_sec"]), 3),
        "train_seconds": round(float(last["train_seconds"]), 1),
        "cpu_seconds": round(float(last["cpu_seconds"]), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--crop", type=int, nargs=2, default=(192, 256), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per model and setting, alternating")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "allocator.json")
    parser.add_argument("--pets", type=Path, help="Oxford-IIIT Pet folder: also time whole `segzoo train` runs")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per `segzoo train` run (the last is timed)")
    parser.add_argument("--train-batches", type=int, default=8, help="batches per epoch of those runs")
    parser.add_argument("--child", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, tuple(args.crop), args.batch, args.steps)))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_cpu import run_header, write_record

    from segzoo.devices import compute_recipe, device_name

    recipe = compute_recipe("cpu")
    print(f"{device_name('cpu')}; recipe: {recipe.describe()}", flush=True)
    rows = []
    for model in args.models:
        runs: dict[str, list[dict[str, Any]]] = {"default": [], "keep_freed_memory": []}
        for _ in range(args.rounds):
            runs["default"].append(run_child(args, model, keep=False))
            runs["keep_freed_memory"].append(run_child(args, model, keep=True))
        if not all(r["keep_freed_memory"] for r in runs["keep_freed_memory"]):
            raise SystemExit("keep_freed_memory() did not take on this machine (not glibc?)")
        default = statistics.median(r["step_seconds"] for r in runs["default"])
        kept = statistics.median(r["step_seconds"] for r in runs["keep_freed_memory"])
        row = {"model": model, "step_seconds_default": default, "step_seconds_kept": kept,
               "speedup": round(default / kept, 2), "runs": runs}  # fmt: skip
        print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
        rows.append(row)
    training = None
    if args.pets:
        import tempfile

        runs = {"default": [], "keep_freed_memory": []}
        with tempfile.TemporaryDirectory() as scratch:
            for _ in range(args.rounds):
                for setting, keep in (("default", False), ("keep_freed_memory", True)):
                    runs[setting].append(run_training(args, keep, Path(scratch) / setting))
        default = statistics.median(r["train_images_per_sec"] for r in runs["default"])
        kept = statistics.median(r["train_images_per_sec"] for r in runs["keep_freed_memory"])
        training = {"recipe": "oxford_pet unet (base 32), batch 16 at 160x160",
                    "images_per_sec_default": default, "images_per_sec_kept": kept,
                    "speedup": round(kept / default, 2), "runs": runs}  # fmt: skip
        print(json.dumps({k: v for k, v in training.items() if k != "runs"}), flush=True)
    result = {
        "benchmark": "glibc malloc default against keep_freed_memory, training steps and segzoo train runs",
        **run_header(),
        "recipe": recipe.describe(),
        "crop": list(args.crop),
        "batch": args.batch,
        "steps": args.steps,
        "rounds": args.rounds,
        "models": rows,
        "segzoo_train": training,
    }
    write_record(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
