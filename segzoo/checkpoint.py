"""The checkpoint format the trainer writes and the app reads.

A checkpoint is a directory::

    model.safetensors   weights only (half precision by default), with a SHA-256 of the
                        tensor data in the file's metadata, so a truncated, corrupted or
                        edited file is detected at load time; a file without that digest
                        (re-saved by other tools) is refused too. The digest travels with the
                        file, so it cannot tell a deliberately substituted file (re-saved with
                        a new digest): the weights' published hash (``weights_sha256`` in the
                        leaderboard and metrics) is what guards against that
    config.json         model name and arguments, classes, palette, normalisation, input
                        size, data set, training options, segzoo version
    history.csv         one row per epoch (written by the trainer)
    metrics.json        written by ``segzoo evaluate``

Nothing is pickled. Every file is written to a temporary name and renamed into place, so
a process killed at any moment leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from segzoo.version import __version__

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
_DIGEST_KEY = "segzoo_sha256"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, tampered with, unverifiable or inconsistent."""


def atomic_write(path: str | Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; checkpoints are meant to be shared
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); the file is corrupt or truncated") from None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (what regression records and exports name weights by)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def training_stages(training: dict[str, Any]) -> list[dict[str, Any]]:
    """The stages of a checkpoint's training (its ``config.json`` ``training`` block), each
    with its epochs, wall seconds, device and precision: a fine-tuning stage (``--init-from``)
    may run on another machine in another precision than the stages before it. The earlier
    stages are those of the checkpoint it started from (``init_from["stages"]``; a start
    recorded before stages were gives none), then this one."""
    earlier = (training.get("init_from") or {}).get("stages", [])
    own = {
        "stage": training.get("stage", 1),
        "epochs": training.get("epochs"),
        "train_seconds": training.get("train_seconds"),
        "device_name": training.get("device_name"),
        "precision": training.get("precision"),
    }
    return [*earlier, own]


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        sha.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        sha.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def stored_in_half(t: torch.Tensor) -> bool:
    """Whether a half-precision checkpoint stores ``t`` as float16: every floating-point tensor
    whose values fit float16's range. One that would overflow to inf stays float32: batch norm
    makes the layer before it scale-invariant, so nothing keeps that layer's outputs small, and
    the running variance after it can pass 65,504 (the scratch UNet's first decoder block: all
    512 channels, up to 1.1 million, by epoch 24 on CamVid); stored as inf, it silences the
    channel at inference."""
    if not t.is_floating_point():
        return False
    return bool(torch.isinf(t.detach().half()).sum() == torch.isinf(t.detach()).sum())


def non_finite_values(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """How many inf or NaN values each floating-point tensor holds, for those that hold any."""
    counts = {name: int((~torch.isfinite(t)).sum()) for name, t in state_dict.items() if t.is_floating_point()}
    return {name: count for name, count in counts.items() if count}


def save_weights(
    path: str | Path,
    state_dict: dict[str, torch.Tensor],
    half: bool = True,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write a state dict as safetensors, atomically: with ``half``, floating-point tensors as
    float16 where they fit its range (:func:`stored_in_half`), float32 where they do not."""
    tensors = {
        # clone(): safetensors refuses tensors that share storage (tied weights) and, with
        # contiguous_format, tensors in channels-last layout (--channels-last training).
        name: (t.detach().half() if half and stored_in_half(t) else t.detach())
        .cpu()
        .clone(memory_format=torch.contiguous_format)
        for name, t in state_dict.items()
    }
    meta = {"format": "pt", **(metadata or {}), _DIGEST_KEY: _digest(tensors)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_weights(
    path: str | Path, device: str | torch.device = "cpu", allow_unverified: bool = False
) -> dict[str, torch.Tensor]:
    """Read a safetensors file written by :func:`save_weights` and verify its digest.

    A file without the digest (re-saved by another tool, which drops segzoo's metadata) is
    refused: nothing would then catch a corrupted copy. ``allow_unverified=True`` loads it
    anyway, with a warning, for a file you trust."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            expected = (f.metadata() or {}).get(_DIGEST_KEY)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read weights ({exc}); the file is corrupt or truncated") from None
    if expected is None:
        message = (
            f"{path}: no {_DIGEST_KEY} entry in the file's metadata, so its weights cannot be verified "
            "(the file was re-saved by a tool that drops segzoo's metadata, or not written by segzoo)"
        )
        if not allow_unverified:
            raise CheckpointError(
                f"{message}. If you trust the file, re-save it with segzoo.checkpoint.save_weights (which records "
                "the digest), or load it with allow_unverified=True"
            )
        warnings.warn(f"{message}; loading it unverified as asked", UserWarning, stacklevel=2)
    elif _digest(tensors) != expected:
        raise CheckpointError(f"{path}: weights do not match their recorded SHA-256; the file was modified")
    return {k: v.to(device) for k, v in tensors.items()}


def save_checkpoint(directory: str | Path, model: nn.Module, config: dict[str, Any], half: bool = True) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``."""
    directory = Path(directory)
    config = {**config, "segzoo_version": config.get("segzoo_version", __version__)}
    write_json(directory / CONFIG_FILE, config)
    save_weights(directory / WEIGHTS_FILE, model.state_dict(), half=half)
    return directory


def load_config(directory: str | Path) -> dict[str, Any]:
    """A checkpoint directory's ``config.json``, checked for the keys every loader needs."""
    config = read_json(Path(directory) / CONFIG_FILE)
    missing = [k for k in ("model", "num_classes") if k not in config]
    if missing:
        raise CheckpointError(f"{Path(directory) / CONFIG_FILE}: missing keys {missing}")
    return config


def load(
    directory: str | Path, device: str | torch.device = "cpu", allow_unverified: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint directory describes; returns ``(model.eval(), config)``.
    ``allow_unverified``: see :func:`load_weights`. Hub checkpoints (``hf://``) load through
    :func:`segzoo.load`, which downloads them first."""
    from segzoo.registry import create_model

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a checkpoint directory")
    config = load_config(directory)
    # The trained weights replace any pretrained ones: never download at load time.
    kwargs = {k: v for k, v in config.get("model_kwargs", {}).items() if k != "encoder_weights"}
    model = create_model(config["model"], num_classes=config["num_classes"], **kwargs)
    state = load_weights(directory / WEIGHTS_FILE, allow_unverified=allow_unverified)
    not_finite = sorted(non_finite_values(state))
    if not_finite:
        # Loads and runs, but the channels these feed are silenced: say so rather than serve it quietly.
        warnings.warn(
            f"{directory / WEIGHTS_FILE}: {', '.join(not_finite)} hold inf or NaN values (e.g. a batch-norm "
            "variance beyond float16's range, saved by segzoo before it kept such tensors in float32); "
            "predictions are degraded where they feed",
            stacklevel=2,
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{directory / WEIGHTS_FILE}: weights do not fit model {config['model']!r} "
            f"as configured in {CONFIG_FILE} ({str(exc).splitlines()[0]})"
        ) from None
    return model.to(device).eval(), config
