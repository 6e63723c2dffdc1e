"""`segzoo space deploy`: which files a Space gets, its README front matter, and the calls to
the Hub (a stub: nothing leaves this machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from conftest import RecordingHfApi
from huggingface_hub import SpaceCard

from segzoo.cli import main
from segzoo.hub import _stage
from segzoo.space import MANAGED_PATTERNS, deploy_space, pinned_version, project_root, select_space_files, space_readme

FRONT_MATTER = """---
title: segzoo
emoji: 🧩
colorFrom: indigo
colorTo: green
sdk: gradio
sdk_version: 1.0.0
python_version: "3.11"
app_file: app.py
pinned: false
license: mit
short_description: Compare segmentation models side by side on your photo
---

# segzoo

See [the docs](docs/deploy.md).
"""


def touch(path: Path, data: bytes | str = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture
def source(tmp_path) -> Path:
    """A source tree with everything a checkout holds, wanted by a Space or not."""
    root = tmp_path / "src"
    touch(root / "README.md", FRONT_MATTER)
    touch(root / "app.py", "print('app')")
    touch(root / "requirements.txt", "torch==2.14.1\ngradio==6.31.0  # the UI\npytest==9.2.0\n")
    touch(root / "pyproject.toml")
    for module in ("__init__.py", "app/__init__.py", "app/ui.py", "models/unet/model.py"):
        touch(root / "segzoo" / module)
    touch(root / "segzoo" / "__pycache__" / "cli.cpython-311.pyc")
    touch(root / "segzoo" / "data" / "classes.yaml")  # package data travels with the code
    touch(root / "tests" / "test_app.py")
    touch(root / "runs" / "camvid" / "unet" / "model.safetensors")
    touch(root / "docs" / "screenshots" / "compare.png")
    unet = root / "checkpoints" / "camvid" / "unet"
    for name in ("config.json", "model.safetensors", "history.csv", "regression.json", "resume/state.safetensors"):
        touch(unet / name, "{}" if name.endswith(".json") else b"\0" * 64)
    touch(unet / "metrics.json", '{"miou": 0.4125}')
    touch(root / "checkpoints" / "camvid" / "untrained" / "config.json", "{}")  # no weights: not served
    touch(root / "benchmarks" / "leaderboard.json", "[]")
    touch(root / "benchmarks" / "train_zoo.py")
    for name in ("camvid-a.jpg", "camvid-a.mask.png", "README.md", "notes.txt"):
        touch(root / "examples" / name)
    return root


def test_the_space_gets_what_the_app_needs_and_nothing_else(source) -> None:
    files = select_space_files(source)
    assert set(files) == {
        "app.py",
        "requirements.txt",
        "segzoo/__init__.py",
        "segzoo/app/__init__.py",
        "segzoo/app/ui.py",
        "segzoo/models/unet/model.py",
        "segzoo/data/classes.yaml",
        "checkpoints/camvid/unet/config.json",
        "checkpoints/camvid/unet/model.safetensors",
        "checkpoints/camvid/unet/history.csv",
        "checkpoints/camvid/unet/metrics.json",
        "benchmarks/leaderboard.json",
        "examples/camvid-a.jpg",
        "examples/camvid-a.mask.png",
        "examples/README.md",
    }
    assert all(files[name] == source / name for name in files)


def test_checkpoints_from_another_folder_land_in_checkpoints(source, tmp_path) -> None:
    elsewhere = tmp_path / "runs"
    touch(elsewhere / "voc2012" / "segnet" / "config.json", "{}")
    touch(elsewhere / "voc2012" / "segnet" / "model.safetensors")
    files = select_space_files(source, elsewhere)
    served = {name for name in files if name.startswith("checkpoints/")}
    assert served == {"checkpoints/voc2012/segnet/config.json", "checkpoints/voc2012/segnet/model.safetensors"}
    assert files["checkpoints/voc2012/segnet/config.json"] == elsewhere / "voc2012" / "segnet" / "config.json"


def test_a_folder_that_is_not_the_source_is_refused(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="app.py"):
        select_space_files(tmp_path)


def test_space_readme_front_matter(source) -> None:
    files = select_space_files(source)
    text = space_readme(source, files)
    assert text.startswith("---\n")
    card = SpaceCard(text)
    data = card.data
    assert data.sdk == "gradio" and data.app_file == "app.py" and data.app_file in files
    assert data.sdk_version == "6.31.0" == pinned_version(source / "requirements.txt", "gradio")  # not README's 1.0.0
    assert data.python_version == "3.11" and data.license == "mit"
    assert data.get("emoji") == "🧩" and data.get("colorFrom") == "indigo" and data.get("title") == "segzoo"
    assert data.get("short_description") == "Compare segmentation models side by side on your photo"
    assert "| camvid | `unet` | 41.2 |" in card.text and "untrained" not in card.text
    assert "docs/deploy.md" not in card.text  # the project README's links would be broken on the Space


def test_the_real_checkout_deploys_an_importable_app(tmp_path) -> None:
    """Stage this checkout's selection and import the app from it alone, as the Space will."""
    root = project_root()
    files = select_space_files(root)
    stage = tmp_path / "space"
    _stage({**files, "README.md": space_readme(root, files)}, stage)
    assert SpaceCard.load(stage / "README.md").data.sdk_version == pinned_version(root / "requirements.txt", "gradio")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import segzoo, segzoo.app, segzoo.cli, segzoo.hub, segzoo.export; print(segzoo.__file__)",
        ],
        cwd=stage,
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve() == (root / "segzoo" / "__init__.py").resolve()  # through the link
    assert Path(done.stdout.strip()).parent.parent == stage  # imported from the Space folder, not the checkout


def test_deploy_creates_a_gradio_space_and_uploads_in_one_commit(source) -> None:
    api = RecordingHfApi()
    deploy_space("alice/zoo", source, private=True, variables={"SEGZOO_MAX_SIDE": "640"}, api=api)
    (create, args, kwargs), (variable, var_args, _), (upload, _, upload_kwargs) = api.calls
    assert create == "create_repo" and args == ("alice/zoo",)
    assert kwargs == {"repo_type": "space", "space_sdk": "gradio", "private": True, "exist_ok": True}
    assert variable == "add_space_variable" and var_args == ("alice/zoo", "SEGZOO_MAX_SIDE", "640")
    assert (
        upload == "upload_folder" and upload_kwargs["repo_type"] == "space" and upload_kwargs["repo_id"] == "alice/zoo"
    )
    assert upload_kwargs["delete_patterns"] == MANAGED_PATTERNS and "README.md" not in str(MANAGED_PATTERNS)
    assert set(api.uploaded) == set(select_space_files(source)) | {"README.md"}
    weights = "checkpoints/camvid/unet/model.safetensors"
    assert api.uploaded[weights] == (source / weights).read_bytes()
    assert SpaceCard(api.uploaded["README.md"].decode()).data.sdk == "gradio"


def test_cli_dry_run_uploads_nothing(source, monkeypatch, capsys) -> None:
    def no_network(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a dry run must not call the Hub")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", no_network)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", no_network)
    assert main(["space", "deploy", "alice/zoo", "--root", str(source), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "checkpoints/camvid/unet/model.safetensors" in out and "16 files" in out and "sdk: gradio" in out


def test_cli_deploy_calls_the_hub(source, monkeypatch, capsys) -> None:
    api = RecordingHfApi()
    for name in ("create_repo", "add_space_variable", "upload_folder"):
        monkeypatch.setattr(huggingface_hub.HfApi, name, lambda self, *a, _n=name, **k: getattr(api, _n)(*a, **k))
    assert main(["space", "deploy", "alice/zoo", "--root", str(source), "--variable", "SEGZOO_MAX_SIDE=640"]) == 0
    assert [c[0] for c in api.calls] == ["create_repo", "add_space_variable", "upload_folder"]
    assert "https://huggingface.co/spaces/alice/zoo" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["space", "deploy", "alice/zoo", "--variable", "no-equals-sign"])
