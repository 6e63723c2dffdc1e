"""``segzoo models``: list the registered architectures."""

from __future__ import annotations

import argparse

from segzoo.registry import list_models


def run(args: argparse.Namespace) -> int:
    rows = list_models(task=args.task)
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}}  {'task':<8}  {'params':>11}  description")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['task']:<8}  {r['params']:>11,}  {r['description']}")
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the registered models")
    parser.add_argument("--task", choices=["semantic", "instance"], help="only this kind of model")
    parser.set_defaults(func=run)
