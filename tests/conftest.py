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


@pytest.fixture(autouse=True, scope="session")
def _serving_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The app's tests run on PyTorch unless they ask for onnxruntime (on a CPU without bf16,
    ``auto`` would export every app test's models in the background), and exports made for
    serving go to a temporary cache, never the user's. Apps started as subprocesses inherit both."""
    saved = {name: os.environ.get(name) for name in ("SEGZOO_RUNTIME", "SEGZOO_CACHE")}
    os.environ["SEGZOO_RUNTIME"] = saved["SEGZOO_RUNTIME"] or "torch"
    os.environ["SEGZOO_CACHE"] = str(tmp_path_factory.mktemp("segzoo-cache"))
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


class RecordingHfApi:
    """Stands in for ``huggingface_hub.HfApi`` in the upload tests: records the calls and
    keeps what would have been uploaded (paths in the repository -> bytes)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.uploaded: dict[str, bytes] = {}

    def create_repo(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        self.calls.append(("create_repo", args, kwargs))

    def add_space_variable(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        self.calls.append(("add_space_variable", args, kwargs))

    def upload_folder(self, **kwargs):  # noqa: ANN003, ANN201
        self.calls.append(("upload_folder", (), kwargs))
        folder = Path(kwargs["folder_path"])
        prefix = f"{kwargs['path_in_repo']}/" if kwargs.get("path_in_repo") else ""
        self.uploaded = {prefix + p.relative_to(folder).as_posix(): p.read_bytes()
                         for p in folder.rglob("*") if p.is_file()}  # fmt: skip
        return type("CommitInfo", (), {"commit_url": "https://huggingface.co/alice/zoo/commit/abc"})()
