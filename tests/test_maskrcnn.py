"""Mask R-CNN, torchvision backend: registry, interface, training, checkpoints, evaluation.

Images are small (longest side 128-256) and few proposals train the heads (torchvision's
v2 heads are convolutional: their cost grows with ``rois_per_image``), so a CPU iteration
takes about a second.
"""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from test_instance_data import make_coco_folder

import segzoo
from segzoo.data import get_instance_dataset
from segzoo.data.instances import collate_instances
from segzoo.instance import backends
from segzoo.instance.train import InstanceTrainConfig
from segzoo.registry import count_parameters


def test_registered_as_instance_model_with_measured_params() -> None:
    spec = segzoo.get_spec("maskrcnn_r50_fpn")
    assert spec.task == "instance" and spec.family == "Mask R-CNN"
    assert "maskrcnn_r50_fpn" in segzoo.model_names(task="instance")
    assert "maskrcnn_r50_fpn" not in segzoo.model_names(task="semantic")
    model = segzoo.create_model("maskrcnn_r50_fpn", num_classes=12, backend="torchvision")
    assert count_parameters(model) == spec.params
    assert model.num_classes == 12 and model.backend == "torchvision"


def test_eval_output_format_at_input_size() -> None:
    model = segzoo.create_model("maskrcnn_r50_fpn", num_classes=2, backend="torchvision", min_size=128, max_size=128)
    model.eval()
    with torch.inference_mode():
        outputs = model([torch.rand(3, 90, 120), torch.rand(3, 64, 64)])
    assert len(outputs) == 2
    for out, (h, w) in zip(outputs, [(90, 120), (64, 64)]):
        n = len(out["scores"])
        assert out["boxes"].shape == (n, 4) and out["labels"].shape == (n,)
        assert out["masks"].shape == (n, 1, h, w)
        assert ((out["labels"] >= 1) & (out["labels"] <= 2)).all()


def test_trainable_backbone_stages() -> None:
    from segzoo.instance.train import count_trainable_stages

    model = segzoo.create_model("maskrcnn_r50_fpn", num_classes=2, backend="torchvision", trainable_backbone_layers=3)
    body = model.detector.backbone.body
    assert not any(p.requires_grad for p in body.conv1.parameters())
    assert not any(p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())
    assert count_trainable_stages(model) == 3
    scratch = segzoo.create_model("maskrcnn_r50_fpn", num_classes=2, backend="torchvision")
    assert count_trainable_stages(scratch) == 5 and all(p.requires_grad for p in scratch.parameters())


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match="in_channels=3"):
        segzoo.create_model("maskrcnn_r50_fpn", num_classes=2, in_channels=4)
    with pytest.raises(ValueError, match="unknown backend"):
        segzoo.create_model("maskrcnn_r50_fpn", num_classes=2, backend="mmdet")
    with pytest.raises(ValueError, match="weights must be 'coco'"):
        segzoo.create_model("maskrcnn_r50_fpn", num_classes=2, backend="torchvision", weights="voc")


def test_coco_weights_fail_fast_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="cannot download coco weights"):
        segzoo.create_model("maskrcnn_r50_fpn", num_classes=80, backend="torchvision", weights="coco")


def test_coco_predictors_are_sliced_to_the_80_categories() -> None:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    from segzoo.models.maskrcnn.torchvision_backend import _fit_coco_predictors, coco_category_names

    categories = MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"]
    assert len(categories) == 91 and len(coco_category_names()) == 80
    # Row i of each fake predictor tensor holds the value i: the kept rows name the classes.
    state = {
        "roi_heads.box_predictor.cls_score.weight": torch.arange(91.0)[:, None].repeat(1, 4),
        "roi_heads.box_predictor.bbox_pred.bias": torch.arange(91.0).repeat_interleave(4),
        "roi_heads.mask_predictor.mask_fcn_logits.weight": torch.arange(91.0).view(91, 1, 1, 1),
        "backbone.body.conv1.weight": torch.ones(2),
    }
    sliced = _fit_coco_predictors(state, categories, 80)
    rows = sliced["roi_heads.box_predictor.cls_score.weight"][:, 0].long().tolist()
    assert len(rows) == 81 and rows[0] == 0
    assert [categories[i] for i in rows[1:]] == coco_category_names()
    assert sliced["roi_heads.box_predictor.bbox_pred.bias"].view(81, 4)[:, 0].long().tolist() == rows
    assert sliced["roi_heads.mask_predictor.mask_fcn_logits.weight"].flatten().long().tolist() == rows
    # Another label set: the predictors are dropped, the rest kept.
    assert set(_fit_coco_predictors(state, categories, 3)) == {"backbone.body.conv1.weight"}


def test_auto_backend_falls_back_and_detectron2_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "detectron2_unavailable_reason", lambda: "Detectron2 is not usable here (test)")
    assert backends.resolve_backend("auto") == "torchvision" and not backends.detectron2_available()
    with pytest.raises(RuntimeError, match="backend 'detectron2' was asked for"):
        segzoo.create_model("maskrcnn_r50_fpn", num_classes=2, backend="detectron2")


def test_detectron2_weight_files_load_arrays_only() -> None:
    from segzoo.models.maskrcnn.detectron2_backend import load_array_pickle

    data = {"model": {"conv.weight": np.ones((2, 3), np.float32)}, "__author__": "zoo"}
    loaded = load_array_pickle(pickle.dumps(data, protocol=2))
    assert np.array_equal(loaded["model"]["conv.weight"], np.ones((2, 3)))

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            import os

            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_array_pickle(pickle.dumps({"model": Evil()}))


def _fixed_batch_losses(model: torch.nn.Module, images: list, targets: list, steps: int, lr: float) -> list[float]:
    torch.manual_seed(0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
    model.train()
    history = []
    for _ in range(steps):
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        history.append(loss.item())
    return history


@pytest.mark.slow
@pytest.mark.shared_data
def test_a_few_iterations_on_fruits_nuts_reduce_the_loss(shared_datasets: Path) -> None:
    ds = get_instance_dataset("fruits_nuts", shared_datasets / "fruits-nuts", "train")
    images, targets = collate_instances([ds[0], ds[1]])
    model = segzoo.create_model(
        "maskrcnn_r50_fpn", num_classes=3, backend="torchvision", min_size=256, max_size=256, rois_per_image=64
    )
    losses = _fixed_batch_losses(model, images, targets, steps=10, lr=0.02)
    # Proposal sampling makes single steps noisy: compare the first and last three.
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


def _train_args(tmp_path: Path, root: Path, **overrides) -> InstanceTrainConfig:  # noqa: ANN003
    args = dict(
        model="maskrcnn_r50_fpn", dataset="coco", data_root=str(root), out=str(tmp_path / "run"),
        epochs=2, batch_size=2, lr=0.01, seed=0, accelerator="cpu", backend="torchvision", resume=False,
        max_iters=None, size=128, warmup_iters=1, rois_per_image=32, progress=False,
    )  # fmt: skip
    args.update(overrides)
    return InstanceTrainConfig(**args)


@pytest.mark.slow
def test_train_checkpoint_round_trip_evaluate_and_predict(tmp_path: Path) -> None:
    from segzoo.checkpoint import load_weights
    from segzoo.instance.evaluate import evaluate_instance
    from segzoo.instance.predict import draw_instances, predict_instances
    from segzoo.instance.train import LOSS_TERMS, train_instance

    root = make_coco_folder(tmp_path / "toy", num_images=5)  # 4 train (2 steps/epoch), 1 val
    out = train_instance(_train_args(tmp_path, root, max_iters=3, limit_val_images=1))
    assert out == tmp_path / "run"
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "history.csv"}

    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "instance" and config["backend"] == "torchvision"
    assert config["model_kwargs"] == {
        "backend": "torchvision", "min_size": 128, "max_size": 128, "rois_per_image": 32,
        "trainable_backbone_layers": 5,
    }  # fmt: skip
    assert config["class_names"] == ["square", "disc"] and config["num_classes"] == 2 and len(config["palette"]) == 2
    assert config["dataset"] == "coco" and config["input_size"] == [128, 128] and config["interim"] is False
    # --max-iters 3 stops in the second epoch.
    assert config["training"]["iterations"] == 3 and config["training"]["completed"] is True

    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and [int(r["iterations"]) for r in rows] == [2, 3]
    for row in rows:
        terms = [float(row[k]) for k in LOSS_TERMS]
        assert all(np.isfinite(terms)) and float(row["train_loss"]) == pytest.approx(sum(terms))
        assert 0.0 <= float(row["val_mask_ap"]) <= 1.0

    # Round trip: the loaded model holds exactly the saved (float16) weights.
    model, loaded_config = segzoo.load(out)
    assert loaded_config == config and not model.training
    saved = load_weights(out / "model.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor.to(saved[name].dtype), saved[name]), name

    # At the training precision (bf16 on CPUs that have it), as validation ran.
    metrics = evaluate_instance(out, "val", device="cpu", progress=False, precision=config["training"]["precision"])
    for key in ("mask_AP", "mask_AP50", "mask_AP75", "box_AP"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["split"] == "val" and metrics["num_images"] == 1
    assert json.loads((out / "metrics.json").read_text())["mask_AP"] == metrics["mask_AP"]
    # The validation score recorded for the saved epoch is the evaluation's.
    best = config["training"]["best_epoch"]
    assert float(rows[best - 1]["val_mask_ap"]) == pytest.approx(metrics["mask_AP"])

    image = np.asarray(get_instance_dataset("coco", root, "val").load(0).image)
    result = predict_instances(model, image, config, score_threshold=0.0)
    assert result.masks.shape[1:] == image.shape[:2]
    assert draw_instances(image, result, config["class_names"], config["palette"], 0.0).shape == image.shape


@pytest.mark.slow
def test_resume_continues_and_refuses_changed_options(tmp_path: Path) -> None:
    from segzoo.instance.train import train_instance

    root = make_coco_folder(tmp_path / "toy", num_images=5)
    first = _train_args(tmp_path, root, epochs=1, keep_resume_state=True)
    out = train_instance(first)
    assert (out / "resume" / "state.safetensors").is_file()
    with pytest.raises(ValueError, match="already holds a training run"):
        train_instance(_train_args(tmp_path, root, epochs=2))
    with pytest.raises(ValueError, match="lr"):
        train_instance(_train_args(tmp_path, root, epochs=2, lr=0.02, resume=True))
    train_instance(_train_args(tmp_path, root, epochs=2, resume=True))
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and [int(r["iterations"]) for r in rows] == [2, 4]
    assert not (out / "resume").exists()
    assert json.loads((out / "config.json").read_text())["training"]["iterations"] == 4


def test_coco_checkpoint_fails_fast_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from segzoo.instance.pretrained import save_coco_checkpoint

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="cannot download"):
        save_coco_checkpoint(tmp_path / "coco", backend="torchvision")
    assert not (tmp_path / "coco").exists()


def test_coco_checkpoint_is_an_ordinary_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The download replaced by a random 80-class model: what is written loads back."""
    import segzoo.registry
    from segzoo.instance.pretrained import save_coco_checkpoint

    real_create = segzoo.registry.create_model
    asked = []

    def offline_create(name, num_classes, weights=None, **kwargs):  # noqa: ANN001, ANN003, ANN202
        asked.append((weights, num_classes))
        return real_create(name, num_classes=num_classes, **kwargs)

    monkeypatch.setattr(segzoo.registry, "create_model", offline_create)
    out = save_coco_checkpoint(tmp_path / "coco", backend="torchvision", size=320)
    assert asked == [("coco", 80)]
    model, config = segzoo.load(out)
    assert config["task"] == "instance" and config["num_classes"] == 80 and len(config["class_names"]) == 80
    assert config["class_names"][:3] == ["person", "bicycle", "car"] and config["model_kwargs"]["min_size"] == 320
    assert model.num_classes == 80 and not (out / "metrics.json").exists()
