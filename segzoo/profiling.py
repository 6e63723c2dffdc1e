"""Model cost: parameter count, GFLOPs and latency at a given input size.

GFLOPs follow the convention of ``torch.utils.flop_counter``: 2 FLOPs per
multiply-accumulate of every convolution, transposed convolution and matrix product, for
one image; element-wise operations, pooling and interpolation are not counted (they are a
few percent of a segmentation network). Multiply-accumulates (MACs), as some papers quote,
are half the figure.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from segzoo.devices import ComputeRecipe, compute_recipe, device_name
from segzoo.inference import predict_labels
from segzoo.registry import count_parameters

GFLOPS_CONVENTION = (
    "GFLOPs = 2 x multiply-accumulates / 1e9 of convolutions and matrix products for one image "
    "(torch.utils.flop_counter); element-wise ops, pooling and interpolation not counted"
)


def _example_input(task: str, size: tuple[int, int], device: torch.device) -> Any:
    height, width = size
    if task == "instance":  # torchvision detection models take a list of 0-1 images
        return [torch.rand(3, height, width, device=device)]
    return torch.randn(1, 3, height, width, device=device)


@torch.inference_mode()
def gflops(model: nn.Module, size: tuple[int, int], task: str = "semantic") -> float:
    """Forward FLOPs for one ``size`` image, in units of 1e9 (see the module docstring)."""
    model.eval()
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with counter:
        model(_example_input(task, size, device))
    return counter.get_total_flops() / 1e9


@torch.inference_mode()
def latency_ms(
    model: nn.Module,
    size: tuple[int, int],
    task: str = "semantic",
    runs: int = 5,
    warmup: int = 1,
    recipe: ComputeRecipe | None = None,
) -> float:
    """Median wall time, in milliseconds, of ``runs`` passes of one ``size`` image (after
    ``warmup``) on the model's device: for a semantic model the forward pass and arg-max
    with ``recipe``'s precision and memory format (float32 when None), as the app serves it."""
    model.eval()
    param = next(model.parameters(), None)  # an onnxruntime model has none: it runs on the CPU
    device = param.device if param is not None else torch.device("cpu")
    x = _example_input(task, size, device)
    if recipe is not None and task == "semantic":
        model = recipe.prepare_model(model)

        def forward() -> Any:
            return predict_labels(model, x, recipe=recipe)
    else:

        def forward() -> Any:
            return model(x)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        forward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) * 1000.0

    for _ in range(warmup):
        once()
    return statistics.median(once() for _ in range(max(1, runs)))


def profile_model(
    model: nn.Module,
    size: tuple[int, int],
    task: str = "semantic",
    runs: int = 5,
    measure_latency: bool = True,
    served_by: nn.Module | None = None,
) -> dict[str, Any]:
    """Parameters, GFLOPs and (optionally) latency of ``model`` at ``size``: as served (the
    device's compute recipe, :mod:`segzoo.devices`; ``served_by`` when another runtime
    serves it, such as its :class:`segzoo.export.OnnxModule`) and in float32 eager, side by side."""
    result: dict[str, Any] = {"params": count_parameters(model), "input_size": f"{size[0]}x{size[1]}"}
    try:
        result["gflops"] = round(gflops(model, size, task), 2)
    except Exception as exc:  # noqa: BLE001 - an op the counter cannot trace must not stop the table
        result["gflops"] = None
        result["gflops_error"] = f"{type(exc).__name__}: {exc}"
    if measure_latency:
        device = next(model.parameters()).device
        served = compute_recipe(device) if task == "semantic" else None  # Mask R-CNN is served in float32
        float32 = latency_ms(model, size, task, runs=runs)
        if served_by is not None:
            served_ms = latency_ms(served_by, size, task, runs=runs, recipe=served)
        else:
            served_ms = latency_ms(model, size, task, runs=runs, recipe=served) if served else float32
        result.update(
            latency_ms=round(served_ms, 2),
            latency_precision=served.precision if served and served_by is None else "32-true",  # onnxruntime: float32
            latency_runtime="onnxruntime" if served_by is not None else "torch",
            latency_ms_float32=round(float32, 2),
            latency_runs=max(1, runs),
            latency_threads=torch.get_num_threads() if device.type == "cpu" else None,
            latency_device=device_name(device),
        )
    return result
