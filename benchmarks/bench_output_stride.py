"""PSPNet at its paper's output stride 8 against 16, side by side in one run.

    python benchmarks/bench_output_stride.py
    python benchmarks/bench_output_stride.py --rounds 3 --steps 3

``pspnet_resnet50`` dilates the last two ResNet stages at output stride 8 and only the last
at 16 (the ``output_stride`` model option): the same weights on features of a quarter the
area. The CamVid zoo trains and serves it at 16 (``benchmarks/train_zoo.py``); this measures
what that buys on this CPU. Per round, for each stride in turn: the median of ``--steps``
training steps (``bench_cpu.training_step``: AdamW, cross-entropy, batch ``--batch`` of
``--crop`` random crops, segzoo's compute recipe for this CPU, malloc as ``segzoo train`` sets
it) after one untimed step, then the median latency of one 360x480 photo (forward and arg-max,
``--repeats`` passes). The strides alternate for ``--rounds`` rounds, so drift in the machine's
speed falls on both. Results go to ``benchmarks/output_stride.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from bench_cpu import (  # this folder: the step bench_cpu.py times
    latency_and_labels,
    run_header,
    time_steps,
    training_step,
    write_record,
)

import segzoo
from segzoo.devices import compute_recipe, keep_freed_memory

MODEL = "pspnet_resnet50"
STRIDES = (8, 16)


def step_seconds(crop: tuple[int, int], batch: int, steps: int, output_stride: int) -> list[float]:
    step = training_step(MODEL, compute_recipe("cpu", "auto"), crop, batch, output_stride=output_stride)
    return time_steps(step, steps)


def latency_ms(output_stride: int, repeats: int) -> float:
    torch.manual_seed(0)
    model = segzoo.create_model(MODEL, num_classes=11, output_stride=output_stride).eval()
    ms, _ = latency_and_labels(model, compute_recipe("cpu", "auto"), [torch.randn(1, 3, 360, 480)], repeats)
    return ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, nargs=2, default=(192, 256), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per stride and round")
    parser.add_argument("--repeats", type=int, default=3, help="timed forward passes per stride and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two strides")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output_stride.json")
    args = parser.parse_args()
    keep_freed_memory()
    steps: dict[int, list[float]] = {s: [] for s in STRIDES}
    latencies: dict[int, list[float]] = {s: [] for s in STRIDES}
    for round_ in range(args.rounds):
        for stride in STRIDES:
            steps[stride] += step_seconds(tuple(args.crop), args.batch, args.steps, stride)
            latencies[stride].append(latency_ms(stride, args.repeats))
            print(f"round {round_ + 1}, output stride {stride}: steps {steps[stride][-args.steps :]} s, "
                  f"latency {latencies[stride][-1]:.0f} ms", flush=True)  # fmt: skip
    rows = [
        {
            "output_stride": s,
            "step_seconds": [round(t, 3) for t in steps[s]],
            "step_seconds_median": round(statistics.median(steps[s]), 3),
            "latency_ms_median": round(statistics.median(latencies[s]), 1),
        }
        for s in STRIDES
    ]
    record = {
        "model": MODEL,
        **run_header(),
        "recipe": compute_recipe("cpu", "auto").describe(),
        "crop": list(args.crop),
        "batch": args.batch,
        "strides": rows,
        "step_speedup_16_over_8": round(rows[0]["step_seconds_median"] / rows[1]["step_seconds_median"], 2),
        "latency_speedup_16_over_8": round(rows[0]["latency_ms_median"] / rows[1]["latency_ms_median"], 2),
    }
    print(json.dumps({k: v for k, v in record.items() if "speedup" in k}))
    write_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
