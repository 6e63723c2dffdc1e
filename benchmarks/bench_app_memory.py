"""Does the app's memory come back down under load? Resident memory of the served app
while concurrent API clients press Compare.

Starts ``app.py`` on 127.0.0.1 (loopback only) on a free port with ``--checkpoints``, waits
for it, then sends photos through ``/compare`` with gradio_client: a warm-up (models
loaded, caches and allocator pools filled), then ``--requests`` more, in rounds of
``--clients`` concurrent clients, each a new client (a new Gradio session, as separate
visitors are) sending ``--per-client`` photos. The server's resident memory (VmRSS of its
process) is sampled every ``--interval`` seconds throughout and once more after
``--settle`` seconds of quiet. The growth that counts is from the end of the warm-up to
the end: a leak grows with every request, a cache stops growing.

Everything is bounded: request counts, a per-request timeout and ``--max-seconds`` for the
whole run (the server is stopped at the end, whatever happens).

    python benchmarks/bench_app_memory.py --checkpoints checkpoints --clients 20 --requests 200

writes benchmarks/app_memory.json (``--out``). ``--budget-mb`` (default 50) is the growth
the run is judged against; the exit status is 1 when it is exceeded.

Before the load, every model the app serves is loaded, as a visitor comparing all of them
on every label set would: one Compare per label set with all its models. Where the app
serves with onnxruntime (a CPU without native bf16), it exports each semantic model in the
background and keeps PyTorch's copy until then; the benchmark waits for those exports (into
a fresh cache) and compares once more, so the figure is the served steady state. With
``--requests 0`` that figure is all it measures:

    python benchmarks/bench_app_memory.py --requests 0 --out benchmarks/app_memory_all_models.json

What it found: the growth the issue reported (tens of MB per few dozen requests, never
given back) was not a leak in segzoo's code. Calling the Compare function in a loop in one
process keeps a flat RSS. Served, the requests run on Gradio's worker threads, and glibc's
malloc, once a large block has been freed, raises its mmap threshold to that size, so later
photos, tensors and PNG buffers come from per-thread heaps that keep freed memory. With
the threshold fixed at 1 MB (``segzoo.devices.return_freed_memory_to_the_system``, as
``launch`` does) the same load stays flat. Two per-session costs were bounded as well: the
comparison kept for the opacity slider (now one store of the latest 16, at most 64 MB,
each session holding only a key) and Gradio's per-session page state (1000 sessions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB (Linux /proc), None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


class Sampler(threading.Thread):
    """Samples the server's RSS every ``interval`` seconds: ``(seconds since start, MB, phase)``."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float, str]] = []
        self.phase = "start"
        self.start_time = time.perf_counter()
        self._stop_event = threading.Event()

    def sample(self) -> float | None:
        value = rss_mb(self.pid)
        if value is not None:
            self.samples.append((round(time.perf_counter() - self.start_time, 2), round(value, 1), self.phase))
        return value

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def write_photos(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """Distinct photo-like images (smooth colour fields plus noise), PNG."""
    rng = np.random.default_rng(0)
    photos = []
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        channels = [np.sin(xx / (20 + 7 * i) + c) * 80 + np.cos(yy / (30 + 5 * c)) * 60 + 128 for c in range(3)]
        base = np.stack(channels, axis=-1)
        image = (base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
        path = folder / f"photo{i}.png"
        Image.fromarray(image).save(path)
        photos.append(path)
    return photos


def start_server(args: argparse.Namespace, port: int, log_path: Path, cache: Path) -> subprocess.Popen:
    command = [
        sys.executable, str(REPO / "app.py"), "--checkpoints", str(args.checkpoints), "--host", "127.0.0.1",
        "--port", str(port), "--leaderboard", str(log_path.parent / "no-leaderboard.json"),
        "--examples", str(log_path.parent / "no-examples"), "--device", "cpu",
    ]  # fmt: skip
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.max_side:
        command += ["--max-side", str(args.max_side)]
    # A fresh cache: the exports the app makes are part of what is measured.
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "SEGZOO_CACHE": str(cache)}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)


def wait_until_up(url: str, server: subprocess.Popen, deadline: float) -> None:
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with status {server.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the app did not answer at {url} in time")


def choose_models(checkpoints: Path, dataset: str | None, models: list[str] | None) -> tuple[str, list[str]]:
    """The data set and models to compare: as given, else the first data set and all its models."""
    if dataset and models:
        return dataset, models
    sys.path.insert(0, str(REPO))
    from segzoo.app.catalog import Catalog

    catalog = Catalog.scan(checkpoints)
    if not catalog.label_sets:
        raise SystemExit(f"no checkpoints in {checkpoints}")
    dataset = dataset or catalog.datasets[0]
    return dataset, models or [e.key for e in catalog.label_sets[dataset].entries]


def served_runtime() -> str:
    """What the app serves semantic models with on this machine (its defaults)."""
    sys.path.insert(0, str(REPO))
    from segzoo.devices import compute_recipe, resolve_runtime

    return resolve_runtime("auto", compute_recipe("cpu"))


def load_every_model(url: str, photo: Path, checkpoints: Path, cache: Path, args: argparse.Namespace) -> dict:
    """Compare once per label set with all its models; where the app serves with onnxruntime,
    wait for its exports and compare again (PyTorch's copies are then dropped)."""
    sys.path.insert(0, str(REPO))
    from segzoo.app.catalog import Catalog
    from segzoo.export import onnx_cache_path

    catalog = Catalog.scan(checkpoints)
    runtime = served_runtime()
    passes = 2 if runtime == "onnxruntime" else 1
    started = time.perf_counter()
    for attempt in range(passes):
        if attempt:  # the exports run in the app's background thread
            pending = [e for e in catalog.entries() if e.task == "semantic"]
            deadline = time.time() + args.export_timeout
            while pending and time.time() < deadline:
                pending = [e for e in pending if not onnx_cache_path(e.directory, cache / "onnx").is_file()]
                time.sleep(2)
            if pending:
                raise TimeoutError(f"no onnxruntime export after {args.export_timeout:g} s: {pending}")
        for dataset, label_set in catalog.label_sets.items():
            models = [e.key for e in label_set.entries]
            one_client(url, [photo], dataset, models, args.request_timeout)
    return {
        "runtime": runtime,
        "models": [f"{e.dataset}/{e.key}" for e in catalog.entries()],
        "seconds": round(time.perf_counter() - started, 1),
    }


def one_client(url: str, photos: list[Path], dataset: str, models: list[str], timeout: float) -> list[float]:
    """A new client (a new session) sending its photos one after the other; seconds per request."""
    from gradio_client import Client, handle_file

    # No downloads: the results stay on the server; only its memory is measured here.
    client = Client(url, verbose=False, httpx_kwargs={"timeout": timeout}, download_files=False,
                    analytics_enabled=False)  # fmt: skip
    seconds = []
    try:
        for photo in photos:
            start = time.perf_counter()
            client.predict(
                image=handle_file(str(photo)), dataset=dataset, models=models, opacity=0.5, ground_truth=None,
                score_threshold=0.5, api_name="/compare",
            )  # fmt: skip
            seconds.append(time.perf_counter() - start)
    finally:
        client.close()
    return seconds


def run_rounds(
    url: str, photos: list[Path], requests: int, args: argparse.Namespace, dataset: str, models: list[str],
    deadline: float,
) -> tuple[list[float], int]:  # fmt: skip
    """``requests`` Compare calls from rounds of ``args.clients`` new concurrent clients."""
    per_round = args.clients * args.per_client
    seconds, errors, sent = [], 0, 0
    rounds = (requests + per_round - 1) // per_round
    for _ in range(rounds):
        if time.time() > deadline:
            raise TimeoutError("--max-seconds reached")
        batch = min(per_round, requests - sent)
        jobs = []
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            for c in range((batch + args.per_client - 1) // args.per_client):
                n = min(args.per_client, batch - c * args.per_client)
                mine = [photos[(sent + c * args.per_client + k) % len(photos)] for k in range(n)]
                jobs.append(pool.submit(one_client, url, mine, dataset, models, args.request_timeout))
            for job in as_completed(jobs):
                try:
                    seconds += job.result()
                except Exception as exc:  # counted and reported; the run goes on
                    errors += 1
                    print(f"request failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        sent += batch
        print(f"  {sent}/{requests} requests", flush=True)
    return seconds, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=Path, default=REPO / "checkpoints")
    parser.add_argument("--dataset", help="data set folder under --checkpoints (default: the first)")
    parser.add_argument("--models", nargs="+", help="model folders to compare (default: all of the data set)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients per round (default 20)")
    parser.add_argument("--per-client", type=int, default=3, help="photos each client sends (default 3)")
    parser.add_argument("--warmup", type=int, default=60, help="requests before the baseline (default 60)")
    parser.add_argument("--requests", type=int, default=200, help="requests measured after warm-up (default 200)")
    parser.add_argument("--photo-size", type=int, nargs=2, default=[960, 720], metavar=("W", "H"))
    parser.add_argument("--photos", type=int, default=6, help="distinct photos cycled through (default 6)")
    parser.add_argument("--max-side", type=int, help="the app's --max-side")
    parser.add_argument("--threads", type=int, help="the app's --threads")
    parser.add_argument("--interval", type=float, default=0.5, help="RSS sampling period, seconds")
    parser.add_argument("--settle", type=float, default=10.0, help="quiet seconds before the final sample")
    parser.add_argument("--request-timeout", type=float, default=300.0, help="seconds per request")
    parser.add_argument("--export-timeout", type=float, default=1800.0,
                        help="seconds to wait for the app's onnxruntime exports (default 1800)")  # fmt: skip
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="bound on the whole run")
    parser.add_argument("--budget-mb", type=float, default=50.0, help="allowed growth after warm-up (MB)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("app_memory.json"))
    args = parser.parse_args()
    for name in ("clients", "per_client", "photos"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.requests < 0 or args.warmup < 0:
        parser.error("--requests and --warmup must be >= 0 (--requests 0: only every model loaded)")
    if args.requests > 100_000 or args.clients > 256:
        parser.error("keep --requests <= 100000 and --clients <= 256")

    deadline = time.time() + args.max_seconds
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="segzoo-bench-memory-") as tmp:
        tmp = Path(tmp)
        photos = write_photos(tmp, args.photos, *args.photo_size)
        server = start_server(args, port, tmp / "server.log", tmp / "cache")
        sampler = Sampler(server.pid, args.interval)
        warm_seconds, warm_errors, seconds, errors = [], 0, [], 0
        baseline_mb = final_mb = None
        try:
            wait_until_up(url, server, min(deadline, time.time() + 300))
            dataset, models = choose_models(args.checkpoints, args.dataset, args.models)
            sampler.start()
            started_mb = sampler.sample()
            print(f"app up at {url} (pid {server.pid}, {started_mb:.0f} MB); loading every model it serves")
            sampler.phase = "every model"
            every_model = load_every_model(url, photos[0], args.checkpoints, tmp / "cache", args)
            time.sleep(min(args.settle, 5))
            every_model["rss_mb"] = round(sampler.sample(), 1)
            print(f"every model loaded ({len(every_model['models'])}, served with {every_model['runtime']}): "
                  f"{every_model['rss_mb']:.0f} MB")  # fmt: skip
            if args.requests:  # 0: only every model loaded
                print(f"load: {dataset}: {', '.join(models)}")
                sampler.phase = "warmup"
                warm_seconds, warm_errors = run_rounds(url, photos, args.warmup, args, dataset, models, deadline)
                time.sleep(min(args.settle, 5))
                sampler.phase = "baseline"
                baseline_mb = sampler.sample()
                sampler.phase = "load"
                seconds, errors = run_rounds(url, photos, args.requests, args, dataset, models, deadline)
                sampler.phase = "settle"
                time.sleep(args.settle)
                final_mb = sampler.sample()
        finally:
            sampler.stop()
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
            log_tail = (tmp / "server.log").read_text(errors="replace").splitlines()[-20:]
    load = [mb for _, mb, phase in sampler.samples if phase in ("load", "settle")]
    growth = final_mb - baseline_mb if args.requests else 0.0
    result = {
        "benchmark": "app resident memory under concurrent Compare requests",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "checkpoints": str(args.checkpoints),
        "dataset": dataset if args.requests else None,  # of the load test
        "models": models if args.requests else None,
        "photo_size": args.photo_size,
        "clients_per_round": args.clients,
        "photos_per_client": args.per_client,
        "warmup_requests": args.warmup,
        "requests": args.requests,
        "errors": warm_errors + errors,
        "warmup_errors": warm_errors,
        "median_request_seconds": round(float(np.median(seconds)), 3) if seconds else None,
        "every_model_loaded": every_model,
        "rss_mb": {
            "started": round(started_mb, 1),
            "after_warmup": None if baseline_mb is None else round(baseline_mb, 1),
            "peak_under_load": round(max(load), 1) if load else None,
            "final": None if final_mb is None else round(final_mb, 1),
        },
        "growth_after_warmup_mb": round(growth, 1) if args.requests else None,
        "budget_mb": args.budget_mb,
        "within_budget": growth <= args.budget_mb if args.requests else None,
        "samples": sampler.samples,
        "server_log_tail": log_tail,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.requests:
        print(f"wrote {args.out}")
        return 0
    print(
        f"RSS {started_mb:.0f} MB at start, {baseline_mb:.0f} after {args.warmup} warm-up requests, "
        f"{final_mb:.0f} after {args.requests} more ({growth:+.1f} MB; budget {args.budget_mb:g}); "
        f"{warm_errors + errors} errors; wrote {args.out}"
    )
    return 0 if growth <= args.budget_mb and not (warm_errors + errors) else 1


if __name__ == "__main__":
    sys.exit(main())
