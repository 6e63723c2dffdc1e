"""Float32 eager against segzoo's fast path, side by side in one run, for every semantic model.

    python benchmarks/bench_cpu.py                          # all registered semantic models
    python benchmarks/bench_cpu.py --models unet_resnet34 --train-steps 5
    python benchmarks/bench_cpu.py --test-miou --data ../shared/datasets   # + test mIoU of both paths

For each model, in this process, one after the other:

* **training**: images/s of a full step (forward, loss, backward, AdamW) on a batch of
  ``--batch`` random crops of ``--crop``, written as a plain PyTorch user writes it (float32,
  NCHW, no autocast), and with segzoo's default recipe (``segzoo.devices.compute_recipe()``:
  bf16 autocast + channels-last on CPUs with native bf16);
* **latency**: one 360x480 photo, batch 1, forward and arg-max, both ways (median of
  ``--repeats``);
* **agreement**: the share of pixels whose label is the same both ways, on the shipped
  example frames, with the shipped checkpoint's weights where there is one (random weights
  otherwise: their near-tied logits make this a lower bound);
* **compare**: the time to run every model on one photo, both ways (what the app's
  Compare button costs);
* with ``--test-miou``, the test-set mIoU of each shipped checkpoint both ways
  (``segzoo evaluate --precision 32-true`` and ``auto``).

Results go to ``benchmarks/cpu.json`` with the CPU's name and thread count; the README's
table is made from it (``--readme``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

import segzoo
from segzoo.devices import ComputeRecipe, compute_recipe, device_name
from segzoo.inference import predict_labels, read_image, to_tensor

ROOT = Path(__file__).resolve().parent.parent
FLOAT32 = ComputeRecipe(torch.device("cpu"), "32-true", channels_last=False)
README_START, README_END = "<!-- cpu-bench:start -->", "<!-- cpu-bench:end -->"


def run_header() -> dict[str, str]:
    """What every benchmark record starts with: the CPU it ran on, torch, when, and the command
    that reruns it (as typed, relative to the repository)."""
    return {
        "device": device_name("cpu"),
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }


def training_step(
    name: str, recipe: ComputeRecipe, crop: tuple[int, int], batch: int, **model_kwargs: Any
) -> Callable[[], None]:
    """One AdamW step of ``name`` (11 classes) on a fixed random batch, as a plain loop runs it."""
    torch.manual_seed(0)
    model = recipe.prepare_model(segzoo.create_model(name, num_classes=11, **model_kwargs)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = recipe.prepare_input(torch.randn(batch, 3, *crop))
    y = torch.randint(0, 11, (batch, *crop))

    def step() -> None:
        with recipe.autocast():
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def time_steps(step: Callable[[], None], steps: int) -> list[float]:
    """Seconds of each of ``steps`` calls of ``step``, after one untimed call."""
    step()  # the first step sets up kernels: not timed
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def train_images_per_sec(name: str, recipe: ComputeRecipe, crop: tuple[int, int], batch: int, steps: int) -> float:
    return batch / statistics.median(time_steps(training_step(name, recipe, crop, batch), steps))


def load_model(name: str, checkpoints: Path) -> tuple[torch.nn.Module, dict[str, Any] | None]:
    """The shipped CamVid checkpoint when there is one, else random weights."""
    directory = checkpoints / "camvid" / name
    if (directory / "model.safetensors").is_file():
        return segzoo.load(directory)
    torch.manual_seed(0)
    return segzoo.create_model(name, num_classes=11).eval(), None


def photo_tensors(examples: Path) -> list[torch.Tensor]:
    from segzoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    photos = sorted(examples.glob("camvid-*.jpg"))
    if not photos:
        raise SystemExit(f"{examples}: no camvid-*.jpg example frames")
    return [to_tensor(read_image(p), IMAGENET_MEAN, IMAGENET_STD) for p in photos]


def latency_and_labels(
    model: torch.nn.Module, recipe: ComputeRecipe, photos: list[torch.Tensor], repeats: int
) -> tuple[float, list[np.ndarray]]:
    model = recipe.prepare_model(model)
    labels = [predict_labels(model, x, recipe=recipe) for x in photos]  # also the warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict_labels(model, photos[0], recipe=recipe)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), labels


def test_miou(directory: Path, data: Path | None) -> dict[str, float]:
    from segzoo.evaluate import evaluate_checkpoint

    scores = {}
    with tempfile.TemporaryDirectory() as scratch:  # the shipped metrics.json stays as it is
        for precision in ("32-true", "auto"):
            metrics = evaluate_checkpoint(
                directory, "test", data_root=data, precision=precision, out=Path(scratch) / "m.json", progress=False
            )
            scores[precision] = metrics["miou"]
    return scores


def bench_model(name: str, args: argparse.Namespace, fast: ComputeRecipe, photos: list[torch.Tensor]) -> dict:
    row: dict[str, Any] = {"model": name}
    # On a CPU without native bf16 the fast path is float32 eager itself: time it once.
    same_recipe = fast == FLOAT32
    if args.train_steps:
        rate = train_images_per_sec(name, FLOAT32, tuple(args.crop), args.batch, args.train_steps)
        fast_rate = (
            rate if same_recipe else train_images_per_sec(name, fast, tuple(args.crop), args.batch, args.train_steps)
        )
        row.update(
            train_images_per_sec_float32=round(rate, 3),
            train_images_per_sec_fast=round(fast_rate, 3),
            train_speedup=round(fast_rate / rate, 2),
        )
    model, config = load_model(name, args.checkpoints)
    row["weights"] = "shipped checkpoint" if config else "random"
    reference_ms, reference = latency_and_labels(model, FLOAT32, photos, args.repeats)
    fast_ms, labels = (
        (reference_ms, reference) if same_recipe else latency_and_labels(model, fast, photos, args.repeats)
    )
    same = sum(int((a == b).sum()) for a, b in zip(reference, labels))
    row.update(
        latency_ms_float32=round(reference_ms, 1),
        latency_ms_fast=round(fast_ms, 1),
        latency_speedup=round(reference_ms / fast_ms, 2),
        label_agreement=round(same / sum(a.size for a in reference), 6),
    )
    if args.test_miou and config:
        data = args.data / "camvid" if args.data else None
        scores = test_miou(args.checkpoints / "camvid" / name, data)
        row.update(test_miou_float32=scores["32-true"], test_miou_fast=scores["auto"])
    print(json.dumps(row), flush=True)
    return row


def compare_seconds(names: list[str], recipe: ComputeRecipe, checkpoints: Path, photo: torch.Tensor) -> float:
    """Every model on one photo, as the Compare button runs them (models already loaded)."""
    models = [recipe.prepare_model(load_model(n, checkpoints)[0]) for n in names]
    for model in models:  # warm-up
        predict_labels(model, photo, recipe=recipe)
    start = time.perf_counter()
    for model in models:
        predict_labels(model, photo, recipe=recipe)
    return time.perf_counter() - start


def readme_table(result: dict[str, Any]) -> str:
    lines = [
        f"Measured by `python benchmarks/bench_cpu.py` on {result['device']}, {result['date'][:10]}; "
        f"training: batch {result['batch']} of {result['crop'][0]}x{result['crop'][1]} crops; latency: one "
        f"360x480 photo. Fast path: {result['fast_path']}"
        + (
            " (this CPU has no native bf16: the fast path is float32 eager, timed once)."
            if result["fast_path"] == "32-true"
            else "."
        ),
        "",
        "| model | train img/s float32 | train img/s fast | speed-up | latency ms float32 | latency ms fast "
        "| speed-up | same labels |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["models"]:
        lines.append(
            f"| `{row['model']}` | {row.get('train_images_per_sec_float32', '–')} | "
            f"{row.get('train_images_per_sec_fast', '–')} | {row.get('train_speedup', '–')}x | "
            f"{row['latency_ms_float32']:.0f} | {row['latency_ms_fast']:.0f} | {row['latency_speedup']}x | "
            f"{100 * row['label_agreement']:.2f}% ({row['weights']}) |"
        )
    for row in result["models"]:
        if "test_miou_float32" in row:
            lines += [
                "",
                f"`{row['model']}` (shipped) on the 233 CamVid test frames: mIoU "
                f"{100 * row['test_miou_float32']:.2f} float32, {100 * row['test_miou_fast']:.2f} fast path.",
            ]
    compare = result.get("compare")
    if compare:
        lines += [
            "",
            f"All {compare['models']} models on one photo: {compare['seconds_float32']:.2f} s float32, "
            f"{compare['seconds_fast']:.2f} s fast path ({compare['speedup']}x).",
        ]
    return "\n".join(lines)


def update_readme(readme: Path, table: str) -> None:
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    readme.write_text(text[:start] + "\n" + table + "\n" + text[end:], encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="default: every registered semantic model")
    parser.add_argument("--crop", type=int, nargs=2, default=(192, 256), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps per model (0: skip)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes per model")
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--examples", type=Path, default=ROOT / "examples")
    parser.add_argument("--test-miou", action="store_true", help="also score shipped checkpoints on the test split")
    parser.add_argument("--data", type=Path, help="folder holding camvid/ (default: the one recorded at training)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "cpu.json")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    parser.add_argument("--readme-only", action="store_true", help="only rewrite the README table from --out")
    args = parser.parse_args()
    if args.readme_only:
        update_readme(ROOT / "README.md", readme_table(json.loads(args.out.read_text(encoding="utf-8"))))
        return 0

    names = args.models or segzoo.model_names(task="semantic")
    fast = compute_recipe("cpu")
    photos = photo_tensors(args.examples)
    print(f"{device_name('cpu')}; fast path: {fast.describe()}", flush=True)
    rows = [bench_model(name, args, fast, photos) for name in names]
    result: dict[str, Any] = {
        **run_header(),
        "fast_path": f"{fast.precision}{', channels-last' if fast.channels_last else ''}",
        "crop": list(args.crop),
        "batch": args.batch,
        "models": rows,
    }
    if len(names) > 1:
        reference = compare_seconds(names, FLOAT32, args.checkpoints, photos[0])
        seconds = reference if fast == FLOAT32 else compare_seconds(names, fast, args.checkpoints, photos[0])
        result["compare"] = {
            "models": len(names),
            "seconds_float32": round(reference, 3),
            "seconds_fast": round(seconds, 3),
            "speedup": round(reference / seconds, 2),
        }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    table = readme_table(result)
    print(table)
    if args.readme:
        update_readme(ROOT / "README.md", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
