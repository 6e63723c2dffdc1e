"""``segzoo download NAME --root DIR`` and ``segzoo data check|list``."""

from __future__ import annotations

import argparse
import json
import os

from segzoo.data import DATASETS, detect_dataset, get_dataset
from segzoo.data.download import RESOURCES

CHECK_SPLITS = {
    "camvid": ["train", "val", "test"],
    "oxford_pet": ["trainval", "test"],
    "voc2012": ["train", "val"],
    "folder": ["all"],
}


def run_download(args: argparse.Namespace) -> int:
    from segzoo.data.download import download

    root = download(args.name, args.root, mirror=args.mirror, keep_archives=args.keep_archives, timeout=args.timeout)
    print(f"{args.name} is ready in {root}; e.g. segzoo data check {root}")
    return 0


def _options(args: argparse.Namespace, name: str) -> dict:
    given = {
        "mode": args.mode,
        "classes": args.classes,
        "annotations": args.annotations,
        "via_attribute": args.via_attribute,
    }
    allowed = {"oxford_pet": {"mode"}, "folder": {"classes", "annotations", "via_attribute"}}.get(name, set())
    wrong = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None and k not in allowed]
    if wrong:
        raise ValueError(f"{', '.join(wrong)} does not apply to {name}")
    options = {k: v for k, v in given.items() if v is not None}
    if args.num_classes is not None:
        if name != "folder" or args.classes:
            raise ValueError("--num-classes applies to folder data sets without a classes file")
        options["classes"] = [f"class_{i}" for i in range(args.num_classes)]
    return options


def run_check(args: argparse.Namespace) -> int:
    from segzoo.data.check import check_dataset, format_reports

    name = args.dataset or detect_dataset(args.root)
    options = _options(args, name)
    splits = args.split or CHECK_SPLITS[name]
    workers = min(4, os.cpu_count() or 1) if args.workers is None else args.workers
    reports = []
    for split in splits:
        dataset = get_dataset(name, args.root, split, missing="skip", **options)
        reports.append(check_dataset(dataset, workers=workers, progress=not args.quiet))
    print(format_reports(reports, max_problems=args.max_problems))
    if args.json:
        summary = [
            {
                "dataset": r.dataset,
                "split": r.split,
                "samples": r.samples,
                "problems": r.problems,
                "class_names": r.class_names,
                "pixels": r.stats.pixels.tolist(),
                "ignored_pixels": r.stats.ignored,
                "images_with_class": r.stats.images_with.tolist(),
                "median_frequency_weights": r.stats.median_frequency_weights().round(4).tolist(),
            }
            for r in reports
        ]
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0 if all(r.ok for r in reports) else 1


def run_list(args: argparse.Namespace) -> int:
    from segzoo.data import get_dataset_info

    for name, entry in DATASETS.items():
        print(f"{name:<11} splits: {', '.join(entry.splits):<27} {entry.description}")
        if name != "folder":
            info = get_dataset_info(name)
            print(
                f"{'':<11} {info.num_classes} classes: {', '.join(info.class_names)}; ignore_index {info.ignore_index}"
            )
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download and unpack a data set",
        description="Fetch the official archives (resumable, checksum-verified) "
        "and unpack them into DIR in the layout the loader reads.",
    )
    parser.add_argument("name", choices=list(RESOURCES), metavar="NAME", help=", ".join(RESOURCES))
    parser.add_argument("--root", required=True, metavar="DIR", help="folder for the data set (created)")
    parser.add_argument("--mirror", metavar="URL", help="fetch <URL>/<archive name> instead of the official address")
    parser.add_argument("--keep-archives", action="store_true", help="keep the archives in DIR/.downloads")
    parser.add_argument(
        "--timeout", type=float, default=15.0, metavar="SECONDS", help="network timeout in seconds (default 15)"
    )
    parser.set_defaults(func=run_download)

    data = subparsers.add_parser("data", help="check and list data sets")
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "check",
        help="report missing masks, size mismatches, unknown labels and class statistics",
        description="Load every sample as training would and report images without masks, unreadable files, "
        "image/mask size mismatches and label values outside the class list, then per-class pixel "
        "shares and median-frequency class weights. Exit status 1 if problems were found.",
    )
    check.add_argument("root", metavar="DIR")
    check.add_argument("--dataset", choices=list(DATASETS), help="loader to use (default: guessed from the layout)")
    check.add_argument(
        "--split", action="append", metavar="SPLIT", help="split to check (repeatable; default: all of them)"
    )
    check.add_argument("--mode", choices=["trimap", "binary", "species"], help="oxford_pet mask mode")
    check.add_argument("--classes", metavar="FILE", help="folder: classes file (class name -> colour)")
    check.add_argument(
        "--num-classes", type=int, metavar="N", help="folder: index masks with this many classes, no classes file"
    )
    check.add_argument("--annotations", metavar="FILE", help="folder: COCO or VIA JSON instead of masks/")
    check.add_argument("--via-attribute", metavar="NAME", help="folder: VIA region attribute holding the class")
    check.add_argument("--workers", type=int, metavar="N", help="loader processes (default: up to 4)")
    check.add_argument(
        "--max-problems", type=int, default=20, metavar="N", help="problems listed per split (default 20)"
    )
    check.add_argument("--json", metavar="FILE", help="also write the statistics and problems as JSON")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    check.set_defaults(func=run_check)
    listing = commands.add_parser("list", help="list the built-in data sets")
    listing.set_defaults(func=run_list)
