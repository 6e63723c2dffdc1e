"""The latest comparisons, kept so the opacity and score sliders re-draw without running the
models again.

They live in one bounded store, each session holding only its key. Kept in the session
state itself, every session would pin its photo and label maps (megabytes) until Gradio
drops the session, and API clients never close theirs: memory grew with each new client.
The key expires too, like any per-session value should.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict

from segzoo.app.compare import Comparison

COMPARISON_TTL_SECONDS = 900
COMPARISON_STORE_BYTES = 64 * 2**20
COMPARISON_STORE_ITEMS = 16


class ComparisonStore:
    """The most recent comparisons by key, within a byte and a count budget (least recently
    used dropped first; the newest is always kept). A session whose comparison was dropped
    simply has to press Compare again to re-blend."""

    def __init__(self, max_bytes: int = COMPARISON_STORE_BYTES, max_items: int = COMPARISON_STORE_ITEMS) -> None:
        self.max_bytes, self.max_items = max_bytes, max_items
        self._items: OrderedDict[str, tuple[Comparison, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def put(self, comparison: Comparison) -> str:
        key = uuid.uuid4().hex
        size = comparison_bytes(comparison)
        with self._lock:
            self._items[key] = (comparison, size)
            self._bytes += size
            while len(self._items) > 1 and (len(self._items) > self.max_items or self._bytes > self.max_bytes):
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
        return key

    def get(self, key: str | None) -> Comparison | None:
        with self._lock:
            if not isinstance(key, str) or key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]


def comparison_bytes(comparison: Comparison) -> int:
    """The arrays a comparison holds (photo, working image, label maps, instance masks)."""
    arrays = [comparison.image, comparison.work_image] + [o.labels for o in comparison.outputs]
    size = 4096 * len(comparison.outputs) + sum(array.nbytes for array in arrays if array is not None)
    return size + sum(o.instances.nbytes for o in comparison.outputs if o.instances is not None)
