"""Every CPU recipe segzoo's probe chooses between, side by side in one run, model by model.

    python benchmarks/bench_cpu_recipes.py                              # every semantic model
    python benchmarks/bench_cpu_recipes.py --models unet fcn8s --train-steps 3

For each model and each recipe of :func:`segzoo.devices.cpu_layout_recipes`
(float32 NCHW, float32 channels-last and, with native bf16, bf16 autocast channels-last):
training images/s (a full AdamW step on a batch of random crops, as ``bench_cpu.py`` times
it) and the latency of one 360x480 photo (forward and arg-max, median of ``--repeats``).
Beside them, what the probe (:func:`segzoo.devices.cpu_layout_timings`) measured and the
recipe ``auto`` picks, so one can check that the probe's one-second verdict matches the
models. Writes ``benchmarks/cpu_recipes.json`` with the CPU's name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import segzoo
from segzoo.devices import compute_recipe, cpu_layout_recipes, cpu_layout_timings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpu import latency_and_labels, run_header, train_images_per_sec, write_record  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="default: every registered semantic model")
    parser.add_argument("--crop", type=int, nargs=2, default=[128, 192], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps per recipe (0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="timed photos per recipe")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("cpu_recipes.json"))
    args = parser.parse_args()

    names = args.models or segzoo.model_names(task="semantic")
    recipes = cpu_layout_recipes()
    photo = torch.randn(1, 3, 360, 480)
    chosen = compute_recipe("cpu")
    result = {
        **run_header(),
        "crop": args.crop,
        "batch": args.batch,
        "probe_seconds": cpu_layout_timings(),
        "auto": chosen.describe(),
        "models": [],
    }
    print(f"auto: {chosen.describe()}; probe: {result['probe_seconds']}", flush=True)
    for name in names:
        row: dict = {"model": name}
        for layout, recipe in recipes.items():
            if args.train_steps:
                row[f"train_images_per_sec_{layout}"] = round(
                    train_images_per_sec(name, recipe, tuple(args.crop), args.batch, args.train_steps), 3
                )
            torch.manual_seed(0)
            model = segzoo.create_model(name, num_classes=11).eval()
            row[f"latency_ms_{layout}"] = round(latency_and_labels(model, recipe, [photo], args.repeats)[0], 1)
        row["fastest_latency"] = min(recipes, key=lambda layout: row[f"latency_ms_{layout}"])
        print(json.dumps(row), flush=True)
        result["models"].append(row)
    write_record(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
