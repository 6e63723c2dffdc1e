"""Train, evaluate and rank the whole zoo with one recipe per data set.

    python benchmarks/train_zoo.py --data ../shared/datasets                 # GPU recipe
    python benchmarks/train_zoo.py --data ../shared/datasets --interim \\
        --models unet_efficientnet_b0 segnet --epochs 8                      # CPU stand-in

Every model of a data set gets the same recipe (crop size, epochs, loss, optimiser,
schedule, seed), so the comparison is fair. Each run is `segzoo train` (best epoch on
val), then `segzoo evaluate --split test`, and finally `segzoo leaderboard` regenerates
benchmarks/leaderboard.{csv,json} from the checkpoints' metrics. A model whose
checkpoint already has metrics.json is skipped unless --force is given, so a killed
sweep continues where it stopped.

--interim is the reduced-resolution CPU recipe: its checkpoints are marked interim in
their config and on the leaderboard, and are stand-ins until a GPU run replaces them.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import segzoo

# (segzoo data set, folder under --data, extra `segzoo train` options, models)
PLAN: list[tuple[str, str, list[str], list[str]]] = [
    ("camvid", "camvid", ["--class-weights", "median"], segzoo.model_names(task="semantic")),
    (
        "oxford_pet",
        "oxford-iiit-pet-sample",
        ["--dataset-option", "mode=trimap"],
        ["unet", "segnet", "unet_resnet34"],
    ),
]

GPU_RECIPE = ["--precision", "auto", "--channels-last", "--data-on-gpu", "auto"]
# Half resolution and a short schedule: what two CPU cores manage in minutes per model.
INTERIM_RECIPE = {
    "camvid": ["--size", "180", "240", "--batch-size", "8"],
    "oxford_pet": ["--size", "160", "160", "--batch-size", "8"],
}


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


README_START, README_END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


def _fmt(value: object, spec: str, scale: float = 1.0) -> str:
    """Format a number; missing values (None, NaN) print as a dash."""
    if isinstance(value, (int, float)) and value == value:
        return format(value * scale, spec)
    return "–"


def update_readme(readme: Path, leaderboard: Path) -> None:
    """Replace the README's table between the markers with benchmarks/leaderboard.csv."""
    from segzoo.leaderboard import load_leaderboard

    frame = load_leaderboard(leaderboard)
    lines = [
        "| data set | model | mIoU % | mDice % | pixel acc % | mask AP % | params | GFLOPs | CPU latency ms | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in frame.to_dict("records"):
        note = "interim (reduced-resolution CPU run)" if row["interim"] else ""
        if row["partial"]:
            note = (note + "; " if note else "") + "partial evaluation"
        lines.append(
            f"| {row['dataset']} | `{row['model']}` | {_fmt(row['miou'], '.1f', 100)} | "
            f"{_fmt(row['mdice'], '.1f', 100)} | {_fmt(row['pixel_accuracy'], '.1f', 100)} | "
            f"{_fmt(row['mask_ap'], '.1f', 100)} | {_fmt(row['params'], '.1f', 1e-6)} M | "
            f"{_fmt(row['gflops'], '.1f')} | {_fmt(row['latency_ms'], '.0f')} | {note} |"
        )
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    readme.write_text(text[:start] + "\n" + "\n".join(lines) + "\n" + text[end:], encoding="utf-8")


def record_regression(checkpoint: Path) -> None:
    """What tests/test_shipped_checkpoints.py holds the checkpoint to."""
    from segzoo.checkpoint import write_json
    from segzoo.evaluate import REGRESSION_FILE, score_example_frames

    try:
        write_json(checkpoint / REGRESSION_FILE, score_example_frames(checkpoint, Path("examples")))
    except FileNotFoundError as exc:  # no example frames with masks for this data set
        print(f"no regression record for {checkpoint}: {exc}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder holding camvid/ and oxford-iiit-pet-sample/")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument("--datasets", nargs="*", help="only these data sets")
    parser.add_argument("--models", nargs="*", help="only these models")
    parser.add_argument("--epochs", type=int, help="override the per-data-set default")
    parser.add_argument("--interim", action="store_true", help="reduced-resolution CPU recipe")
    parser.add_argument("--force", action="store_true", help="retrain models that have metrics")
    parser.add_argument(
        "--readme-only", action="store_true",
        help="only refresh the regression records and the README table of trained checkpoints",
    )
    args = parser.parse_args()
    if args.readme_only:
        for checkpoint in sorted(args.checkpoints.glob("*/*/metrics.json")):
            record_regression(checkpoint.parent)
        update_readme(Path("README.md"), Path("benchmarks/leaderboard.csv"))
        return 0

    segzoo_cmd = [sys.executable, "-m", "segzoo.cli"]
    for dataset, folder, options, models in PLAN:
        if args.datasets and dataset not in args.datasets:
            continue
        for model in models:
            if args.models and model not in args.models:
                continue
            out = args.checkpoints / dataset / model
            if (out / "metrics.json").exists() and not args.force:
                print(f"skip {dataset}/{model}: already evaluated", flush=True)
                continue
            recipe = ["--interim", *INTERIM_RECIPE[dataset]] if args.interim else GPU_RECIPE
            epochs = ["--epochs", str(args.epochs)] if args.epochs else []
            start = time.monotonic()
            run(
                [*segzoo_cmd, "train", "--model", model, "--dataset", dataset,
                 "--data-root", str(args.data / folder), "--out", str(out), "--overwrite",
                 *options, *recipe, *epochs]
            )
            run([*segzoo_cmd, "evaluate", str(out), "--split", "test"])
            record_regression(out)
            print(f"{dataset}/{model}: {time.monotonic() - start:.0f} s", flush=True)
    run([*segzoo_cmd, "leaderboard", "--checkpoints", str(args.checkpoints), "--out", "benchmarks"])
    update_readme(Path("README.md"), Path("benchmarks/leaderboard.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
