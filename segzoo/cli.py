"""The ``segzoo`` command line. Each sub-command lives next to the code it drives and
adds itself through an ``add_subparser(subparsers)`` function in its module."""

from __future__ import annotations

import argparse
import importlib
import sys

from segzoo.version import __version__

# Modules that provide sub-commands, in the order ``segzoo --help`` lists them.
COMMAND_MODULES = [
    "segzoo.models.cli",
    "segzoo.data.cli",
    "segzoo.train",
    "segzoo.evaluate",
    "segzoo.tune_scale",
    "segzoo.predict",
    "segzoo.export",
    "segzoo.leaderboard",
    "segzoo.hub",
    "segzoo.space",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segzoo", description="Train, evaluate and compare image-segmentation models."
    )
    parser.add_argument("--version", action="version", version=f"segzoo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_subparser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # Expected user errors (bad name, missing file, corrupt checkpoint): one clear line.
        print(f"segzoo {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
