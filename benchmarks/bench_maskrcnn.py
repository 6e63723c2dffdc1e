"""Mask R-CNN on the CPU: float32 against bf16 autocast, side by side in one run.

    python benchmarks/bench_maskrcnn.py --data ../shared/datasets/fruits-nuts
    python benchmarks/bench_maskrcnn.py --dataset camvid_instances --data ../shared/datasets/camvid \
        --size 480 --precisions float32 --out benchmarks/maskrcnn_camvid_float32.json

On the fruits-nuts photos, or another instance data set's (``--dataset``; real images and
targets, torchvision backend, the trainer's SGD step), for each precision in this process one
after the other (``--precisions``: one alone sizes a training run on a CPU where the other
is emulated and slow):

* **training**: seconds per step (forward with the losses, backward, SGD) over ``--steps``
  steps after one untimed step, batch ``--batch`` at longest side ``--size``, from the same
  initial weights;
* **losses**: the first step's loss terms, to see that autocast computes the same losses;
* **latency**: one photo, eval mode, median of ``--repeats``;
* with ``--checkpoint`` (a trained Mask R-CNN), how many of its detections above 0.5 on the
  val photos the two precisions agree on (same class, mask IoU >= 0.5).

Ops without a bf16 kernel run in float32 under autocast (torchvision registers CPU autocast
for roi_align and nms), so the figures include any such fall-back. Results go to
``benchmarks/maskrcnn_cpu.json`` with the CPU's name.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import segzoo
from segzoo.data import get_instance_dataset
from segzoo.data.instances import collate_instances
from segzoo.devices import ComputeRecipe, device_name
from segzoo.training.optim import parameter_groups

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {
    "float32": ComputeRecipe(torch.device("cpu"), "32-true", channels_last=False),
    "bf16": ComputeRecipe(torch.device("cpu"), "bf16-mixed", channels_last=False),
}


def train_steps(model: torch.nn.Module, batch: tuple, recipe: ComputeRecipe, steps: int) -> tuple[float, dict]:
    """Median seconds per training step, and the first step's loss terms."""
    optimizer = torch.optim.SGD(parameter_groups(model, 1e-4), lr=0.005, momentum=0.9)
    images, targets = batch
    times, first = [], {}
    model.train()
    for step in range(steps + 1):
        start = time.perf_counter()
        with recipe.autocast():
            losses = model(images, targets)
        losses = {k: v.float() for k, v in losses.items()}
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        if step == 0:
            first = {k: round(v.item(), 4) for k, v in losses.items()}
        else:
            times.append(time.perf_counter() - start)
    return statistics.median(times), first


@torch.no_grad()
def detect(model: torch.nn.Module, image: torch.Tensor, recipe: ComputeRecipe, repeats: int) -> tuple[float, dict]:
    model.eval()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with recipe.autocast():
            output = model([image])[0]
        times.append(time.perf_counter() - start)
    output = {k: v.float() if v.is_floating_point() else v for k, v in output.items()}
    return statistics.median(times[1:]), output


def agreement(a: dict, b: dict, threshold: float = 0.5) -> dict[str, int]:
    """Detections above ``threshold`` in ``a`` matched by one of ``b`` (same class, mask IoU >= 0.5)."""
    keep_a, keep_b = a["scores"] >= threshold, b["scores"] >= threshold
    masks_a, masks_b = a["masks"][keep_a, 0] > 0.5, b["masks"][keep_b, 0] > 0.5
    labels_a, labels_b = a["labels"][keep_a], b["labels"][keep_b]
    matched = 0
    for mask, label in zip(masks_a, labels_a):
        inter = (masks_b & mask).flatten(1).sum(1)
        union = (masks_b | mask).flatten(1).sum(1).clamp(min=1)
        ok = (inter / union >= 0.5) & (labels_b == label)
        matched += int(ok.any())
    return {"float32": int(keep_a.sum()), "bf16": int(keep_b.sum()), "matched": matched}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the data set's folder")
    parser.add_argument("--dataset", default="fruits_nuts", help="an instance data set (default: fruits_nuts)")
    parser.add_argument("--precisions", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--size", type=int, default=512, help="longest image side (default: 512)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--checkpoint", type=Path, help="a Mask R-CNN trained on --dataset, for the agreement")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "maskrcnn_cpu.json")
    args = parser.parse_args()
    both_precisions = set(args.precisions) == set(RECIPES)
    if args.checkpoint and not both_precisions:
        parser.error("--checkpoint compares the two precisions: leave --precisions at both")

    dataset = get_instance_dataset(args.dataset, args.data, "train", train=True)
    batch = collate_instances([dataset[i] for i in range(args.batch)])
    torch.manual_seed(0)
    initial = segzoo.create_model(
        "maskrcnn_r50_fpn", num_classes=dataset.num_classes, backend="torchvision", min_size=args.size,
        max_size=args.size, rois_per_image=128,
    )  # fmt: skip
    result: dict[str, Any] = {
        "cpu": device_name("cpu"),
        "threads": torch.get_num_threads(),
        "dataset": args.dataset,
        "torch": torch.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "size": args.size,
        "batch": args.batch,
    }
    outputs = {}
    for name in dict.fromkeys(args.precisions):  # each once, in the order given
        recipe = RECIPES[name]
        model = copy.deepcopy(initial)
        seconds, losses = train_steps(model, batch, recipe, args.steps)
        latency, outputs[name] = detect(model, batch[0][0], recipe, args.repeats)
        result[name] = {"train_seconds_per_step": round(seconds, 3), "first_losses": losses,
                        "latency_seconds": round(latency, 3)}  # fmt: skip
        print(name, result[name], flush=True)
    if both_precisions:
        result["train_speedup"] = round(
            result["float32"]["train_seconds_per_step"] / result["bf16"]["train_seconds_per_step"], 2
        )
        result["latency_speedup"] = round(result["float32"]["latency_seconds"] / result["bf16"]["latency_seconds"], 2)
    if args.checkpoint:
        trained, _ = segzoo.load(args.checkpoint)
        val = get_instance_dataset(args.dataset, args.data, "val")
        counts = {"float32": 0, "bf16": 0, "matched": 0}
        for index in range(len(val)):
            image = val[index][0]
            _, reference = detect(trained, image, RECIPES["float32"], 0)
            _, fast = detect(trained, image, RECIPES["bf16"], 0)
            for key, value in agreement(reference, fast).items():
                counts[key] += value
        result["agreement"] = {"checkpoint": str(args.checkpoint), **counts}
    print(json.dumps({k: result.get(k) for k in ("train_speedup", "latency_speedup", "agreement")}))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
