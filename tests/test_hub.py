"""Checkpoints on the Hugging Face Hub, without the Hub: ``hf://`` loading from a local
cache laid out as huggingface_hub lays it out (checked with its own ``scan_cache_dir``), in
offline mode and with the network down; the upload and its model card with a stub API.
Nothing here opens a connection to huggingface.co."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from conftest import RecordingHfApi
from huggingface_hub import ModelCard, constants, scan_cache_dir

import segzoo
import segzoo.hub as hub
from segzoo.checkpoint import CheckpointError, save_checkpoint, write_json
from segzoo.cli import main

CLASSES = ["background", "square", "disk"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def shapes_config() -> dict:
    return {
        "model": "unet",
        "model_kwargs": {"base_channels": 8},
        "task": "semantic",
        "num_classes": 3,
        "class_names": CLASSES,
        "palette": [[0, 0, 0], [230, 25, 75], [60, 180, 75]],
        "ignore_index": 255,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "input_size": [64, 64],
        "dataset": "shapes",
        "dataset_options": {},
        "training": {"epochs": 7, "best_epoch": 5, "best_val_miou": 0.61, "loss": "combined", "optimizer": "adamw",
                     "lr": 0.001, "batch_size": 4, "device_name": "CPU test (2 threads)", "train_seconds": 5400.0},
        "interim": False,
    }  # fmt: skip


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    model = segzoo.create_model("unet", num_classes=3, base_channels=8)
    directory = save_checkpoint(tmp_path / "ckpt", model, shapes_config())
    write_json(
        directory / "metrics.json",
        {
            "miou": 0.5731,
            "mdice": 0.66,
            "pixel_accuracy": 0.91,
            "mean_class_accuracy": 0.7,
            "split": "test",
            "num_images": 20,
            "per_class_iou": {"background": 0.9, "square": 0.5, "disk": 0.32},
        },
    )
    (directory / "history.csv").write_text("epoch,train_loss\n1,0.5\n")
    return directory


def cache_repo(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = COMMIT) -> Path:
    """Lay out a model repository in a Hugging Face cache as ``snapshot_download`` leaves it:
    ``blobs/<hash>``, ``snapshots/<commit>/<path>`` symlinks to them, ``refs/main``."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    for name, data in files.items():
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = storage / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    return storage / "snapshots" / commit


def checkpoint_files(directory: Path, prefix: str = "") -> dict[str, bytes]:
    return {prefix + p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache, offline mode on, and no memory of earlier resolutions."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_resolved", {})
    return cache


def network_down(monkeypatch, endpoint: str) -> None:
    """Offline mode off, and the Hub's address replaced by one that does not answer."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setenv("SEGZOO_HUB_TIMEOUT", "1")


# ---------------------------------------------------------------------------- URIs


@pytest.mark.parametrize(
    "uri, repo_id, subfolder, revision",
    [
        ("hf://alice/segzoo-camvid", "alice/segzoo-camvid", "", None),
        ("hf://alice/segzoo-camvid/unet_resnet34", "alice/segzoo-camvid", "unet_resnet34", None),
        ("hf://alice/zoo@v1.0/camvid/unet", "alice/zoo", "camvid/unet", "v1.0"),
        (Path("hf://alice/zoo/sub"), "alice/zoo", "sub", None),  # Path() collapses the //
    ],
)
def test_parse_hub_uri(uri, repo_id, subfolder, revision) -> None:
    ref = hub.parse_hub_uri(uri)
    assert (ref.repo_id, ref.subfolder, ref.revision) == (repo_id, subfolder, revision)
    assert hub.is_hub_uri(uri) and not hub.is_hub_uri("checkpoints/camvid/unet")


@pytest.mark.parametrize("uri", ["hf://alice", "hf://alice/", "hf://alice/repo@"])
def test_bad_hub_uri(uri) -> None:
    with pytest.raises(ValueError, match="hf://<user>/<repo>"):
        hub.parse_hub_uri(uri)


# ---------------------------------------------------------------------------- loading


def test_load_from_the_cache_offline(checkpoint, hf_cache) -> None:
    cache_repo(hf_cache, "alice/shapes-unet", checkpoint_files(checkpoint))
    # The layout is the library's own: huggingface_hub's cache scanner reads it back.
    repos = {r.repo_id: r for r in scan_cache_dir(hf_cache).repos}
    assert {f.file_name for r in repos["alice/shapes-unet"].revisions for f in r.files} >= {
        "config.json",
        "model.safetensors",
    }
    model, config = segzoo.load("hf://alice/shapes-unet")
    expected, _ = segzoo.load(checkpoint)
    assert config["class_names"] == CLASSES and not model.training
    for key, value in expected.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_load_a_subfolder_and_predict_from_the_command_line(checkpoint, hf_cache, tmp_path) -> None:
    cache_repo(hf_cache, "alice/zoo", checkpoint_files(checkpoint, "shapes/unet/"))
    model, config = segzoo.load("hf://alice/zoo/shapes/unet")
    assert config["model"] == "unet"
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(photo)
    assert main(["predict", "hf://alice/zoo/shapes/unet", str(photo), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0  # fmt: skip
    assert (tmp_path / "out" / "photo_mask.png").is_file()


def test_a_repository_without_a_checkpoint_is_named(checkpoint, hf_cache) -> None:
    cache_repo(hf_cache, "alice/zoo", checkpoint_files(checkpoint, "shapes/unet/"))
    with pytest.raises(CheckpointError, match="no config.json at the repository's top level"):
        segzoo.load("hf://alice/zoo")


def test_not_cached_and_offline_fails_at_once(hf_cache) -> None:
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as error:
        segzoo.load("hf://alice/never-downloaded")
    assert time.perf_counter() - start < 2
    message = str(error.value)
    assert "hf://alice/never-downloaded" in message and "not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE" in message


@pytest.fixture
def silent_endpoint():  # noqa: ANN201
    """A local address whose connections hang, as a network that drops packets: a listening
    socket whose accept queue is full (Linux then ignores further connection requests)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    clients = []
    for _ in range(3):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        clients.append(client)
    time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    for s in [*clients, server]:
        s.close()


@pytest.mark.parametrize(
    "endpoint, reason",
    [
        ("http://127.0.0.1:9", "unreachable"),  # nothing listens: refused at once
        ("silent", "did not answer within 1 s"),  # no answer at all: the connect timeout
    ],
)
def test_not_cached_and_network_down_fails_fast(hf_cache, monkeypatch, request, endpoint, reason) -> None:
    if endpoint == "silent":
        endpoint = request.getfixturevalue("silent_endpoint")
    network_down(monkeypatch, endpoint)
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as error:
        segzoo.load("hf://alice/never-downloaded")
    assert time.perf_counter() - start < 5  # the Hub client alone retries for much longer
    message = str(error.value)
    assert "not in the Hugging Face cache" in message and "cannot be reached" in message and reason in message


def test_cached_and_network_down_uses_the_cache(checkpoint, hf_cache, monkeypatch) -> None:
    cache_repo(hf_cache, "alice/shapes-unet", checkpoint_files(checkpoint))
    network_down(monkeypatch, "http://127.0.0.1:9")
    model, config = segzoo.load("hf://alice/shapes-unet")
    assert config["model"] == "unet"


def test_offline_cli_in_a_fresh_process(checkpoint, tmp_path) -> None:
    """The environment variables alone, read at import as users set them, are enough."""
    cache = tmp_path / "home" / "hub"
    cache_repo(cache, "alice/shapes-unet", checkpoint_files(checkpoint))
    env = {**os.environ, "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_CACHE", None)
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 48, 3), dtype=np.uint8)).save(photo)
    done = subprocess.run(
        [sys.executable, "-m", "segzoo.cli", "predict", "hf://alice/shapes-unet", str(photo), "--out",
         str(tmp_path / "out"), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "photo_labels.png").is_file()
    missing = subprocess.run([sys.executable, "-m", "segzoo.cli", "predict", "hf://alice/other", str(photo), "--out",
                              str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "hf://alice/other: not in the Hugging Face cache" in missing.stderr


# ---------------------------------------------------------------------------- model card and upload


def test_model_card(checkpoint) -> None:
    text = hub.model_card_text(checkpoint, "alice/shapes-unet")
    card = ModelCard(text)
    data = card.data.to_dict()
    assert data["library_name"] == "segzoo" and data["pipeline_tag"] == "image-segmentation"
    assert {"image-segmentation", "segzoo", "unet"} <= set(data["tags"]) and data["datasets"] == ["shapes"]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["mean_iou"] == pytest.approx(0.5731) and results["accuracy"] == pytest.approx(0.91)
    assert all(r.dataset_split == "test" for r in card.data.eval_results)
    body = card.text
    for name, colour in (("background", "#000000"), ("square", "#e6194b"), ("disk", "#3cb44b")):
        assert f"| {name} | `{colour}` |" in body
    assert "| epochs | 7 |" in body and "| training time (hours) | 1.5 |" in body and "57.3" in body
    assert 'segzoo.load("hf://alice/shapes-unet")' in body
    sub = hub.model_card_text(checkpoint, "alice/zoo", "shapes/unet")
    assert 'segzoo.load("hf://alice/zoo/shapes/unet")' in sub


def test_card_without_metrics(checkpoint) -> None:
    (checkpoint / "metrics.json").unlink()
    card = ModelCard(hub.model_card_text(checkpoint, "alice/shapes-unet"))
    assert card.data.eval_results is None and "Not evaluated yet" in card.text


def test_push_uploads_the_checkpoint_with_its_card(checkpoint, monkeypatch, hf_cache, capsys) -> None:
    api = RecordingHfApi()
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: api.create_repo(*a, **k))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **k: api.upload_folder(**k))
    assert main(["hub", "push", str(checkpoint), "alice/zoo", "--private", "--path-in-repo", "shapes/unet"]) == 0
    assert "hf://alice/zoo/shapes/unet" in capsys.readouterr().out
    (name, args, kwargs), (upload, _, upload_kwargs) = api.calls
    assert name == "create_repo" and args == ("alice/zoo",)
    assert kwargs == {"private": True, "exist_ok": True, "repo_type": "model"}
    assert upload == "upload_folder" and upload_kwargs["repo_id"] == "alice/zoo"
    assert upload_kwargs["path_in_repo"] == "shapes/unet" and upload_kwargs["repo_type"] == "model"
    assert set(api.uploaded) == {
        f"shapes/unet/{n}" for n in ("config.json", "model.safetensors", "metrics.json", "history.csv", "README.md")
    }
    assert api.uploaded["shapes/unet/model.safetensors"] == (checkpoint / "model.safetensors").read_bytes()
    assert api.uploaded["shapes/unet/README.md"].decode() == hub.model_card_text(checkpoint, "alice/zoo", "shapes/unet")
    # What was uploaded is a checkpoint hf:// loads.
    cache_repo(hf_cache, "alice/zoo", api.uploaded)
    model, config = segzoo.load("hf://alice/zoo/shapes/unet")
    assert config == segzoo.checkpoint.load_config(checkpoint)


def test_push_refuses_a_folder_that_is_not_a_checkpoint(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        hub.push_checkpoint(tmp_path, "alice/zoo", api=RecordingHfApi())


def test_evaluate_a_hub_checkpoint_writes_beside_not_into_the_cache(hf_cache, tmp_path, monkeypatch, capsys) -> None:
    from segzoo.training.synthetic import CLASSES as SYNTHETIC
    from segzoo.training.synthetic import make_synthetic_folder

    data = make_synthetic_folder(tmp_path / "data", num_train=2, num_val=2, size=(32, 48))
    config = {**shapes_config(), "num_classes": 4, "class_names": list(SYNTHETIC), "dataset": "folder",
              "palette": [list(c) for c in SYNTHETIC.values()], "ignore_index": 255}  # fmt: skip
    model = segzoo.create_model("unet", num_classes=4, base_channels=8)
    local = save_checkpoint(tmp_path / "ckpt", model, config)
    snapshot = cache_repo(hf_cache, "alice/folder-unet", checkpoint_files(local))
    monkeypatch.chdir(tmp_path)
    uri = "hf://alice/folder-unet"
    assert main(["evaluate", uri, "--split", "val", "--data-root", str(data), "--no-progress"]) == 0
    written = tmp_path / "alice--folder-unet.metrics.json"
    assert f"wrote {written.name}" in capsys.readouterr().out
    metrics = json.loads(written.read_text())
    assert metrics["num_images"] == 2 and metrics["checkpoint"]["path"] == uri
    assert not (snapshot / "metrics.json").exists()  # the cache is left as huggingface_hub wrote it
    assert main(["evaluate", uri, "--images", str(data / "images"), "--masks", str(data / "masks"),
                 "--out", str(tmp_path / "folder-eval"), "--no-progress"]) == 0  # fmt: skip
    assert (tmp_path / "folder-eval" / "predictions.csv").is_file()
