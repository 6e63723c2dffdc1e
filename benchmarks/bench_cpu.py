"""Float32 eager against segzoo's fast path, side by side in one run, for every semantic model.

    python benchmarks/bench_cpu.py                          # all registered semantic models
    python benchmarks/bench_cpu.py --models unet_resnet34 --train-steps 5
    python benchmarks/bench_cpu.py --test-miou --data ../shared/datasets   # + test mIoU of both paths

For each model, in this process, one after the other:

* **training**: images/s of a full step (forward, loss, backward, AdamW) on a batch of
  ``--batch`` random crops of ``--crop``, written as a plain PyTorch user writes it (float32,
  NCHW, no autocast), and with segzoo's default recipe (``segzoo.devices.compute_recipe()``:
  bf16 autocast + channels-last on CPUs where bf16 pays);
* **latency**: one 360x480 photo, batch 1, forward and arg-max, as a plain PyTorch user runs
  it and as the app serves the model (the app's ``ModelCache``: segzoo's recipe, and
  onnxruntime where ``segzoo.devices.resolve_runtime`` picks it, i.e. on CPUs whose recipe is
  float32), median of ``--repeats``;
* **agreement**: the share of pixels whose label is the same both ways, on the shipped
  example frames, with the shipped checkpoint's weights where there is one (random weights
  otherwise: their near-tied logits make this a lower bound);
* **compare**: the app's Compare (``segzoo.app.compare.compare_models``) with every model
  that has a shipped CamVid checkpoint on one example frame, each model at the size it is
  served at, models loaded: through the app's ``ModelCache`` as served, and through one
  that runs float32 NCHW PyTorch (median of ``--repeats``);
* with ``--test-miou``, the test-set mIoU of each shipped checkpoint both ways
  (``segzoo evaluate --precision 32-true`` and ``auto``).

Results go to ``benchmarks/cpu.json`` with the CPU's name and thread count; the README's
table is made from it (``--readme``).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
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
from segzoo.app.catalog import Catalog, LabelSet, ModelCache, ModelEntry
from segzoo.app.compare import compare_models
from segzoo.devices import ComputeRecipe, device_name
from segzoo.export import runtime_name
from segzoo.inference import inference_short_side, predict_labels, read_image, to_tensor

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


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a benchmark's record as JSON and say where."""
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}", flush=True)


def training_step(
    name: str,
    recipe: ComputeRecipe,
    crop: tuple[int, int],
    batch: int,
    compile: bool = False,
    **model_kwargs: Any,
) -> Callable[[], None]:
    """One AdamW step of ``name`` (11 classes) on a fixed random batch, as a plain loop runs it;
    ``compile``: the forward pass through ``torch.compile``, as ``segzoo train --compile`` runs it."""
    torch.manual_seed(0)
    model = recipe.prepare_model(segzoo.create_model(name, num_classes=11, **model_kwargs)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = recipe.prepare_input(torch.randn(batch, 3, *crop))
    y = torch.randint(0, 11, (batch, *crop))
    forward = torch.compile(model) if compile else model

    def step() -> None:
        with recipe.autocast():
            logits = forward(x)
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


def example_frames(examples: Path) -> list[np.ndarray]:
    photos = sorted(examples.glob("camvid-*.jpg"))
    if not photos:
        raise SystemExit(f"{examples}: no camvid-*.jpg example frames")
    return [read_image(p) for p in photos]


def photo_tensors(frames: list[np.ndarray]) -> list[torch.Tensor]:
    from segzoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    return [to_tensor(frame, IMAGENET_MEAN, IMAGENET_STD) for frame in frames]


def shipped_camvid(checkpoints: Path, names: list[str]) -> LabelSet | None:
    """The app's CamVid label set, narrowed to the semantic models among ``names`` (by folder)."""
    label_set = Catalog.scan(checkpoints).label_sets.get("camvid")
    if label_set is None:
        return None
    entries = [e for e in label_set.entries if e.task == "semantic" and e.key in names]
    return dataclasses.replace(label_set, entries=entries)


def served_cache(entries: list[ModelEntry]) -> ModelCache:
    """The app's model cache (runtime ``auto``), with every ONNX export it wants made."""
    cache = ModelCache(device="cpu")
    if cache.runtime == "onnxruntime" and entries:
        print(f"exporting {len(entries)} models for onnxruntime (kept in segzoo's cache) ...", flush=True)
        cache.prepare(entries)
        cache.wait_for_exports()
    return cache


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


def bench_model(
    name: str,
    args: argparse.Namespace,
    served: ModelCache,
    entry: ModelEntry | None,
    photos: list[torch.Tensor],
) -> dict:
    row: dict[str, Any] = {"model": name}
    fast = served.recipe
    if args.train_steps:
        rate = train_images_per_sec(name, FLOAT32, tuple(args.crop), args.batch, args.train_steps)
        # Where segzoo's training recipe is float32 NCHW itself, time it once.
        fast_rate = (
            rate
            if fast == FLOAT32
            else train_images_per_sec(name, fast, tuple(args.crop), args.batch, args.train_steps)
        )
        row.update(
            train_images_per_sec_float32=round(rate, 3),
            train_images_per_sec_fast=round(fast_rate, 3),
            train_speedup=round(fast_rate / rate, 2),
        )
    model, config = load_model(name, args.checkpoints)
    row["weights"] = "shipped checkpoint" if config else "random"
    served_model = served.get(entry) if entry is not None else model
    row["runtime"] = runtime_name(served_model)
    reference_ms, reference = latency_and_labels(model, FLOAT32, photos, args.repeats)
    same_path = row["runtime"] == "torch" and fast == FLOAT32
    fast_ms, labels = (
        (reference_ms, reference) if same_path else latency_and_labels(served_model, fast, photos, args.repeats)
    )
    same = sum(int((a == b).sum()) for a, b in zip(reference, labels, strict=True))
    row.update(
        latency_ms_float32=round(reference_ms, 1),
        latency_ms_fast=round(fast_ms, 1),
        latency_speedup=round(reference_ms / fast_ms, 2),
        label_agreement=round(same / sum(a.size for a in reference), 6),
    )
    if args.test_miou and config:
        data = args.data / "camvid" if args.data else None
        scores = test_miou(args.checkpoints / "camvid" / name, data)
        row.update(
            test_miou_float32=scores["32-true"],
            test_miou_fast=scores["auto"],
            test_short_side=inference_short_side(config),  # what segzoo evaluate ran the frames at
        )
    print(json.dumps(row), flush=True)
    return row


def compare_seconds(label_set: LabelSet, cache: ModelCache, frame: np.ndarray, repeats: int) -> tuple[float, list[str]]:
    """The app's Compare of every model in ``label_set`` on one frame, models already loaded
    (the first, untimed call loads and warms them up): the median of ``repeats`` calls, in
    seconds, and the runtime that ran each model."""
    runtimes: list[str] = []

    def compare() -> None:
        comparison = compare_models(frame, label_set, label_set.entries, cache)
        failed = [f"{o.entry.key}: {o.error}" for o in comparison.outputs if o.error]
        if failed:
            raise SystemExit("Compare failed: " + "; ".join(failed))
        runtimes[:] = [o.runtime for o in comparison.outputs]

    return statistics.median(time_steps(compare, repeats)), runtimes


def compare_record(label_set: LabelSet, served: ModelCache, frame: np.ndarray, repeats: int) -> dict[str, Any]:
    """Compare as served against Compare in float32 NCHW PyTorch, the same models, frame and sizes."""
    eager = ModelCache(device="cpu", precision="32-true", channels_last=False, runtime="torch")
    reference, _ = compare_seconds(label_set, eager, frame, repeats)
    seconds, runtimes = compare_seconds(label_set, served, frame, repeats)
    return {
        "models": len(label_set.entries),
        "names": [e.key for e in label_set.entries],
        "served_runtimes": dict(collections.Counter(runtimes)),
        "seconds_float32": round(reference, 3),
        "seconds_fast": round(seconds, 3),
        "speedup": round(reference / seconds, 2),
    }


def readme_table(result: dict[str, Any]) -> str:
    fast_path = result["fast_path"]
    if fast_path == "32-true":
        fast_path += " NCHW, i.e. float32 eager itself (its training is timed once)"
    served = result.get("served_runtime", "torch")  # records before the key: PyTorch served
    lines = [
        f"Measured by `python benchmarks/bench_cpu.py` on {result['device']}, {result['date'][:10]}; "
        f"training: batch {result['batch']} of {result['crop'][0]}x{result['crop'][1]} crops; latency: one "
        f"360x480 photo. Fast path: {fast_path}"
        + ("; the app serves the models through onnxruntime (float32)." if served == "onnxruntime" else "."),
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
                f"{100 * row['test_miou_float32']:.2f} float32, {100 * row['test_miou_fast']:.2f} fast path"
                + (f" (frames at a short side of {row['test_short_side']})." if row.get("test_short_side") else "."),
            ]
    compare = result.get("compare")
    if compare and "served_runtimes" in compare:
        runtimes = ", ".join(f"{n} by {r}" for r, n in compare["served_runtimes"].items())
        lines += [
            "",
            f"The app's Compare with all {compare['models']} shipped CamVid models on one frame (each at the "
            f"size it is served at): {compare['seconds_float32']:.2f} s in float32 NCHW PyTorch, "
            f"{compare['seconds_fast']:.2f} s as served ({runtimes}): {compare['speedup']}x.",
        ]
    elif compare:  # records before Compare ran through the app's code: PyTorch at 360x480
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
    frames = example_frames(args.examples)
    photos = photo_tensors(frames)
    camvid = shipped_camvid(args.checkpoints, names)
    entries = {e.key: e for e in camvid.entries} if camvid else {}
    served = served_cache(list(entries.values()))
    fast = served.recipe
    print(f"{device_name('cpu')}; fast path: {fast.describe()}; served by {served.runtime}", flush=True)
    rows = [bench_model(name, args, served, entries.get(name), photos) for name in names]
    result: dict[str, Any] = {
        **run_header(),
        "fast_path": f"{fast.precision}{', channels-last' if fast.channels_last else ''}",
        "served_runtime": served.runtime,
        "crop": list(args.crop),
        "batch": args.batch,
        "models": rows,
    }
    if camvid and len(camvid.entries) > 1:
        result["compare"] = compare_record(camvid, served, frames[0], args.repeats)
    write_record(args.out, result)
    table = readme_table(result)
    print(table)
    if args.readme:
        update_readme(ROOT / "README.md", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
