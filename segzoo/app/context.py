"""What the tabs share: the app's context (checkpoint catalogue, model cache, file locations)
and the data set and model choices the catalogue offers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from segzoo.app.catalog import Catalog, ModelCache

# For the events only the page uses: no /endpoint in the API (``api_visibility``).
PRIVATE_EVENT = {"api_visibility": "private"}


@dataclass
class AppContext:
    """What every request shares: the checkpoint catalogue (rescanned on page load), the
    model cache, the largest side a photo is run at, the leaderboard file and the examples."""

    checkpoints: Path
    cache: ModelCache
    max_side: int | None = 1024
    leaderboard_path: Path | None = None
    examples_dir: Path | None = None
    catalog: Catalog = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.catalog = Catalog.scan(self.checkpoints)

    def rescan(self) -> Catalog:
        catalog = Catalog.scan(self.checkpoints)
        with self._lock:
            self.catalog = catalog
        return catalog


def dataset_choices(catalog: Catalog) -> list[tuple[str, str]]:
    """(label, name) of each data set with trained models, for a dropdown."""
    choices = []
    for name, label_set in catalog.label_sets.items():
        n = len(label_set.entries)
        choices.append((f"{name} ({label_set.num_classes} classes, {n} model{'s' * (n != 1)})", name))
    return choices


def model_choices(catalog: Catalog, dataset: str | None) -> list[tuple[str, str]]:
    """(label, key) of the models trained on ``dataset``, for a checkbox group."""
    if not dataset or dataset not in catalog.label_sets:
        return []
    return [(e.label, e.key) for e in catalog.label_sets[dataset].entries]
