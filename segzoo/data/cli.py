"""``segzoo download NAME --root DIR`` and ``segzoo data check|list``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from segzoo.data import DATASETS, TASKS, dataset_names, detect_dataset, get_dataset
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


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a JSON value (else a plain string), as ``segzoo train --dataset-option``."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def ignore_index_arg(text: str) -> int | None | str:
    """An integer, ``none`` (every pixel is labelled) or ``default`` (the classes file's)."""
    if text.lower() in ("none", "null"):
        return None
    if text == "default":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or none, got {text!r}") from None


def _options(args: argparse.Namespace, name: str) -> dict:
    """The data set options, built exactly as ``segzoo train`` passes them (its
    ``--dataset-option`` pairs), so the check decodes the labels training will see."""
    given = {
        "mode": args.mode,
        "classes": args.classes,
        "annotations": args.annotations,
        "via_attribute": args.via_attribute,
        "mask_type": args.mask_type,
    }
    folder_options = {"classes", "annotations", "via_attribute", "mask_type", "ignore_index"}
    allowed = {"oxford_pet": {"mode"}, "folder": folder_options}.get(name, set())
    wrong = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None and k not in allowed]
    if args.ignore_index != "default" and "ignore_index" not in allowed:
        wrong.append("--ignore-index")
    if wrong:
        raise ValueError(f"{', '.join(wrong)} does not apply to {name}")
    options = dict(args.dataset_option or [])
    for key, value in given.items():
        if value is None:
            continue
        if key in options and options[key] != value:
            raise ValueError(f"--{key.replace('_', '-')} {value} contradicts --dataset-option {key}={options[key]}")
        options[key] = value
    if args.ignore_index != "default":
        options["ignore_index"] = args.ignore_index
    if args.num_classes is not None:
        if name != "folder" or "classes" in options:
            raise ValueError("--num-classes applies to folder data sets without a classes file")
        options["classes"] = [f"class_{i}" for i in range(args.num_classes)]
    return options


def check_splits(name: str, root: str | Path) -> list[str]:
    """The splits ``segzoo data check`` reads by default: the data set's own, and for a
    folder with train/ val/ folders those folders (the first is the training split)."""
    if name == "folder":
        from segzoo.data.folder import split_folders

        folders = split_folders(root)
        if folders:
            return list(folders)
    return CHECK_SPLITS[name]


def run_check(args: argparse.Namespace) -> int:
    from segzoo.data.check import check_dataset, format_reports

    name = args.dataset or detect_dataset(args.root)
    options = _options(args, name)
    splits = args.split or check_splits(name, args.root)
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
                "warnings": r.warnings,
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

    for task in TASKS:
        print(f"{task} segmentation:")
        for name in dataset_names(task):
            entry = DATASETS[name]
            print(f"  {name:<16} splits: {', '.join(entry.splits):<27} {entry.description}")
            if entry.info is not None and name != "folder":
                info = get_dataset_info(name)
                print(
                    f"  {'':<16} {info.num_classes} classes: {', '.join(info.class_names)}; "
                    f"ignore_index {info.ignore_index}"
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
    check.add_argument(
        "--dataset", choices=dataset_names("semantic"), help="loader to use (default: guessed from the layout)"
    )
    check.add_argument(
        "--split", action="append", metavar="SPLIT", help="split to check (repeatable; default: all of them)"
    )
    check.add_argument("--mode", choices=["trimap", "binary", "species"], help="oxford_pet mask mode")
    check.add_argument("--classes", metavar="FILE", help="folder: classes file (class name -> colour)")
    check.add_argument(
        "--num-classes", type=int, metavar="N", help="folder: index masks with this many classes, no classes file"
    )
    check.add_argument(
        "--annotations",
        metavar="FILE",
        help="folder: COCO or VIA JSON instead of masks/ (with train/ val/ folders: its name in each)",
    )
    check.add_argument("--via-attribute", metavar="NAME", help="folder: VIA region attribute holding the class")
    check.add_argument(
        "--mask-type",
        choices=["auto", "index", "color"],
        help="folder: how mask PNGs are read (default auto: RGB and, with a colour classes file, palette PNGs "
        "as colours; grey PNGs as indices unless that is ambiguous)",
    )
    check.add_argument(
        "--ignore-index",
        type=ignore_index_arg,
        default="default",
        metavar="N",
        help="folder: stored value of ignored pixels (or none), overriding the classes file's",
    )
    check.add_argument(
        "--dataset-option",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="data set option as given to segzoo train --dataset-option (repeatable); check with the "
        "options you train with",
    )
    check.add_argument("--workers", type=int, metavar="N", help="loader processes (default: up to 4)")
    check.add_argument(
        "--max-problems", type=int, default=20, metavar="N", help="problems listed per split (default 20)"
    )
    check.add_argument("--json", metavar="FILE", help="also write the statistics and problems as JSON")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    check.set_defaults(func=run_check)
    listing = commands.add_parser("list", help="list the built-in data sets of both tasks")
    listing.set_defaults(func=run_list)
