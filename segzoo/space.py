"""``segzoo space deploy SPACE_ID``: put the app on a Hugging Face Space, weights included.

The Hub refuses plain git pushes of files over 10 MB, and checkpoints are 12-90 MB, so
``git push`` of this repository fails unless every weights file goes through Git LFS.
:meth:`huggingface_hub.HfApi.upload_folder` has no such limit: it stores large files in the
Hub's large-file storage itself. This module selects what the Space needs (the app, the
package, the requirements, the checkpoints, the leaderboard, the example photos), writes
the Space's ``README.md`` (its front matter configures the Space) and uploads them in one
commit, deleting files of an earlier deploy that are no longer part of it.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path
from typing import Any

from segzoo.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointError, read_json
from segzoo.hub import CHECKPOINT_FILES, _stage

APP_FILES = ("app.py", "requirements.txt")
PACKAGE = "segzoo"
LEADERBOARD = "benchmarks/leaderboard.json"
EXAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
# Folders a deploy owns: remote files there that the new deploy lacks are deleted.
MANAGED_PATTERNS = [f"{PACKAGE}/**", "checkpoints/**", "examples/**", "benchmarks/**"]


def project_root() -> Path:
    """The folder holding ``app.py`` and the ``segzoo`` package (a source checkout)."""
    return Path(__file__).resolve().parents[1]


def find_checkpoints(checkpoints: Path) -> list[Path]:
    """``<checkpoints>/<dataset>/<model>/`` folders holding a config and weights, sorted."""
    return sorted(p.parent for p in checkpoints.glob(f"*/*/{CONFIG_FILE}") if (p.parent / WEIGHTS_FILE).is_file())


def select_space_files(root: Path, checkpoints: Path | None = None) -> dict[str, Path]:
    """Path in the Space -> local file, for everything the app needs to run there.

    ``checkpoints`` (default ``<root>/checkpoints``) is uploaded as ``checkpoints/``, the
    app's default; of each checkpoint only the files the app reads (no ``resume/`` state).
    """
    root = Path(root)
    checkpoints = Path(checkpoints) if checkpoints is not None else root / "checkpoints"
    files: dict[str, Path] = {}
    for name in APP_FILES:
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name}: missing; --root must be the segzoo source folder (with app.py)")
        files[name] = root / name
    for path in sorted((root / PACKAGE).rglob("*")):
        # The whole package, data files included; not the interpreter's byte-code caches.
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[path.relative_to(root).as_posix()] = path
    for directory in find_checkpoints(checkpoints):
        relative = directory.relative_to(checkpoints).as_posix()
        for name in CHECKPOINT_FILES:
            if (directory / name).is_file():
                files[f"checkpoints/{relative}/{name}"] = directory / name
    if (root / LEADERBOARD).is_file():
        files[LEADERBOARD] = root / LEADERBOARD
    examples = root / "examples"
    if examples.is_dir():
        for path in sorted(examples.iterdir()):
            if path.suffix.lower() in EXAMPLE_SUFFIXES or path.name == "README.md":
                files[f"examples/{path.name}"] = path
    return files


def pinned_version(requirements: Path, package: str) -> str | None:
    """``X`` of ``package==X`` in a requirements file."""
    pattern = re.compile(rf"^\s*{re.escape(package)}\s*==\s*([^\s;#]+)", re.IGNORECASE)
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = pattern.match(line)
        if match:
            return match.group(1)
    return None


def space_readme(root: Path, files: dict[str, Path]) -> str:
    """The Space's ``README.md``: the project README's front matter (title, colours, licence,
    hardware-independent settings) with ``sdk: gradio``, ``app_file: app.py`` and
    ``sdk_version`` set to the Gradio pinned in requirements.txt, and a short page listing
    the models served (the project README's links would be broken on the Space)."""
    from huggingface_hub import SpaceCard

    root = Path(root)
    readme = root / "README.md"
    card = SpaceCard.load(readme) if readme.is_file() else SpaceCard("---\ntitle: segzoo\n---\n")
    data = card.data
    data.sdk = "gradio"
    data.app_file = "app.py"
    gradio = pinned_version(root / "requirements.txt", "gradio")
    if gradio:
        data.sdk_version = gradio
    title = data.get("title") or "segzoo"
    lines = [f"# {title}", ""]
    if data.get("short_description"):
        lines += [f"{data.get('short_description')}.", ""]
    lines += [
        "Upload a photo, pick the models, press **Compare**: every model's mask side by side, with "
        "each model's time and, given a ground-truth mask, its mIoU. Built with segzoo "
        "(`segzoo space deploy`).",
        "",
        "| data set | model | test mIoU % |",
        "|---|---|---|",
    ]
    served = sorted({Path(p).parent for p in files if p.startswith("checkpoints/") and p.endswith(CONFIG_FILE)})
    for folder in served:
        _, dataset, model = folder.parts
        metrics_path = files.get(f"{folder.as_posix()}/metrics.json")
        miou = None
        if metrics_path is not None:
            try:
                miou = read_json(metrics_path).get("miou")
            except CheckpointError:
                miou = None
        lines.append(f"| {dataset} | `{model}` | {'–' if miou is None else f'{100 * miou:.1f}'} |")
    if not served:
        lines.append("| – | no checkpoints deployed | – |")
    if "examples/README.md" in files:
        lines += ["", "The example photos' sources and licences: `examples/README.md`."]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"


def deploy_space(
    space_id: str,
    root: Path | None = None,
    checkpoints: Path | None = None,
    private: bool = False,
    variables: dict[str, str] | None = None,
    token: str | None = None,
    api: Any = None,
) -> str:
    """Create the Space (Gradio SDK) if needed and upload the app in one commit; returns the
    commit URL. ``variables`` become Space variables (e.g. ``SEGZOO_MAX_SIDE``)."""
    from huggingface_hub import HfApi

    root = Path(root) if root is not None else project_root()
    files = select_space_files(root, checkpoints)
    readme = space_readme(root, files)
    api = api or HfApi(token=token)
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    for key, value in (variables or {}).items():
        api.add_space_variable(space_id, key, value)
    with tempfile.TemporaryDirectory(prefix="segzoo-space-") as staging:
        _stage({**files, "README.md": readme}, Path(staging))
        commit = api.upload_folder(
            repo_id=space_id,
            repo_type="space",
            folder_path=staging,
            commit_message=f"Deploy segzoo ({sum(p.startswith('checkpoints/') for p in files)} checkpoint files)",
            delete_patterns=MANAGED_PATTERNS,
        )
    return str(getattr(commit, "commit_url", commit))


def _parse_variable(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def run_deploy(args: argparse.Namespace) -> int:
    root = Path(args.root) if args.root else project_root()
    checkpoints = Path(args.checkpoints) if args.checkpoints else None
    if args.dry_run:
        files = select_space_files(root, checkpoints)
        total = sum(p.stat().st_size for p in files.values())
        for name, path in files.items():
            print(f"{path.stat().st_size / 1e6:9.2f} MB  {name}")
        print(f"{len(files) + 1} files (with the generated README.md), {total / 1e6:.1f} MB; README.md:\n")
        print(space_readme(root, files))
        return 0
    url = deploy_space(args.space_id, root, checkpoints, private=args.private, variables=dict(args.variable or []))
    print(f"deployed to https://huggingface.co/spaces/{args.space_id} ({url}); the Space builds and starts in a "
          "few minutes")  # fmt: skip
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "space",
        help="deploy the app to a Hugging Face Space, checkpoints included",
        description="See docs/deploy.md.",
    )
    commands = p.add_subparsers(dest="space_command", metavar="COMMAND", required=True)
    deploy = commands.add_parser(
        "deploy",
        help="upload the app, its package and the checkpoints to a Gradio Space",
        description="Create the Space if needed (Gradio SDK) and upload app.py, segzoo/, requirements.txt, "
        "the checkpoints, benchmarks/leaderboard.json, examples/ and a README.md with the Space's front matter, "
        "in one commit (large files go to the Hub's large-file storage; no git or Git LFS needed). Log in "
        "first: `hf auth login`, or set HF_TOKEN.",
    )
    deploy.add_argument("space_id", metavar="SPACE_ID", help="<user>/<space name>")
    deploy.add_argument("--checkpoints", metavar="DIR", help="checkpoint folder to serve (default: checkpoints/)")
    deploy.add_argument("--root", metavar="DIR", help="segzoo source folder with app.py (default: this checkout)")
    deploy.add_argument("--private", action="store_true", help="create the Space private")
    deploy.add_argument("--variable", metavar="KEY=VALUE", type=_parse_variable, action="append",
                        help="set a Space variable, e.g. SEGZOO_MAX_SIDE=640 (repeatable)")  # fmt: skip
    deploy.add_argument("--dry-run", action="store_true", help="list the files and print the README; upload nothing")
    deploy.set_defaults(func=run_deploy)
