"""Command line and launch: host, port, device, and Hugging Face Spaces (ZeroGPU) support."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from segzoo.devices import PRECISIONS, RUNTIMES, return_freed_memory_to_the_system

log = logging.getLogger(__name__)

DEFAULT_PORT = 7860
SESSION_CAPACITY = 1000


def parse_args(
    argv: Sequence[str] | None = None, root: Path | None = None, env: Mapping[str, str] = os.environ
) -> argparse.Namespace:
    """Options; defaults come from the environment (``SEGZOO_*``, ``PORT``, Spaces' variables)."""
    root = Path.cwd() if root is None else root
    parser = argparse.ArgumentParser(
        prog="app.py", description="Compare segzoo's trained segmentation models on your photos, in the browser."
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=Path(env.get("SEGZOO_CHECKPOINTS", root / "checkpoints")),
        help="folder of checkpoints, <dir>/<dataset>/<model>/ (env SEGZOO_CHECKPOINTS; default: checkpoints/)",
    )
    parser.add_argument(
        "--leaderboard",
        type=Path,
        default=Path(env.get("SEGZOO_LEADERBOARD", root / "benchmarks" / "leaderboard.json")),
        help="leaderboard file written by `segzoo leaderboard` (default: benchmarks/leaderboard.json)",
    )
    parser.add_argument(
        "--examples", type=Path, default=root / "examples", help="folder of example photos (default: examples/)"
    )
    parser.add_argument(
        "--max-side",
        type=int,
        default=int(env.get("SEGZOO_MAX_SIDE", 1024)),
        help="downscale larger photos to this longer side before inference; "
        "results are shown at full size (default 1024)",
    )
    parser.add_argument(
        "--host", default=None, help="address to listen on (default: 0.0.0.0 on Spaces, else 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=None, help="port (default: $PORT, $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--cache-size", type=int, default=0,
                        help="models kept loaded at once (default 0: every model, loaded on first use)")  # fmt: skip
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bf16 on CPUs with native bf16 and on GPUs, else float32 (default: auto)",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="what runs the semantic models. auto: onnxruntime where they run in float32 on the CPU (no "
        "native bf16; each is exported in the background and served by PyTorch until then), else PyTorch "
        "(env SEGZOO_RUNTIME; default: auto)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for inference (default: the CPUs available)"
    )
    args = parser.parse_args(argv)
    args.host, args.port = server_address(args.host, args.port, env)
    if args.max_side is not None and args.max_side < 32:
        parser.error(f"--max-side must be at least 32, got {args.max_side}")
    return args


def on_spaces(env: Mapping[str, str] = os.environ) -> bool:
    return bool(env.get("SPACE_ID"))


def server_address(host: str | None, port: int | None, env: Mapping[str, str] = os.environ) -> tuple[str, int]:
    """Spaces routes traffic to 0.0.0.0:$PORT (7860); locally listen on loopback only."""
    if host is None:
        host = env.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_spaces(env) else "127.0.0.1")
    if port is None:
        port = int(env.get("PORT") or env.get("GRADIO_SERVER_PORT") or DEFAULT_PORT)
    return host, port


def zero_gpu(env: Mapping[str, str] = os.environ) -> bool:
    """Running on a ZeroGPU Space (which sets SPACES_ZERO_GPU)?"""
    return env.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def gpu_decorator(env: Mapping[str, str] = os.environ) -> Callable[[Callable], Callable]:
    """``spaces.GPU`` on ZeroGPU (a GPU is attached only while the function runs), else a no-op."""
    if zero_gpu(env):
        try:
            import spaces  # provided by Hugging Face Spaces, not a dependency

            return spaces.GPU
        except ImportError:
            log.warning("SPACES_ZERO_GPU is set but the `spaces` package is missing; running without it")
    return lambda fn: fn


def create_app(args: argparse.Namespace, env: Mapping[str, str] = os.environ):  # noqa: ANN201 - gr.Blocks
    """The Gradio app the options describe (not started)."""
    from segzoo.app.catalog import ModelCache, configure_threads
    from segzoo.app.context import AppContext
    from segzoo.app.ui import build_app
    from segzoo.checkpoint import CheckpointError

    configure_threads(args.threads)
    on_zero = zero_gpu(env)
    device = args.device or ("cuda" if on_zero else None)
    context = AppContext(
        checkpoints=args.checkpoints,
        cache=ModelCache(device=device, capacity=args.cache_size, precision=args.precision, runtime=args.runtime),
        max_side=args.max_side,
        leaderboard_path=args.leaderboard,
        examples_dir=args.examples,
    )
    if on_zero:
        # ZeroGPU runs each GPU call in a fresh worker: load every model now, in the main
        # process, where `spaces` defers the move to CUDA; the workers then share them.
        context.cache.capacity = None
        for entry in context.catalog.entries():
            try:
                context.cache.get(entry)
            except (CheckpointError, RuntimeError) as exc:  # reported again when it is selected
                log.warning("%s: %s", entry.directory, exc)
    else:
        context.cache.prepare(context.catalog.entries())  # onnxruntime: export them now, in the background
    log.info(
        "%d trained models in %s (%s); %s; runtime %s",
        len(context.catalog),
        args.checkpoints,
        ", ".join(context.catalog.datasets) or "none",
        context.cache.recipe.describe(),
        context.cache.runtime,
    )
    return build_app(context, gpu=gpu_decorator(env))


def launch(demo, args: argparse.Namespace, **overrides):  # noqa: ANN001, ANN201 - gr.Blocks
    """Serve ``demo`` as ``args`` say (queue, upload limit, theme); ``overrides`` go to ``launch``."""
    import gradio as gr

    from segzoo.app.ui import CSS

    if not return_freed_memory_to_the_system():
        log.info("malloc's mmap threshold left as it is (not glibc)")

    options = dict(
        server_name=args.host,
        server_port=args.port,
        show_error=True,
        max_file_size="50mb",
        allowed_paths=[str(args.examples)] if args.examples.is_dir() else None,
        theme=gr.themes.Soft(),
        css=CSS,
        # Gradio keeps ~80 kB of page configuration per session until this many newer
        # sessions push it out (default 10000: up to 800 MB); API clients never close theirs.
        state_session_capacity=SESSION_CAPACITY,
    )
    return demo.queue(max_size=32).launch(**{**options, **overrides})


def main(argv: Sequence[str] | None = None, root: Path | None = None) -> None:
    """``python app.py``: build the app and serve it until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per internal request otherwise
    args = parse_args(argv, root)
    launch(create_app(args), args)
