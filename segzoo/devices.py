"""Where a model runs and how: the device and its compute recipe.

One place decides, for training, validation, ``segzoo predict``, ``segzoo evaluate`` and the
app alike, which precision and memory format a device gets:

* a CPU with native bf16 instructions (``avx512_bf16`` or AMX: AMD Zen 4 and later, Intel
  Cooper Lake / Sapphire Rapids and later): bf16 autocast and channels-last, when bf16 pays.
  On the project's 2-core Zen 4 and AMX Xeons a training step is 2-6x faster than float32
  eager (``benchmarks/bench_cpu.py``); on a 2-core Intel Xeon VM that reports ``avx512_bf16``
  but no AMX, bf16 was slower than float32 in every model. So the flags only say that bf16
  *may* pay: a short probe (:func:`cpu_layout_timings`, once per machine, cached) times a
  training step of a small convolution stack in float32, float32 channels-last and bf16
  channels-last, and the fastest wins;
* any other CPU: float32 (bf16 there is emulated and many times slower), channels-last when
  the probe finds it faster;
* a CUDA GPU: bf16 autocast where the GPU supports it, else float16, and channels-last.

For serving (the app, the leaderboard's served latency), :func:`resolve_runtime` adds which
runtime runs a semantic model: onnxruntime on a CPU whose recipe is float32, where its kernels
beat PyTorch's eager float32, and PyTorch wherever a bf16 or GPU recipe is faster still.

``auto`` picks the recipe; every part of it can be forced (``--precision 32-true``,
``--channels-last off``). ``SEGZOO_CPU_BF16=0`` (or ``1``) overrides the CPU detection and
the probe (float32 NCHW, or bf16 channels-last), so the float32 fallback of a CPU without
bf16 can be exercised on any machine; ``SEGZOO_CPU_PROBE=0`` skips the probe and trusts the
flags alone.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import hashlib
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")
CHANNELS_LAST_CHOICES = ("auto", "on", "off")
RUNTIMES = ("auto", "torch", "onnxruntime")
# How tables name a precision.
PRECISION_NAMES = {"32-true": "float32", "bf16-mixed": "bf16", "16-mixed": "float16"}
_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
# glibc's mallopt parameters (<malloc.h>).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
# The app's mmap threshold: blocks above it are mmapped by glibc's malloc and returned to the
# system when freed. Left to itself, malloc raises the threshold to the largest block freed so
# far (up to 32 MB), after which photos, tensors and PNG buffers are carved from per-thread
# heaps that keep the freed memory: the app's resident memory then grew by megabytes per
# request under concurrent load and never came back down, though nothing leaked
# (benchmarks/bench_app_memory.py measures it).
MMAP_THRESHOLD_BYTES = 1 << 20


def _forced_cpu_bf16() -> bool | None:
    """``SEGZOO_CPU_BF16``: True or False when set, None when the hardware decides."""
    forced = os.environ.get("SEGZOO_CPU_BF16", "").strip().lower()
    if forced in ("0", "false", "no", "off"):
        return False
    if forced in ("1", "true", "yes", "on"):
        return True
    return None


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (``avx512_bf16`` or AMX tiles)."""
    forced = _forced_cpu_bf16()
    if forced is not None:
        return forced
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


# The CPU recipes the probe times, as (precision, channels_last).
CPU_LAYOUTS = {
    "float32": ("32-true", False),
    "float32-channels-last": ("32-true", True),
    "bf16-channels-last": ("bf16-mixed", True),
}
# A reduced-precision or channels-last recipe must beat the plain one by this factor to be
# chosen, so that a near tie (probe noise) keeps float32's exact results and NCHW layout.
PROBE_MARGIN = 0.9
# What the probe times; part of its cache key, so a changed probe measures again.
PROBE_KIND = "training step, batch 2 at 96x128, median of rounds"


def _probe_stack() -> nn.Module:
    """A small stack shaped like the zoo's convolutions: full-resolution 3x3 convolutions at 32
    and 64 channels (the scratch UNet's, SegNet's, VGG's first stages), strided and 1x1 ones
    (ResNet's), batch norm and ReLU (about 1.6 GFLOP per 96x128 image forward)."""

    def block(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
        conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    torch.manual_seed(0)
    layers = [*block(3, 32), *block(32, 64), *block(64, 64, stride=2), *block(64, 128, 1), *block(128, 128)]
    return nn.Sequential(*layers)


def cpu_layout_recipes() -> dict[str, ComputeRecipe]:
    """The recipes of :data:`CPU_LAYOUTS` worth timing on this CPU: bf16 only with native bf16
    (emulated, it is many times slower)."""
    return {
        name: ComputeRecipe(torch.device("cpu"), precision, channels_last)
        for name, (precision, channels_last) in CPU_LAYOUTS.items()
        if precision == "32-true" or cpu_has_native_bf16()
    }


def _time_cpu_layouts(rounds: int = 6) -> dict[str, float]:
    """Seconds per training step (forward and backward, batch 2 at 96x128) of
    :func:`_probe_stack` in each of :func:`cpu_layout_recipes`: the median of ``rounds``, after
    one warm-up step (oneDNN builds its kernels then). The recipes take turns, so a load that
    comes and goes on the other cores slows them alike; the median, not the fastest, because
    on a shared 2-core VM the fastest of a few steps varied more between runs (channels-last
    over NCHW: 1.01-1.22 against 1.00-1.14 for the median, eight runs on the Zen 3 below).

    A training step, not an inference pass, because training is where segzoo spends a CPU's
    hours, and the two can disagree: on the 2-core Zen 3 EPYC the stack's forward pass ran
    about 1.3x faster channels-last, while most models trained slower that way
    (``benchmarks/cpu_epyc_zen3_channels_last.json``, ``benchmarks/cpu_recipes_epyc_zen3.json``);
    there its training step took 0.98-1.14x NCHW's time channels-last, so NCHW stays."""
    model = _probe_stack().train()
    x = torch.randn(2, 3, 96, 128)
    runs = {
        name: (recipe, recipe.prepare_model(copy.deepcopy(model)), recipe.prepare_input(x))
        for name, recipe in cpu_layout_recipes().items()
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(rounds + 1):
        for name, (recipe, net, inputs) in runs.items():
            start = time.perf_counter()
            with recipe.autocast():
                out = net(inputs)
            out.float().square().mean().backward()
            if round_:  # round 0 warms up
                seconds[name].append(time.perf_counter() - start)
            net.zero_grad(set_to_none=True)
    return {name: statistics.median(times) for name, times in seconds.items()}


def segzoo_cache_dir() -> Path:
    """segzoo's cache of machine-made files (the CPU probe, ONNX exports for serving):
    ``$SEGZOO_CACHE``, default ``~/.cache/segzoo``."""
    return Path(os.environ.get("SEGZOO_CACHE") or Path.home() / ".cache" / "segzoo")


@functools.cache
def cpu_layout_timings() -> dict[str, float] | None:
    """What the probe measured on this CPU (seconds per training step, per :data:`CPU_LAYOUTS` name), or
    None when ``SEGZOO_CPU_PROBE=0``. Kept in ``$SEGZOO_CACHE/cpu_probe.json`` (default
    ``~/.cache/segzoo``) under a key of the CPU's name and flags, the thread count and the
    PyTorch version, so each machine probes once (a second or two) and later processes agree.
    The key also names the probe (:data:`PROBE_KIND`): a verdict of an earlier probe is not reused."""
    if os.environ.get("SEGZOO_CPU_PROBE", "").strip().lower() in ("0", "false", "no", "off"):
        return None
    key = hashlib.sha256(
        f"{PROBE_KIND}|{cpu_model_name()}|{cpu_has_native_bf16()}|{torch.get_num_threads()}|{torch.__version__}".encode()
    ).hexdigest()[:16]
    path = segzoo_cache_dir() / "cpu_probe.json"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    entry = cached.get(key)
    if isinstance(entry, dict) and set(entry) >= {"float32", "float32-channels-last"}:
        return {name: float(seconds) for name, seconds in entry.items()}
    timings = _time_cpu_layouts()
    cached[key] = timings
    with contextlib.suppress(OSError):  # a read-only home: probe again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=1), encoding="utf-8")
        tmp.replace(path)
    return timings


def _probed_timings() -> dict[str, float] | None:
    """The probe's timings, or None where ``SEGZOO_CPU_BF16`` or ``SEGZOO_CPU_PROBE=0`` leaves
    the decision to the flags."""
    return None if _forced_cpu_bf16() is not None else cpu_layout_timings()


def cpu_bf16_pays() -> bool:
    """bf16 autocast for ``auto`` on the CPU: the CPU has native bf16 and the probe finds bf16
    channels-last faster than both float32 layouts (by :data:`PROBE_MARGIN`). Without the
    probe (``SEGZOO_CPU_PROBE=0``) native bf16 alone decides; ``SEGZOO_CPU_BF16`` overrides both."""
    if not cpu_has_native_bf16():
        return False
    timings = _probed_timings()
    if timings is None or "bf16-channels-last" not in timings:
        return True
    float32 = min(timings["float32"], timings["float32-channels-last"])
    return timings["bf16-channels-last"] < PROBE_MARGIN * float32


def cpu_float32_channels_last_pays() -> bool:
    """Channels-last for float32 on the CPU: when the probe finds it faster than NCHW (by
    :data:`PROBE_MARGIN`). Off without the probe or with ``SEGZOO_CPU_BF16`` set."""
    timings = _probed_timings()
    if timings is None:
        return False
    return timings["float32-channels-last"] < PROBE_MARGIN * timings["float32"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> the first CUDA GPU when there is one, else the CPU; ``gpu`` means ``cuda``."""
    if isinstance(device, torch.device):
        return device
    name = {"gpu": "cuda"}.get(device, device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(name)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return resolved


def resolve_precision(precision: str, device_type: str) -> str:
    """``auto`` -> bf16-mixed on GPUs that support it (else 16-mixed) and on CPUs where bf16
    pays (:func:`cpu_bf16_pays`); 32-true on other CPUs. Any other value is returned as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device_type == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_bf16_pays() else "32-true"


def resolve_channels_last(channels_last: str | bool, device_type: str, precision: str) -> bool:
    """``auto`` -> on for GPUs and for reduced precision on the CPU (oneDNN's bf16 kernels
    want NHWC); for float32 on the CPU, on where the probe finds it faster
    (:func:`cpu_float32_channels_last_pays`)."""
    if isinstance(channels_last, bool):
        return channels_last
    if channels_last not in CHANNELS_LAST_CHOICES:
        raise ValueError(f"channels-last must be one of {CHANNELS_LAST_CHOICES}, got {channels_last!r}")
    if channels_last != "auto":
        return channels_last == "on"
    if device_type == "cuda" or precision != "32-true":
        return True
    return device_type == "cpu" and cpu_float32_channels_last_pays()


@dataclass(frozen=True)
class ComputeRecipe:
    """How a model runs on a device: autocast precision and memory format."""

    device: torch.device
    precision: str  # 32-true | bf16-mixed | 16-mixed
    channels_last: bool

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return _AUTOCAST_DTYPES.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast for the forward pass (a no-op context for float32)."""
        dtype = self.autocast_dtype
        if dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device (float32 weights: autocast casts per op) and memory format."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def to_dict(self) -> dict[str, Any]:
        return {"device": device_name(self.device), "precision": self.precision, "channels_last": self.channels_last}

    def describe(self) -> str:
        layout = ", channels-last" if self.channels_last else ""
        return f"{device_name(self.device)}, {self.precision}{layout}"


def compute_recipe(
    device: str | torch.device = "auto", precision: str = "auto", channels_last: str | bool = "auto"
) -> ComputeRecipe:
    """The recipe for ``device``: ``auto`` parts are filled in from what the hardware does well."""
    resolved = resolve_device(device)
    chosen = resolve_precision(precision, resolved.type)
    return ComputeRecipe(resolved, chosen, resolve_channels_last(channels_last, resolved.type, chosen))


def resolve_runtime(runtime: str, recipe: ComputeRecipe) -> str:
    """Which runtime serves semantic models for inference: ``auto`` -> ``onnxruntime`` when the
    recipe is float32 on the CPU (no native bf16) and onnxruntime is installed: its float32
    kernels, with batch norm folded into the convolutions, beat PyTorch's eager float32
    (``benchmarks/bench_onnx.py``); ``torch`` elsewhere, where bf16 on the CPU and the GPU
    recipes are faster than either. ``SEGZOO_RUNTIME`` overrides ``auto``."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if runtime == "auto":
        runtime = os.environ.get("SEGZOO_RUNTIME", "").strip().lower() or "auto"
        if runtime not in RUNTIMES:
            raise ValueError(f"SEGZOO_RUNTIME must be one of {RUNTIMES}, got {runtime!r}")
    if runtime != "auto":
        return runtime
    if recipe.device.type != "cpu" or recipe.precision != "32-true":
        return "torch"
    import importlib.util

    return "onnxruntime" if importlib.util.find_spec("onnxruntime") is not None else "torch"


@functools.cache
def cpu_model_name() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), or what :mod:`platform` knows. Virtual
    machines often report a generic name (``Intel(R) Xeon(R) Processor`` on CPUs with and
    without AMX alike), so the family and model numbers follow where cpuinfo has them."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if fields.get("cpu family") and fields.get("model"):
        name += f", family {fields['cpu family']} model {fields['model']}"
    return name


def device_name(device: torch.device | str) -> str:
    """``NVIDIA A10G`` or ``CPU AMD EPYC (2 threads, native bf16)``: what a speed was measured on."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    bf16 = ", native bf16" if cpu_has_native_bf16() else ""
    return f"CPU {cpu_model_name()} ({torch.get_num_threads()} threads{bf16})"


def _mallopt(*settings: tuple[int, int]) -> bool:
    """Apply glibc ``mallopt`` settings; False where there is no glibc (e.g. musl, macOS),
    whose allocators behave otherwise."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    # mallopt returns 1 on success; its values are C ints.
    return all([bool(mallopt(param, value)) for param, value in settings])


def return_freed_memory_to_the_system() -> bool:
    """The app's policy: fix malloc's mmap threshold at :data:`MMAP_THRESHOLD_BYTES`, so that a
    long-lived server under concurrent requests gives freed photos and tensors back. True if
    applied."""
    return _mallopt((_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep the memory a training or evaluation step frees for the next step.

    By default glibc gives every large block (a CPU activation or gradient tensor) its own
    ``mmap`` and unmaps it when it is freed, so every step faults its pages in again and the
    kernel zeroes each one: on the 2-core Zen 3 a float32 training run spent a fifth of its CPU
    time there (``benchmarks/bench_allocator.py`` measures it). Serving large blocks from the
    heap and not trimming it keeps them mapped, at the cost of memory held between steps (peak
    resident memory up to 16% higher in that benchmark). For long-lived batch processes (``segzoo train`` and
    ``segzoo evaluate``); the app does the opposite (:func:`return_freed_memory_to_the_system`).
    ``SEGZOO_KEEP_FREED_MEMORY=0`` leaves malloc as it is.
    Returns whether the setting took (glibc only)."""
    if os.environ.get("SEGZOO_KEEP_FREED_MEMORY", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    return _mallopt((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
