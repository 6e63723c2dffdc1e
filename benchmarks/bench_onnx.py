"""onnxruntime on the CPU against segzoo's own fast path, model by model, in one run.

For every CamVid checkpoint in ``checkpoints/camvid/`` (or, when there is none or with
``--random``, every registered semantic model with random weights), the model is exported
to ONNX (``segzoo.export``) and one 360x480 CamVid frame (``examples/``) is segmented at
batch 1 by:

* ``segzoo``: :func:`segzoo.devices.compute_recipe` on the CPU (bf16 autocast and
  channels-last on CPUs with native bf16, float32 otherwise) and
  :func:`segzoo.inference.predict_labels` with that recipe: PyTorch as segzoo runs it;
* ``onnxruntime``: the exported model, CPUExecutionProvider, float32, the same number of
  threads, logits then arg-max;
* PyTorch float32 eager, the reference both are compared with (label agreement: the share
  of pixels with the same label).

Times are the median of ``--repeats`` runs after ``--warmup`` runs, arg-max included. The
record also says which of the two the app serves with on this CPU
(:func:`segzoo.devices.resolve_runtime`: PyTorch's bf16 recipe where the CPU has native bf16,
onnxruntime where it would run float32).

    python benchmarks/bench_onnx.py                                   # every CamVid checkpoint
    python benchmarks/bench_onnx.py --models unet_efficientnet_b0 --repeats 1   # a quick check

writes benchmarks/onnx.json (``--out``) with the CPU's name and the thread count.
"""

from __future__ import annotations

import argparse
import copy
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import segzoo  # noqa: E402
from segzoo.checkpoint import load  # noqa: E402
from segzoo.devices import compute_recipe, cpu_model_name, device_name, resolve_runtime  # noqa: E402
from segzoo.export import OnnxSegmenter, export_onnx, label_agreement, random_weights  # noqa: E402
from segzoo.inference import predict_labels, read_image, to_tensor  # noqa: E402
from segzoo.registry import count_parameters, model_names  # noqa: E402

CAMVID_CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
                  "pedestrian", "bicyclist"]  # fmt: skip
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def median_ms(run: Callable[[], Any], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def candidates(args: argparse.Namespace) -> list[tuple[str, str, Callable[[], tuple[torch.nn.Module, dict]]]]:
    """(name, source, loader) per model: CamVid checkpoints, else random-weight models."""
    folders = sorted(p.parent for p in Path(args.checkpoints).glob("*/config.json")) if not args.random else []
    folders = [f for f in folders if json.loads((f / "config.json").read_text()).get("task", "semantic") == "semantic"]
    if folders:
        chosen = [(f.name, str(f), lambda f=f: load(f)) for f in folders]
    else:

        def build(name: str) -> tuple[torch.nn.Module, dict]:
            model = random_weights(segzoo.create_model(name, num_classes=len(CAMVID_CLASSES)), seed=0).eval()
            config = {
                "model": name,
                "task": "semantic",
                "num_classes": len(CAMVID_CLASSES),
                "dataset": "camvid",
                "class_names": CAMVID_CLASSES,
                "palette": [[0, 0, 0]] * len(CAMVID_CLASSES),
                **IMAGENET,
            }
            return model, config

        chosen = [(n, "random weights (seed 0)", lambda n=n: build(n)) for n in model_names("semantic")]
    if args.models:
        unknown = set(args.models) - {name for name, _, _ in chosen}
        if unknown:
            raise SystemExit(f"--models {sorted(unknown)}: not among {[name for name, _, _ in chosen]}")
        chosen = [c for c in chosen if c[0] in args.models]
    return chosen


def frame_tensor(size: tuple[int, int], mean: list[float], std: list[float]) -> torch.Tensor:
    import cv2

    frame = read_image(sorted((ROOT / "examples").glob("camvid-*.jpg"))[0])
    if frame.shape[:2] != size:
        frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return to_tensor(frame, mean, std)


def bench_model(name: str, source: str, loader: Callable, args: argparse.Namespace, onnx_dir: Path) -> dict:
    model, config = loader()
    model = model.float().eval()
    x = frame_tensor(tuple(args.size), config["mean"], config["std"])
    reference = predict_labels(model, x)
    float32_ms = median_ms(lambda: predict_labels(model, x), args.repeats, args.warmup)

    recipe = compute_recipe("cpu")
    fast = recipe.prepare_model(copy.deepcopy(model))
    fast_labels = predict_labels(fast, x, recipe=recipe)
    fast_ms = median_ms(lambda: predict_labels(fast, x, recipe=recipe), args.repeats, args.warmup)

    start = time.perf_counter()
    path = export_onnx(copy.deepcopy(model), config, onnx_dir / f"{name}.onnx")
    export_seconds = time.perf_counter() - start
    segmenter = OnnxSegmenter(path, threads=args.threads)
    x_np = x.numpy()
    onnx_labels = segmenter.predict_labels(x_np)
    onnx_ms = median_ms(lambda: segmenter.predict_labels(x_np), args.repeats, args.warmup)

    row = {
        "model": name,
        "source": source,
        "params": count_parameters(model),
        "onnx_mb": round(path.stat().st_size / 1e6, 1),
        "export_seconds": round(export_seconds, 1),
        "segzoo_ms": round(fast_ms, 1),
        "segzoo_recipe": recipe.describe(),
        "onnxruntime_ms": round(onnx_ms, 1),
        "float32_eager_ms": round(float32_ms, 1),
        "faster": "onnxruntime" if onnx_ms < fast_ms else "segzoo",
        "onnxruntime_speedup": round(fast_ms / onnx_ms, 2),
        "agreement_onnxruntime_vs_float32": label_agreement(onnx_labels, reference),
        "agreement_segzoo_vs_float32": label_agreement(fast_labels, reference),
        "classes_predicted": int(len(np.unique(reference))),
    }
    print(f"{name:<24} segzoo {fast_ms:8.1f} ms ({recipe.precision})  onnxruntime {onnx_ms:8.1f} ms  "
          f"float32 {float32_ms:8.1f} ms  labels vs float32: onnx {100 * row['agreement_onnxruntime_vs_float32']:.3f}%"
          f", segzoo {100 * row['agreement_segzoo_vs_float32']:.3f}%", flush=True)  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints" / "camvid"),
                        help="folder of CamVid checkpoints (default: checkpoints/camvid)")  # fmt: skip
    parser.add_argument("--random", action="store_true", help="every registered semantic model, random weights")
    parser.add_argument("--models", nargs="+", metavar="NAME", help="only these checkpoints / models")
    parser.add_argument("--size", type=int, nargs=2, default=[360, 480], metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="threads for both runtimes (default: PyTorch's)")  # fmt: skip
    parser.add_argument("--onnx-dir", help="keep the exported models here (default: a temporary folder)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("onnx.json")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory(prefix="segzoo-onnx-") as tmp:
        onnx_dir = Path(args.onnx_dir or tmp)
        onnx_dir.mkdir(parents=True, exist_ok=True)
        for name, source, loader in candidates(args):
            rows.append(bench_model(name, source, loader, args, onnx_dir))

    import onnxruntime

    result = {
        "device_name": device_name("cpu"),
        "cpu": cpu_model_name(),
        "threads": args.threads,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "input_size": args.size,
        "batch": 1,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "timing": f"median wall time of one {args.size[0]}x{args.size[1]} CamVid frame, forward pass and arg-max; "
        "segzoo = compute_recipe('cpu') + predict_labels(recipe=...), onnxruntime = CPUExecutionProvider float32",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "app_serves_with": resolve_runtime("auto", compute_recipe("cpu")),
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
