"""How many CamVid training samples per second ``segzoo train``'s data pipeline delivers.

Builds the training batches with the code ``segzoo train --dataset camvid`` runs, and its
defaults: frames resized to a short side of 360, random scale 0.5-2, crop 360x480 (padded
with the ignore label), flip, then colour jitter and ImageNet normalisation of each batch.
No model runs: it times batches ready for one. As in training, the frames are either

* resident (``--resident on``): decoded once into memory (the decoding is timed apart),
  each batch then augmented in the main process. ``segzoo train`` does this when the data
  set takes under a quarter of the device's memory, as CamVid does on a CPU; or
* streamed (``--resident off``): ``--workers`` loader processes (0: the main process)
  decode and augment every sample every epoch.

It also reports the CPU time spent per sample (main process and loader workers). On a
shared machine the wall-clock figure depends on the other load; CPU time does not.

    python benchmarks/bench_dataloader.py --root ../shared/datasets/camvid

writes benchmarks/dataloader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segzoo.data import get_dataset  # noqa: E402
from segzoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from segzoo.training.augment import AugmentConfig, finish_batch  # noqa: E402
from segzoo.training.data import (  # noqa: E402
    AugmentedSamples,
    EpochBatches,
    PreparedSamples,
    ResidentTrainSet,
    estimate_bytes,
    fits_on_device,
    train_batches,
)
from segzoo.training.defaults import dataset_defaults  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (loader workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def main() -> None:
    defaults = dataset_defaults("camvid")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid"))
    parser.add_argument("--resident", choices=["auto", "on", "off"], default="auto",
                        help="frames decoded once into memory (auto: as segzoo train decides)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=0, help="loader processes (segzoo train on a CPU: 0)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--size", type=int, nargs=2, default=list(defaults.size), metavar=("H", "W"))
    parser.add_argument("--epochs", type=int, default=2, help="passes over the 367 training frames")
    parser.add_argument("--batches", type=int, help="batches per epoch (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("dataloader.json")))
    args = parser.parse_args()

    size = tuple(args.size)
    dataset = get_dataset("camvid", args.root, "train")
    samples = PreparedSamples(dataset, min(size), train=True)
    augment = AugmentConfig(size=size, scale=defaults.scale)
    fill = tuple(round(m * 255) for m in IMAGENET_MEAN)
    pad_label = dataset.info.ignore_index
    resident = {"on": True, "off": False}.get(args.resident)
    if resident is None:
        resident = fits_on_device(estimate_bytes(samples), torch.device("cpu"))
    batches = EpochBatches(len(dataset), args.batch_size, args.seed, limit=args.batches)
    load_average = os.getloadavg()[0]

    load_seconds = 0.0
    if resident:
        start = time.perf_counter()
        cpu = torch.device("cpu")
        source = ResidentTrainSet(samples, augment, args.seed, fill, pad_label, cpu, args.workers, progress=False)
        load_seconds = time.perf_counter() - start
    else:
        source = AugmentedSamples(samples, augment, args.seed, fill, pad_label)
    count, cpu_start, start = 0, cpu_seconds(), time.perf_counter()
    for epoch in range(args.epochs):
        batches.set_epoch(epoch)
        for images, masks, jitter in train_batches(source, batches, args.workers, pin_memory=False):
            x = finish_batch(images, jitter, IMAGENET_MEAN, IMAGENET_STD)
            assert x.shape[-2:] == masks.shape[-2:] == size
            count += len(x)
    seconds = time.perf_counter() - start
    cpu_per_sample = (cpu_seconds() - cpu_start) / count

    result = {
        "benchmark": "CamVid training samples per second, segzoo train's data pipeline",
        "samples_per_second": round(count / seconds, 1),
        "cpu_seconds_per_sample": round(cpu_per_sample, 4),
        "resident": resident,
        "decode_once_seconds": round(load_seconds, 2) if resident else None,
        "samples": count,
        "seconds": round(seconds, 2),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "crop": list(size),
        "augmentation": f"short side {min(size)}, random scale {augment.scale[0]}-{augment.scale[1]}, pad, "
        "random crop, horizontal flip, colour jitter, normalise",
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": round(load_average, 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": "python benchmarks/bench_dataloader.py " + " ".join(sys.argv[1:]),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    where = "resident in memory" if resident else f"streamed by {args.workers} worker(s)"
    print(
        f"{count / seconds:.1f} samples/s, {1000 * cpu_per_sample:.1f} ms CPU per sample ({count} samples, "
        f"{where}, batch {args.batch_size}, crop {size[0]}x{size[1]}); wrote {args.out}"
    )


if __name__ == "__main__":
    main()
