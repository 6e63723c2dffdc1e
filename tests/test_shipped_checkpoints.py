"""Regression test of the shipped checkpoints: each must still score, on the example
frames shipped in examples/, at least what was recorded when it was trained
(checkpoints/<dataset>/<model>/regression.json, written by benchmarks/train_zoo.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from segzoo.evaluate import REGRESSION_FILE, score_example_frames

from conftest import REPO_ROOT

SHIPPED = sorted(p.parent for p in (REPO_ROOT / "checkpoints").glob(f"*/*/{REGRESSION_FILE}"))


@pytest.mark.skipif(not SHIPPED, reason="no shipped checkpoint has a regression.json")
@pytest.mark.parametrize("checkpoint", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_checkpoint_keeps_its_score(checkpoint: Path) -> None:
    recorded = json.loads((checkpoint / REGRESSION_FILE).read_text())
    now = score_example_frames(checkpoint, REPO_ROOT / "examples")
    assert now["weights_sha256"] == recorded["weights_sha256"], "weights changed: rerun benchmarks/train_zoo.py"
    assert now["frames"] == recorded["frames"]
    # Same weights, same frames: only float summation order may differ between machines.
    assert now["miou"] >= recorded["miou"] - 1e-3
    assert now["pixel_accuracy"] >= recorded["pixel_accuracy"] - 1e-3
