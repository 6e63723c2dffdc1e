"""How many CamVid training samples per second the data pipeline delivers.

Reads the SegNet-split CamVid training frames from disk, applies the training
augmentation (random scale 0.5-2, crop 360x480, flip, colour jitter, ImageNet
normalisation) in ``--workers`` loader processes, and times whole batches arriving in the
main process (worker start-up excluded: the first batch is a warm-up). The files sit in
the OS page cache after the first pass, as they do during training.

It also reports the CPU time the workers spent per sample. On a shared machine the wall
clock figure depends on the other load; ``workers / cpu_seconds_per_sample`` is what the
same workers deliver on otherwise idle cores.

    python benchmarks/bench_dataloader.py --root ../shared/datasets/camvid --workers 2

writes benchmarks/dataloader.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segzoo.data import get_dataset  # noqa: E402
from segzoo.data.loader import make_loader  # noqa: E402
from segzoo.data.transforms import train_transform  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=[360, 480], metavar=("H", "W"))
    parser.add_argument("--epochs", type=int, default=2, help="passes over the 367 training frames")
    parser.add_argument("--out", default=str(Path(__file__).with_name("dataloader.json")))
    args = parser.parse_args()

    dataset = get_dataset("camvid", args.root, "train", transform=train_transform(tuple(args.size), ignore_index=11))
    loader = make_loader(dataset, args.batch_size, train=True, num_workers=args.workers, pin_memory=False)
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)

    iterator = iter(loader)
    first_batch = len(next(iterator)[0])  # warm-up: starts the workers
    samples, start = 0, time.perf_counter()
    for epoch in range(args.epochs):
        for images, masks in iterator:
            assert images.shape[-2:] == masks.shape[-2:] == tuple(args.size)
            samples += images.shape[0]
        if epoch + 1 < args.epochs:
            iterator = iter(loader)
    seconds = time.perf_counter() - start
    rate = samples / seconds
    del iterator, loader  # stop the persistent workers so their CPU time is counted
    gc.collect()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    cpu_per_sample = worker_cpu / (samples + first_batch)

    result = {
        "benchmark": "CamVid training samples per second from disk",
        "samples_per_second": round(rate, 1),
        "cpu_seconds_per_sample": round(cpu_per_sample, 4),
        "samples_per_second_on_idle_cores": round(args.workers / cpu_per_sample, 1),
        "samples": samples,
        "seconds": round(seconds, 2),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "crop": args.size,
        "augmentation": "random scale 0.5-2, pad, random crop, horizontal flip, colour jitter, normalise",
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_before": round(load_before, 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "command": "python benchmarks/bench_dataloader.py " + " ".join(sys.argv[1:]),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"workers used {1000 * cpu_per_sample:.1f} ms CPU per sample: "
        f"{args.workers / cpu_per_sample:.0f} samples/s with {args.workers} idle cores"
    )
    print(
        f"{rate:.1f} samples/s ({samples} samples in {seconds:.1f} s, {args.workers} workers, "
        f"batch {args.batch_size}, crop {args.size[0]}x{args.size[1]}); wrote {args.out}"
    )


if __name__ == "__main__":
    main()
