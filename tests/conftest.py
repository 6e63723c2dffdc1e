from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_datasets_dir() -> Path:
    """``$SEGZOO_SHARED_DATASETS`` or ``../shared/datasets`` beside the checkout."""
    return Path(os.environ.get("SEGZOO_SHARED_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    root = shared_datasets_dir()
    if not root.is_dir():
        pytest.skip(f"real data sets not found at {root} (set SEGZOO_SHARED_DATASETS)")
    return root


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
