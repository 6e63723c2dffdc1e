"""Which trained models the app can offer, and a cache of the loaded ones.

Checkpoints live in ``<root>/<dataset>/<model>/`` (see :mod:`segzoo.checkpoint`). Each
``<dataset>`` folder is one *label set*: its models predict the same classes and share the
class colours, so their masks can be compared pixel by pixel. An instance model whose classes
are some of the label set's (Mask R-CNN on CamVid's cars, pedestrians and bicyclists, in
``camvid/``) joins it: its instances take those classes' colours and are scored on them. A
folder that cannot be used
(broken config, missing weights, unknown model, classes that differ from its siblings') is
left out with a reason in :attr:`Catalog.problems`, and the app keeps working with the rest.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from segzoo.checkpoint import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load,
    load_config,
    read_json,
)
from segzoo.devices import ComputeRecipe, compute_recipe, resolve_runtime
from segzoo.export import OnnxModule, onnx_cache_path, write_cached_onnx
from segzoo.inference import input_dtype

log = logging.getLogger(__name__)


@dataclass(eq=False)
class ModelEntry:
    """One checkpoint directory ``<root>/<dataset>/<key>/``."""

    dataset: str
    key: str  # the checkpoint folder's name, unique within its data set
    directory: Path
    config: dict[str, Any]
    family: str = ""
    classic: bool = False  # ModelSpec.classic: one of the 2015 classics, not an encoder model
    # An instance model in a label set of more classes: its classes' indices in the label set.
    label_set_indices: list[int] | None = None

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def task(self) -> str:
        return self.config.get("task", "semantic")

    @property
    def interim(self) -> bool:
        return bool(self.config.get("interim", False))

    @property
    def label(self) -> str:
        """What the UI shows: the folder name, marked when training has not finished."""
        return f"{self.key} (interim)" if self.interim else self.key

    @property
    def history_path(self) -> Path:
        return self.directory / HISTORY_FILE

    @property
    def weights_path(self) -> Path:
        return self.directory / WEIGHTS_FILE

    def metrics(self) -> dict[str, Any]:
        """``metrics.json`` (written by ``segzoo evaluate``), or ``{}`` when absent or unreadable."""
        path = self.directory / METRICS_FILE
        if not path.is_file():
            return {}
        try:
            data = read_json(path)
        except CheckpointError as exc:
            log.warning("%s", exc)
            return {}
        return data if isinstance(data, dict) else {}

    def test_miou(self) -> float:
        value = self.metrics().get("miou")
        return float(value) if isinstance(value, (int, float)) else math.nan

    def cache_key(self) -> tuple[str, int]:
        """Changes when the weights are rewritten (a retrained model is reloaded)."""
        try:
            return str(self.directory), self.weights_path.stat().st_mtime_ns
        except OSError:
            return str(self.directory), 0


@dataclass
class LabelSet:
    """The classes one data-set folder's models predict."""

    name: str
    class_names: list[str]
    palette: list[tuple[int, int, int]]
    ignore_index: int | None
    entries: list[ModelEntry] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def entry(self, key: str) -> ModelEntry:
        for entry in self.entries:
            if key in (entry.key, entry.label):
                return entry
        valid = ", ".join(e.key for e in self.entries) or "none"
        raise ValueError(f"no trained model {key!r} for data set {self.name!r}; trained: {valid}")

    def tasks(self) -> set[str]:
        return {e.task for e in self.entries}

    def classes_of(self, entry: ModelEntry) -> tuple[list[str], list[tuple[int, int, int]]]:
        """The names and colours of ``entry``'s classes, in its own class order."""
        indices = entry.label_set_indices or range(self.num_classes)
        return [self.class_names[i] for i in indices], [self.palette[i] for i in indices]


def instance_support_reason() -> str | None:
    """``None`` when Mask R-CNN results can be drawn; otherwise why not."""
    try:
        found = importlib.util.find_spec("segzoo.instance.predict") is not None
    except ImportError:
        found = False
    return None if found else "instance prediction (segzoo.instance.predict) is not installed"


@dataclass
class Catalog:
    """A snapshot of the checkpoints under ``root``; :meth:`scan` makes a fresh one."""

    root: Path
    label_sets: dict[str, LabelSet] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @classmethod
    def scan(cls, root: str | Path) -> Catalog:
        root = Path(root)
        catalog = cls(root=root)
        if not root.is_dir():
            return catalog
        instance_reason = instance_support_reason()
        by_dataset: dict[str, list[ModelEntry]] = {}
        for config_path in sorted(root.glob(f"*/*/{CONFIG_FILE}")):
            directory = config_path.parent
            try:
                entry = _read_entry(directory)
                if not entry.weights_path.is_file():
                    raise CheckpointError(f"{entry.weights_path}: file not found (training has not saved weights yet)")
                if entry.task == "instance" and instance_reason:
                    raise CheckpointError(f"{directory}: Mask R-CNN checkpoint skipped: {instance_reason}")
                by_dataset.setdefault(entry.dataset, []).append(entry)
            except (CheckpointError, ValueError) as exc:
                catalog.problems.append(str(exc))
        for dataset, entries in by_dataset.items():
            catalog._add_label_set(dataset, entries)
        for problem in catalog.problems:
            log.warning("%s", problem)
        return catalog

    def _add_label_set(self, dataset: str, entries: list[ModelEntry]) -> None:
        """The folder's label set is the class list most of its models share; others are skipped."""
        names = {
            e.key: [str(n) for n in e.config.get("class_names") or range(e.config["num_classes"])] for e in entries
        }
        for entry in entries:
            if len(names[entry.key]) != entry.config["num_classes"]:
                self.problems.append(
                    f"{entry.directory / CONFIG_FILE}: {len(names[entry.key])} class names "
                    f"for num_classes={entry.config['num_classes']}"
                )
        usable = [e for e in entries if len(names[e.key]) == e.config["num_classes"]]
        if not usable:
            return
        # The semantic models define a mixed folder's classes: an instance model covers only some.
        voters = [e for e in usable if e.task == "semantic"] or usable
        counts = Counter(tuple(names[e.key]) for e in voters)
        class_names = list(max(counts, key=counts.get))  # ties: the first in folder order
        first = next(e for e in usable if names[e.key] == class_names)
        palette = [tuple(int(v) for v in c) for c in first.config.get("palette") or []]
        if len(palette) < len(class_names):
            from segzoo.data.base import default_palette

            palette += default_palette(len(class_names))[len(palette) :]
        label_set = LabelSet(dataset, class_names, palette, first.config.get("ignore_index"))
        for entry in usable:
            if names[entry.key] == class_names:
                label_set.entries.append(entry)
            elif entry.task == "instance" and set(names[entry.key]) <= set(class_names):
                entry.label_set_indices = [class_names.index(n) for n in names[entry.key]]
                label_set.entries.append(entry)
            else:
                self.problems.append(
                    f"{entry.directory}: its classes {names[entry.key]} differ from those of the other models "
                    f"in {self.root / dataset} ({class_names}); keep one label set per folder"
                )
        self.label_sets[dataset] = label_set

    @property
    def datasets(self) -> list[str]:
        return list(self.label_sets)

    def entries(self) -> list[ModelEntry]:
        return [e for s in self.label_sets.values() for e in s.entries]

    def __len__(self) -> int:
        return len(self.entries())

    def label_set(self, dataset: str) -> LabelSet:
        if dataset not in self.label_sets:
            valid = ", ".join(self.label_sets) or "none"
            raise ValueError(f"no trained models for data set {dataset!r}; data sets with checkpoints: {valid}")
        return self.label_sets[dataset]

    def untrained(self, dataset: str) -> list[str]:
        """Registry models of this data set's task(s) that have no checkpoint in it."""
        from segzoo.registry import model_names

        label_set = self.label_sets.get(dataset)
        tasks = label_set.tasks() if label_set else {"semantic"}
        trained = {e.model for e in label_set.entries} if label_set else set()
        return [n for task in sorted(tasks) for n in model_names(task) if n not in trained]


def _read_entry(directory: Path) -> ModelEntry:
    from segzoo.registry import get_spec

    config = load_config(directory)
    if not isinstance(config.get("num_classes"), int) or config["num_classes"] < 1:
        raise CheckpointError(f"{directory / CONFIG_FILE}: num_classes must be a positive integer")
    try:
        spec = get_spec(config["model"])
    except ValueError as exc:
        raise CheckpointError(f"{directory / CONFIG_FILE}: {exc}") from None
    config.setdefault("task", spec.task)
    return ModelEntry(
        dataset=directory.parent.name,
        key=directory.name,
        directory=directory,
        config=config,
        family=spec.family,
        classic=spec.classic,
    )


Loader = Callable[[Path, torch.device], tuple[nn.Module, dict[str, Any]]]


def _load_checkpoint(directory: Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    return load(directory, device=device)


class ModelCache:
    """Models loaded on first use and kept; with a ``capacity``, the least recently used
    are dropped beyond it (default: every model stays, so Compare never reloads one).

    Semantic models run with the device's compute recipe (:mod:`segzoo.devices`: bf16
    autocast and channels-last on CPUs with native bf16 and on GPUs, float32 elsewhere);
    ``precision="32-true"`` forces float32 and ``channels_last=False`` the NCHW layout (the
    plain PyTorch path benchmarks compare against). Where the recipe is float32 on the CPU, the
    ``runtime`` (:func:`segzoo.devices.resolve_runtime`) is onnxruntime: each semantic model
    is exported (and verified against PyTorch) in a background thread, into
    :func:`segzoo.export.onnx_cache_dir`, and served by PyTorch until its export is ready.
    Mask R-CNN stays in PyTorch float32: its box and mask heads are not written for reduced
    precision.
    """

    def __init__(
        self,
        device: str | torch.device | None = None,
        capacity: int | None = None,
        precision: str = "auto",
        loader: Loader = _load_checkpoint,
        runtime: str = "auto",
        onnx_dir: str | Path | None = None,
        channels_last: str | bool = "auto",
    ) -> None:
        self.recipe = compute_recipe(device if device is not None else "auto", precision, channels_last)
        self.device = self.recipe.device
        self.runtime = resolve_runtime(runtime, self.recipe)
        if self.runtime == "onnxruntime" and self.device.type != "cpu":
            raise ValueError(f"the onnxruntime runtime serves on the CPU, not on {self.device}")
        self.capacity = None if not capacity else max(1, capacity)
        self._loader = loader
        self._models: OrderedDict[tuple[str, int], nn.Module] = OrderedDict()
        self._lock = threading.Lock()
        self._exports = OnnxExports(onnx_dir) if self.runtime == "onnxruntime" else None

    def __contains__(self, entry: ModelEntry) -> bool:
        return entry.cache_key() in self._models

    def __len__(self) -> int:
        return len(self._models)

    def get(self, entry: ModelEntry) -> nn.Module:
        key = entry.cache_key()
        with self._lock:
            model = self._models.get(key)
            onnx = self._onnx_for(entry)
            if model is not None and (onnx is None or isinstance(model, OnnxModule)):
                self._models.move_to_end(key)
                return model
            if onnx is not None:  # its export is ready: onnxruntime takes over from PyTorch
                model = OnnxModule(onnx, threads=torch.get_num_threads())
            else:
                model, _ = self._loader(entry.directory, self.device)
                if entry.task == "semantic":
                    model = self.recipe.prepare_model(model)
            if entry.task == "semantic":
                _warm_up(model.eval(), self.recipe)
            self._models[key] = model.eval()
            self._models.move_to_end(key)
            while self.capacity is not None and len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return model

    def _onnx_for(self, entry: ModelEntry) -> Path | None:
        """The entry's verified ONNX file when onnxruntime serves it and it is ready; asks
        for the export otherwise."""
        if self._exports is None or entry.task != "semantic":
            return None
        return self._exports.ready(entry)

    def prepare(self, entries: list[ModelEntry]) -> None:
        """Start exporting these models for onnxruntime now (at app start), not at first use."""
        for entry in entries:
            self._onnx_for(entry)

    def wait_for_exports(self, timeout: float | None = None) -> bool:
        """Block until the requested exports are done (True) or ``timeout`` seconds pass."""
        return self._exports is None or self._exports.wait(timeout)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


class OnnxExports:
    """Checkpoints exported to ONNX one at a time in a background thread
    (:func:`segzoo.export.write_cached_onnx`). An export already in the cache is used at once. A
    failed export is logged once and not retried: its model stays on PyTorch."""

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = cache_dir
        self._done: dict[tuple[str, int], Path | None] = {}
        self._pending: dict[tuple[str, int], tuple[Path, Path]] = {}  # -> (checkpoint, export)
        self._condition = threading.Condition()
        self._worker: threading.Thread | None = None

    def ready(self, entry: ModelEntry) -> Path | None:
        """The verified export of ``entry``'s weights if it is done; otherwise queue it, None."""
        key = entry.cache_key()  # a retrained checkpoint is exported again
        with self._condition:
            if key in self._done:
                return self._done[key]
            if key in self._pending:
                return None
            try:
                path = onnx_cache_path(entry.directory, self.cache_dir)
            except (OSError, CheckpointError) as exc:  # reported when the model itself loads
                log.warning("%s: not exported for onnxruntime: %s", entry.directory, exc)
                self._done[key] = None
                return None
            if path.is_file():  # exported by an earlier run of the app
                self._done[key] = path
                return path
            self._pending[key] = entry.directory, path
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="segzoo-onnx-export", daemon=True)
                self._worker.start()
        return None

    def wait(self, timeout: float | None = None) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: not self._pending, timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                if not self._pending:
                    self._worker = None  # under the lock: the next request starts a new worker
                    return
                key, (directory, target) = next(iter(self._pending.items()))
            try:
                path: Path | None = write_cached_onnx(directory, target)
                log.info("%s: served by onnxruntime from now on (%s)", directory, path)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the model on PyTorch
                log.warning("%s: stays on PyTorch, its ONNX export failed: %s", directory, exc)
                path = None
            with self._condition:
                self._done[key] = path
                del self._pending[key]
                self._condition.notify_all()


@torch.inference_mode()
def _warm_up(model: nn.Module, recipe: ComputeRecipe) -> None:
    """One small forward pass, so one-off kernel set-up is not counted in the first photo's time."""
    with recipe.autocast():
        model(recipe.prepare_input(torch.zeros(1, 3, 64, 64, dtype=input_dtype(model))))


def configure_threads(threads: int | None = None) -> int:
    """Use the CPUs this process may run on (a container's share, not the host's count)."""
    if threads is None:
        try:
            available = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS, Windows
            available = os.cpu_count() or 1
        threads = min(torch.get_num_threads(), available)
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()
