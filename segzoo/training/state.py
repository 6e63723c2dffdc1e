"""Resume state for ``segzoo train --resume``, without pickle.

One file, ``<out>/resume/state.safetensors``, written atomically after every epoch:
the tensors (model weights in full precision, optimizer moments, RNG states) are the
safetensors payload; everything else (epoch, best score, optimizer hyper-parameters,
scheduler counters, the training options) is JSON in the file's metadata. Being a single
file, it is always consistent: a run killed while writing it leaves the previous epoch's.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from segzoo.checkpoint import CheckpointError, load_weights, save_weights

RESUME_DIR = "resume"
STATE_FILE = "state.safetensors"
_META_KEY = "segzoo_resume"
_META_DIGEST = "segzoo_resume_sha256"


def resume_path(out: str | Path) -> Path:
    return Path(out) / RESUME_DIR / STATE_FILE


@dataclass
class ResumeState:
    epoch: int  # epochs completed (the next epoch to run has this 0-based index)
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    info: dict[str, Any]  # best score and epoch, options, elapsed seconds ...
    rng: dict[str, Any]
    ema: dict[str, torch.Tensor]  # the weight average (empty when the run keeps none)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer ``state_dict()`` -> (tensors, JSON). Per-parameter tensors become
    ``optimizer.<param id>.<name>``; ``None`` and numbers stay in the JSON part."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for param_id, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param_id}.{name}"] = value
            else:
                plain.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "plain": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    for param_id, entries in meta["plain"].items():
        state.setdefault(int(param_id), {}).update(entries)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in group.items()} for group in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss = random.getstate()
    plain = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, list(internal), gauss]}
    return tensors, plain


def restore_rng(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"].cpu())
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k].cpu() for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    kind, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))


def save_resume_state(
    out: str | Path,
    epoch: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    scheduler_state: dict[str, Any],
    info: dict[str, Any],
    ema_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the state after ``epoch`` completed epochs (weights kept in float32)."""
    opt_tensors, opt_meta = _flatten_optimizer(optimizer_state)
    rng_tensors, rng_meta = capture_rng()
    tensors = {f"model.{k}": v for k, v in model_state.items()} | opt_tensors | rng_tensors
    tensors |= {f"ema.{k}": v for k, v in (ema_state or {}).items()}
    meta = {
        "epoch": epoch,
        "optimizer": opt_meta,
        "scheduler": scheduler_state,
        "rng": rng_meta,
        "info": info,
    }
    text = json.dumps(meta, allow_nan=False)
    path = resume_path(out)
    metadata = {_META_KEY: text, _META_DIGEST: hashlib.sha256(text.encode()).hexdigest()}
    save_weights(path, tensors, half=False, metadata=metadata)
    return path


def _read_meta(path: Path) -> dict[str, Any]:
    """The JSON half of a resume state (epoch, options ...), verified against its digest."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # SafetensorError on a truncated header
        raise CheckpointError(
            f"{path}: cannot read the resume state ({exc}); the file is corrupt or truncated"
        ) from None
    text = metadata.get(_META_KEY)
    if text is None or hashlib.sha256(text.encode()).hexdigest() != metadata.get(_META_DIGEST):
        raise CheckpointError(f"{path}: resume metadata is missing or was modified")
    return json.loads(text)


def saved_options(out: str | Path) -> dict[str, Any] | None:
    """The training options of the run whose resume state is in ``out`` (``None`` when there
    is none), read from the file's metadata without loading its tensors."""
    path = resume_path(out)
    return _read_meta(path)["info"]["options"] if path.is_file() else None


def resumed_epochs(out: str | Path) -> int | None:
    """The epochs the run in ``out`` was started for, ``None`` without a resume state: a
    ``--resume`` without ``--epochs`` keeps them, since its learning-rate schedule was laid
    out for them (the data set's default may differ, e.g. on a CPU of another kind)."""
    options = saved_options(out)
    return int(options["epochs"]) if options and options.get("epochs") else None


def load_resume_state(out: str | Path) -> ResumeState:
    path = resume_path(out)
    tensors = load_weights(path)  # verifies the tensors' digest
    meta = _read_meta(path)
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    rng = {"tensors": {k: v for k, v in tensors.items() if k.startswith("rng.")}, "plain": meta["rng"]}
    return ResumeState(
        epoch=int(meta["epoch"]),
        model=model,
        optimizer=_unflatten_optimizer(tensors, meta["optimizer"]),
        scheduler=meta["scheduler"],
        info=meta["info"],
        rng=rng,
        ema={k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")},
    )
