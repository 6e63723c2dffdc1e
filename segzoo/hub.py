"""Checkpoints on the Hugging Face Hub: ``hf://<user>/<repo>[@<revision>][/<subfolder>]``.

Loading goes through :func:`huggingface_hub.snapshot_download`, so a checkpoint is fetched
once into the Hub's cache (``HF_HUB_CACHE``, ``HF_HOME``) and used from there afterwards,
also offline (``HF_HUB_OFFLINE=1``). Without a network the Hub client would retry for a
while before falling back to the cache; one TCP connect with a short timeout tells us the
same in seconds, so a repository that is not cached fails fast with a message saying so.

``segzoo hub push CKPT REPO`` uploads a checkpoint folder with :meth:`HfApi.upload_folder`
and a model card (``README.md``) generated from its ``config.json`` and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from segzoo.checkpoint import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    read_json,
)
from segzoo.devices import PRECISION_NAMES
from segzoo.version import __version__

log = logging.getLogger(__name__)

SCHEME = "hf://"
# What a checkpoint needs on the Hub: loading reads the first two, the app the others.
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, HISTORY_FILE)
# Seconds to wait for a TCP connection to the Hub before treating it as unreachable.
DEFAULT_CONNECT_TIMEOUT = 3.0

_resolved: dict[str, Path] = {}  # hf:// URI -> local snapshot folder, for this process


@dataclass(frozen=True)
class HubCheckpoint:
    """A parsed ``hf://`` URI."""

    repo_id: str
    subfolder: str = ""
    revision: str | None = None

    @property
    def uri(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        return f"{SCHEME}{self.repo_id}{revision}" + (f"/{self.subfolder}" if self.subfolder else "")


def is_hub_uri(path: str | Path) -> bool:
    """True for ``hf://...``; also for ``hf:/...``, what ``Path("hf://...")`` turns it into."""
    return str(path).startswith("hf:/")


def parse_hub_uri(uri: str | Path) -> HubCheckpoint:
    """``hf://user/repo[@revision][/sub/folder]`` -> :class:`HubCheckpoint`."""
    text = str(uri)
    rest = text[len(SCHEME) :] if text.startswith(SCHEME) else text[len("hf:/") :]
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 2:
        raise ValueError(f"{text}: expected hf://<user>/<repo>[/<subfolder>]")
    user, repo = parts[0], parts[1]
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    if not user or not repo or (revision is not None and not revision):
        raise ValueError(f"{text}: expected hf://<user>/<repo>[@<revision>][/<subfolder>]")
    return HubCheckpoint(f"{user}/{repo}", "/".join(parts[2:]), revision)


def local_name(uri: str | Path) -> str:
    """A file-name-safe name for a Hub checkpoint: ``user--repo[--sub--folder]``."""
    ref = parse_hub_uri(uri)
    return "--".join([*ref.repo_id.split("/"), *ref.subfolder.split("/")]).strip("-")


def _offline_flag() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    return bool(constants.HF_HUB_OFFLINE) or env


def hub_unreachable(endpoint: str | None = None, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> str | None:
    """Why the Hub cannot be reached (offline mode, no route, no answer within ``timeout``
    seconds), or None when a TCP connection to it succeeds."""
    from huggingface_hub import constants

    if _offline_flag():
        return "HF_HUB_OFFLINE is set"
    parsed = urlparse(endpoint or constants.ENDPOINT)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)

    def connect() -> None:
        with socket.create_connection((host, port), timeout=timeout):
            pass

    # The name lookup inside create_connection has no timeout of its own: bound it too.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(connect).result(timeout=timeout + 0.5)
    except concurrent.futures.TimeoutError:
        return f"{host}:{port} did not answer within {timeout:g} s"
    except OSError as exc:
        return f"{host}:{port} is unreachable ({exc})"
    finally:
        pool.shutdown(wait=False)
    return None


def download_checkpoint(
    uri: str | Path,
    cache_dir: str | Path | None = None,
    timeout: float | None = None,
) -> Path:
    """The local folder of a Hub checkpoint, downloaded into the Hub cache when needed.

    Raises :class:`~segzoo.checkpoint.CheckpointError` with the reason and what to do: not
    cached while offline or unreachable, no such repository (or private without a token),
    unknown revision, or a repository that holds no segzoo checkpoint.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    ref = parse_hub_uri(uri)
    if timeout is None:
        timeout = float(os.environ.get("SEGZOO_HUB_TIMEOUT", DEFAULT_CONNECT_TIMEOUT))
    unreachable = hub_unreachable(timeout=timeout)
    prefix = f"{ref.subfolder}/" if ref.subfolder else ""
    try:
        folder = snapshot_download(
            ref.repo_id,
            revision=ref.revision,
            cache_dir=cache_dir,
            allow_patterns=[prefix + name for name in CHECKPOINT_FILES],
            local_files_only=unreachable is not None,
            library_name="segzoo",
            library_version=__version__,
        )
    except HFValidationError as exc:
        raise ValueError(f"{ref.uri}: not a valid repository name ({exc})") from None
    except LocalEntryNotFoundError:  # also IncompleteSnapshotError
        raise CheckpointError(
            f"{ref.uri}: not in the Hugging Face cache ({cache_dir or _cache_dir()}) and the Hub cannot be "
            f"reached ({unreachable or 'connection failed'}). Run once with network access to download it, "
            "or pass a local checkpoint folder"
        ) from None
    except GatedRepoError:
        raise CheckpointError(f"{ref.uri}: the repository is gated; accept its terms on the Hub and log in "
                              "(`hf auth login` or HF_TOKEN)") from None  # fmt: skip
    except RepositoryNotFoundError:
        raise CheckpointError(
            f"{ref.uri}: no such model repository on the Hub, or it is private and no valid token is set "
            "(`hf auth login` or HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{ref.uri}: the repository has no revision {ref.revision!r}") from None
    except HfHubHTTPError as exc:
        raise CheckpointError(f"{ref.uri}: the Hub refused the download ({str(exc).splitlines()[0]})") from None
    if unreachable is not None:
        log.warning("%s: using the cached copy (%s)", ref.uri, unreachable)
    directory = Path(folder) / ref.subfolder
    if not (directory / CONFIG_FILE).is_file():
        where = f"in {ref.subfolder}/" if ref.subfolder else "at the repository's top level"
        raise CheckpointError(
            f"{ref.uri}: no {CONFIG_FILE} {where}; not a segzoo checkpoint (a repository holding several "
            "checkpoints is addressed as hf://<user>/<repo>/<subfolder>)"
        )
    return directory


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint directory on disk: local paths as they are, ``hf://`` URIs downloaded
    (once per process) into the Hub cache."""
    if not is_hub_uri(path):
        return Path(path)
    key = parse_hub_uri(path).uri
    if key not in _resolved:
        _resolved[key] = download_checkpoint(key)
    return _resolved[key]


# ---------------------------------------------------------------------------- model card


def _precision_label(precision: str) -> str:
    """``float32``, ``bf16 autocast``, ``float16 autocast``; an unknown value as it is."""
    name = PRECISION_NAMES.get(precision, precision)
    return name if precision in ("32-true", name) else f"{name} autocast"


def _percent(value: Any) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{100 * value:.1f}"


def _card_data(config: dict[str, Any], metrics: dict[str, Any], family: str) -> Any:
    from huggingface_hub import EvalResult, ModelCardData

    task = config.get("task", "semantic")
    dataset = config.get("dataset", "unknown")
    split = metrics.get("split")
    eval_results = []
    scores = (
        [("mean_iou", "mIoU", metrics.get("miou")), ("accuracy", "pixel accuracy", metrics.get("pixel_accuracy")),
         ("dice", "mean Dice", metrics.get("mdice"))]
        if task == "semantic"
        else [("mask_ap", "mask AP", metrics.get("mask_AP")), ("box_ap", "box AP", metrics.get("box_AP"))]
    )  # fmt: skip
    for metric_type, metric_name, value in scores:
        if isinstance(value, (int, float)):
            eval_results.append(
                EvalResult(
                    task_type="image-segmentation",
                    task_name=f"{task.capitalize()} segmentation",
                    dataset_type=dataset,
                    dataset_name=dataset,
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_name=metric_name,
                    metric_value=round(float(value), 4),
                )
            )
    return ModelCardData(
        library_name="segzoo",
        pipeline_tag="image-segmentation",
        tags=[
            "image-segmentation",
            f"{task}-segmentation",
            "segzoo",
            family.lower().replace(" ", "-"),
            config["model"],
        ],  # fmt: skip
        datasets=[dataset],
        metrics=[m for m, _, v in scores if isinstance(v, (int, float))] or None,
        model_name=f"segzoo {config['model']} ({dataset})",
        eval_results=eval_results or None,
    )


def model_card_text(directory: str | Path, repo_id: str, path_in_repo: str | None = None) -> str:
    """``README.md`` for a checkpoint on the Hub: YAML front matter (library, tags, data set,
    metrics as a model index) and a description: classes, results, training, usage."""
    from huggingface_hub import ModelCard

    from segzoo.registry import get_spec

    directory = Path(directory)
    config = read_json(directory / CONFIG_FILE)
    metrics = read_json(directory / METRICS_FILE) if (directory / METRICS_FILE).is_file() else {}
    try:
        spec = get_spec(config["model"])
        family, description, paper = spec.family, spec.description, spec.paper
    except ValueError:
        family, description, paper = "segmentation", config["model"], ""
    training = config.get("training", {})
    dataset = config.get("dataset", "unknown")
    uri = f"{SCHEME}{repo_id}" + (f"/{path_in_repo.strip('/')}" if path_in_repo else "")
    lines = [
        f"# segzoo `{config['model']}` on {dataset}",
        "",
        f"{description}." + (f" Paper: {paper}." if paper else ""),
        "",
        f"Trained with segzoo (`segzoo train`), {config['num_classes']} classes"
        + (", **interim** (a reduced-resolution run, not the final recipe)" if config.get("interim") else "")
        + ".",
        "",
        "## Usage",
        "",
        "```python",
        "import segzoo",
        "",
        f'model, config = segzoo.load("{uri}")   # downloads once into the Hugging Face cache',
        "```",
        "",
        "```bash",
        f"segzoo predict {uri} photo.jpg --out predictions/",
        f"segzoo export {uri} --format onnx --out model.onnx",
        "```",
        "",
        f"Input: RGB scaled to [0, 1], normalised with mean {config.get('mean')} and std {config.get('std')}"
        + (f"; trained at a shorter side of {config['short_side']} pixels" if config.get("short_side") else "")
        + (
            f", run at {config['inference_short_side']} (chosen on the validation split by `segzoo tune-scale`)"
            if config.get("inference_short_side")
            else ""
        )
        + ".",
        "",
        "## Classes",
        "",
        "| index | class | colour |",
        "|---|---|---|",
    ]
    palette = config.get("palette") or []
    for index, name in enumerate(config["class_names"]):
        colour = "#{:02x}{:02x}{:02x}".format(*palette[index]) if index < len(palette) else "–"
        lines.append(f"| {index} | {name} | `{colour}` |")
    if config.get("ignore_index") is not None:
        lines += ["", f"Label {config['ignore_index']} is ignored (unlabelled) in training and evaluation."]
    lines += ["", "## Results", ""]
    if not metrics:
        lines.append("Not evaluated yet (`segzoo evaluate` writes `metrics.json`).")
    elif config.get("task", "semantic") == "semantic":
        partial = ", partial" if metrics.get("partial") else ""
        lines += [
            f"`segzoo evaluate` on the {metrics.get('split')} split ({metrics.get('num_images')} images{partial}), "
            f"{_precision_label(metrics.get('precision', '32-true'))}:",
            "",
            "| mIoU % | mDice % | pixel accuracy % | mean class accuracy % |",
            "|---|---|---|---|",
            f"| {_percent(metrics.get('miou'))} | {_percent(metrics.get('mdice'))} | "
            f"{_percent(metrics.get('pixel_accuracy'))} | {_percent(metrics.get('mean_class_accuracy'))} |",
        ]
        per_class = metrics.get("per_class_iou") or {}
        if per_class:
            lines += ["", "| class | IoU % |", "|---|---|"]
            lines += [f"| {name} | {_percent(iou)} |" for name, iou in per_class.items()]
    else:
        lines += [
            f"`segzoo evaluate` on the {metrics.get('split')} split: mask AP {_percent(metrics.get('mask_AP'))}, "
            f"box AP {_percent(metrics.get('box_AP'))}.",
        ]
    rows = [
        ("epochs", training.get("epochs")),
        ("best epoch (validation mIoU)", training.get("best_epoch")),
        ("best validation mIoU %", _percent(training.get("best_val_miou")) if "best_val_miou" in training else None),
        ("loss", training.get("loss")),
        ("optimizer, learning rate", f"{training.get('optimizer')}, {training.get('lr')}" if "lr" in training
         else None),
        ("batch size", training.get("batch_size")),
        ("crop size", "x".join(map(str, config["input_size"])) if config.get("input_size") else None),
        ("encoder weights", training.get("encoder_weights") or "none (from scratch)"),
        ("precision", training.get("precision")),
        ("hardware", training.get("device_name")),
        ("training time (hours)", round(training["train_seconds"] / 3600, 2) if "train_seconds" in training else None),
        ("segzoo version", config.get("segzoo_version")),
    ]  # fmt: skip
    lines += ["", "## Training", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows if value is not None]
    lines += [
        "",
        "## Files",
        "",
        f"`{CONFIG_FILE}` (model, classes, normalisation, training options), `{WEIGHTS_FILE}` (weights, with a "
        f"SHA-256 of the tensors in its metadata), `{HISTORY_FILE}` (per-epoch losses and scores)"
        + (f", `{METRICS_FILE}` (the evaluation above)" if metrics else "")
        + ".",
        "",
    ]
    content = f"---\n{_card_data(config, metrics, family).to_yaml()}\n---\n\n" + "\n".join(lines)
    return str(ModelCard(content))


# ---------------------------------------------------------------------------- upload


def _stage(files: dict[str, Path | str], folder: Path) -> None:
    """Lay out ``files`` (path in the repo -> local file, or text) under ``folder``; local
    files are symlinked, not copied (upload_folder reads through the links)."""
    for name, source in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            target.symlink_to(source.resolve())
        else:
            target.write_text(source, encoding="utf-8")


def push_checkpoint(
    checkpoint: str | Path,
    repo_id: str,
    private: bool = False,
    path_in_repo: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    api: Any = None,
) -> str:
    """Upload a checkpoint folder and its generated model card to a model repository
    (created if needed); returns the commit's URL."""
    from huggingface_hub import HfApi

    directory = Path(checkpoint)
    if not (directory / CONFIG_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{directory}: not a checkpoint directory (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    config = read_json(directory / CONFIG_FILE)
    api = api or HfApi(token=token)
    files: dict[str, Path | str] = {n: directory / n for n in CHECKPOINT_FILES if (directory / n).is_file()}
    files["README.md"] = model_card_text(directory, repo_id, path_in_repo)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory(prefix="segzoo-push-") as staging:
        _stage(files, Path(staging))
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=staging,
            path_in_repo=path_in_repo or None,
            repo_type="model",
            commit_message=commit_message or f"segzoo checkpoint {config['model']} ({config.get('dataset', '?')})",
        )
    return str(getattr(commit, "commit_url", commit))


def run_push(args: argparse.Namespace) -> int:
    url = push_checkpoint(
        args.checkpoint, args.repo, private=args.private, path_in_repo=args.path_in_repo, commit_message=args.message
    )
    uri = f"{SCHEME}{args.repo}" + (f"/{args.path_in_repo.strip('/')}" if args.path_in_repo else "")
    print(f"uploaded {args.checkpoint} -> {url}\nload it with segzoo.load({uri!r})")
    return 0


def run_card(args: argparse.Namespace) -> int:
    print(model_card_text(args.checkpoint, args.repo, args.path_in_repo), end="")
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "hub",
        help="checkpoints on the Hugging Face Hub (upload; load with hf://user/repo)",
        description="Every command that takes a checkpoint also takes hf://<user>/<repo>[@<revision>][/<subfolder>]: "
        "it is downloaded once into the Hugging Face cache (HF_HOME, HF_HUB_CACHE) and works offline from "
        "there (HF_HUB_OFFLINE=1).",
    )
    commands = p.add_subparsers(dest="hub_command", metavar="COMMAND", required=True)
    push = commands.add_parser(
        "push",
        help="upload a checkpoint folder with a generated model card",
        description="Create the model repository if needed and upload config.json, model.safetensors, "
        "history.csv, metrics.json and a README.md model card generated from them (log in first: "
        "`hf auth login`, or set HF_TOKEN).",
    )
    card = commands.add_parser("card", help="print the model card `push` would upload")
    for q in (push, card):
        q.add_argument("checkpoint", metavar="CKPT", help="checkpoint directory")
        q.add_argument("repo", metavar="REPO", help="model repository, <user>/<name>")
        q.add_argument("--path-in-repo", metavar="SUB", help="upload into this subfolder (several checkpoints in "
                       "one repository; load with hf://<user>/<name>/SUB)")  # fmt: skip
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--message", metavar="TEXT", help="commit message")
    push.set_defaults(func=run_push)
    card.set_defaults(func=run_card)
