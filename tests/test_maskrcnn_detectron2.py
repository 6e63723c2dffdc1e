"""Mask R-CNN, Detectron2 backend: the torchvision tests' twins, skipped (with the reason)
where Detectron2 is not installed (see docs/detectron2.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_instance_data import make_coco_folder
from test_maskrcnn import _fixed_batch_losses, _train_args

import segzoo
from segzoo.data import get_instance_dataset
from segzoo.data.instances import collate_instances
from segzoo.instance.backends import detectron2_unavailable_reason

REASON = detectron2_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def test_auto_backend_picks_detectron2() -> None:
    from segzoo.instance.backends import resolve_backend

    assert resolve_backend("auto") == "detectron2"
    model = segzoo.create_model("maskrcnn_r50_fpn", num_classes=2, backend="auto", min_size=128, max_size=128)
    assert model.backend == "detectron2" and model.num_classes == 2
    # From random initialisation: trainable batch norm and no frozen stem.
    assert model.detector.cfg.MODEL.RESNETS.NORM == "BN" and model.detector.cfg.MODEL.BACKBONE.FREEZE_AT == 0
    from segzoo.instance.train import count_trainable_stages

    assert count_trainable_stages(model) == 5
    frozen = segzoo.create_model("maskrcnn_r50_fpn", num_classes=2, backend="detectron2", trainable_backbone_layers=3)
    assert frozen.detector.cfg.MODEL.BACKBONE.FREEZE_AT == 2 and count_trainable_stages(frozen) == 3


def test_eval_output_format_at_input_size() -> None:
    model = segzoo.create_model("maskrcnn_r50_fpn", num_classes=2, backend="detectron2", min_size=128, max_size=128)
    model.eval()
    with torch.inference_mode():
        outputs = model([torch.rand(3, 90, 120), torch.rand(3, 64, 64)])
    for out, (h, w) in zip(outputs, [(90, 120), (64, 64)]):
        n = len(out["scores"])
        assert out["boxes"].shape == (n, 4) and out["labels"].shape == (n,)
        assert out["masks"].shape == (n, 1, h, w)
        assert ((out["labels"] >= 1) & (out["labels"] <= 2)).all()


def test_losses_use_torchvision_names() -> None:
    from segzoo.instance.train import LOSS_TERMS

    model = segzoo.create_model("maskrcnn_r50_fpn", num_classes=2, backend="detectron2", min_size=96, max_size=96)
    masks = torch.zeros(1, 64, 80, dtype=torch.uint8)
    masks[0, 10:30, 20:50] = 1
    target = {"boxes": torch.tensor([[20.0, 10, 50, 30]]), "labels": torch.tensor([2]), "masks": masks}
    model.train()
    losses = model([torch.rand(3, 64, 80), torch.rand(3, 64, 80)], [target, target])
    assert set(losses) == set(LOSS_TERMS) and all(torch.isfinite(v) for v in losses.values())


@pytest.mark.slow
@pytest.mark.shared_data
def test_a_few_iterations_on_fruits_nuts_reduce_the_loss(shared_datasets: Path) -> None:
    ds = get_instance_dataset("fruits_nuts", shared_datasets / "fruits-nuts", "train")
    images, targets = collate_instances([ds[0], ds[1]])
    model = segzoo.create_model(
        "maskrcnn_r50_fpn", num_classes=3, backend="detectron2", min_size=256, max_size=256, rois_per_image=64
    )
    losses = _fixed_batch_losses(model, images, targets, steps=10, lr=0.02)
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


@pytest.mark.slow
def test_train_checkpoint_round_trip_and_evaluate(tmp_path: Path) -> None:
    from segzoo.checkpoint import load_weights
    from segzoo.instance.evaluate import evaluate_instance
    from segzoo.instance.predict import predict_instances
    from segzoo.instance.train import LOSS_TERMS, train_instance

    root = make_coco_folder(tmp_path / "toy", num_images=5)
    out = train_instance(_train_args(tmp_path, root, backend="detectron2"))
    config = json.loads((out / "config.json").read_text())
    assert config["backend"] == "detectron2"
    assert config["model_kwargs"] == {
        "backend": "detectron2", "min_size": 128, "max_size": 128, "rois_per_image": 32,
        "trainable_backbone_layers": 5, "norm": "BN",
    }  # fmt: skip
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(np.isfinite(float(r[k])) for r in rows for k in LOSS_TERMS)

    model, _ = segzoo.load(out)
    assert model.backend == "detectron2"
    saved = load_weights(out / "model.safetensors")
    assert any(k.startswith("detector.model.backbone.bottom_up") for k in saved)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor.to(saved[name].dtype), saved[name]), name

    metrics = evaluate_instance(out, "val", progress=False)
    assert metrics["backend"] == "detectron2"
    for key in ("mask_AP", "mask_AP50", "mask_AP75", "box_AP"):
        assert 0.0 <= metrics[key] <= 1.0

    image = get_instance_dataset("coco", root, "val").load(0).image
    result = predict_instances(model, np.asarray(image), config, score_threshold=0.0)
    assert result.masks.shape[1:] == image.shape[:2]
