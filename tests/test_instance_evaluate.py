"""COCO AP and rasterised thing-class IoU, checked with oracle and spoiled "models"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from test_instance_data import make_camvid_folder, make_coco_folder
from test_shipped_checkpoints import assert_same_detections

from segzoo.data import get_instance_dataset
from segzoo.instance.evaluate import coco_ap, detections_to_coco, evaluate_model, paint_instances


class OracleModel(nn.Module):
    """Returns a data set's ground truth as detections, optionally spoiled."""

    def __init__(self, dataset, shift: int = 0, drop_label: int | None = None) -> None:  # noqa: ANN001
        super().__init__()
        self.dataset, self.shift, self.drop_label = dataset, shift, drop_label
        self.calls = 0
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, images: list[torch.Tensor], targets=None):  # noqa: ANN001, ANN201
        _, target = self.dataset[self.calls]
        self.calls += 1
        keep = target["labels"] != (self.drop_label or -1)
        masks = torch.roll(target["masks"][keep], self.shift, dims=2).float()[:, None]
        boxes = target["boxes"][keep] + torch.tensor([self.shift, 0, self.shift, 0])
        scores = torch.linspace(0.99, 0.9, int(keep.sum()))
        return [{"boxes": boxes, "labels": target["labels"][keep], "scores": scores, "masks": masks}]


def test_perfect_detections_score_ap_1_and_spoiled_ones_less(tmp_path: Path) -> None:
    ds = get_instance_dataset("coco", make_coco_folder(tmp_path / "toy", 4), "all")
    perfect = evaluate_model(OracleModel(ds), ds, progress=False)
    assert perfect["mask_AP"] == pytest.approx(1.0) and perfect["box_AP"] == pytest.approx(1.0, abs=0.02)
    assert perfect["mask_AP50"] == pytest.approx(1.0) and perfect["mask_AP75"] == pytest.approx(1.0)
    assert perfect["num_images"] == 4 and perfect["num_instances"] == 8 and perfect["num_detections"] == 8
    assert set(perfect["mask_AP_per_class"]) == {"square", "disc"}

    shifted = evaluate_model(OracleModel(ds, shift=6), ds, progress=False)
    assert 0.0 < shifted["mask_AP"] < 0.9 and shifted["mask_AP50"] > shifted["mask_AP75"]

    one_class = evaluate_model(OracleModel(ds, drop_label=1), ds, progress=False)
    assert one_class["mask_AP_per_class"]["square"] == 0.0
    assert one_class["mask_AP_per_class"]["disc"] == pytest.approx(1.0)
    assert one_class["mask_AP"] == pytest.approx(0.5)


def test_no_detections_score_zero(tmp_path: Path) -> None:
    ds = get_instance_dataset("coco", make_coco_folder(tmp_path / "toy", 2), "all")
    metrics = coco_ap(ds.coco_ground_truth(), [], ds.class_names)
    assert metrics["mask_AP"] == 0.0 and metrics["box_AP"] == 0.0


def test_detections_to_coco_boxes_are_xywh() -> None:
    output = {
        "boxes": torch.tensor([[10.0, 20.0, 30.0, 60.0]]),
        "labels": torch.tensor([2]),
        "scores": torch.tensor([0.8]),
        "masks": torch.zeros(1, 1, 80, 80),
    }
    (entry,) = detections_to_coco(5, output)
    assert entry["bbox"] == [10.0, 20.0, 20.0, 40.0] and entry["category_id"] == 2 and entry["image_id"] == 5


def test_paint_instances_puts_higher_scores_on_top() -> None:
    masks = torch.zeros(2, 1, 4, 4)
    masks[0, 0, :2] = 1  # class 0 (label 1), low score
    masks[1, 0, 1:3] = 1  # class 2 (label 3), high score, overlaps row 1
    output = {"masks": masks, "labels": torch.tensor([1, 3]), "scores": torch.tensor([0.6, 0.9])}
    output["boxes"] = torch.tensor([[0.0, 0.0, 4.0, 2.0], [0.0, 1.0, 4.0, 3.0]])  # a detection output has them
    painted = paint_instances(output, (4, 4), background=9, score_threshold=0.5)
    assert painted[:, 0].tolist() == [0, 2, 2, 9]
    assert (paint_instances(output, (4, 4), 9, score_threshold=0.95) == 9).all()


def test_camvid_thing_iou_of_an_oracle_is_1(tmp_path: Path) -> None:
    ds = get_instance_dataset("camvid_instances", make_camvid_folder(tmp_path / "camvid"), "train", min_area=10)
    metrics = evaluate_model(OracleModel(ds), ds, progress=False)
    assert metrics["mask_AP"] == pytest.approx(1.0)
    # Cars and the pedestrian painted back exactly; the bicyclist fleck was below min_area,
    # so the painted map misses it: IoU 0 for bicyclist.
    assert metrics["thing_iou"]["car"] == pytest.approx(1.0)
    assert metrics["thing_iou"]["pedestrian"] == pytest.approx(1.0)
    assert metrics["thing_iou"]["bicyclist"] == 0.0
    assert metrics["thing_miou"] == pytest.approx(2 / 3)


def test_max_images_limits_ground_truth_too(tmp_path: Path) -> None:
    ds = get_instance_dataset("coco", make_coco_folder(tmp_path / "toy", 4), "all")
    metrics = evaluate_model(OracleModel(ds), ds, progress=False, max_images=2)
    assert metrics["num_images"] == 2 and metrics["num_instances"] == 4 and metrics["mask_AP"] == pytest.approx(1.0)


def test_mask_threshold_matters() -> None:
    # A soft mask just below 0.5 everywhere is empty once thresholded.
    output = {
        "boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]),
        "labels": torch.tensor([1]),
        "scores": torch.tensor([0.9]),
        "masks": torch.full((1, 1, 4, 4), 0.49),
    }
    (entry,) = detections_to_coco(0, output)
    from pycocotools import mask as mask_utils

    assert mask_utils.area(entry["segmentation"]) == 0
    (above,) = detections_to_coco(0, {**output, "masks": output["masks"] + 0.02})
    assert np.isclose(float(mask_utils.area(above["segmentation"])), 16)


class FixedDetector(nn.Module):
    """Finds one "car" (class 0) covering ``box`` (x1, y1, x2, y2) of any image."""

    def __init__(self, box: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.box = box
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, images: list[torch.Tensor]):  # noqa: ANN201
        _, h, w = images[0].shape
        x1, y1, x2, y2 = self.box
        masks = torch.zeros(1, 1, h, w)
        masks[0, 0, y1:y2, x1:x2] = 1
        return [
            {
                "boxes": torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32),
                "labels": torch.tensor([1]),
                "scores": torch.tensor([0.8]),
                "masks": masks,
            }
        ]


def test_example_frames_record_detections_and_the_label_sets_thing_iou(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What benchmarks/train_zoo.py records for a shipped Mask R-CNN (regression.json)."""
    from PIL import Image

    import segzoo.checkpoint
    from segzoo.evaluate import score_example_frames

    checkpoint = tmp_path / "camvid" / "maskrcnn_r50_fpn"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    config = {"model": "maskrcnn_r50_fpn", "task": "instance", "dataset": "camvid_instances", "num_classes": 3,
              "class_names": ["car", "pedestrian", "bicyclist"]}  # fmt: skip
    (checkpoint / "config.json").write_text(json.dumps(config))
    examples = tmp_path / "examples"
    examples.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(examples / "camvid-a.jpg")
    truth = np.full((20, 30), 3, np.uint8)  # road
    truth[5:10, 10:20] = 8  # a car
    truth[15:, :5] = 11  # unlabelled: ignored
    Image.fromarray(truth).save(examples / "camvid-a.mask.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(examples / "oxford_pet-b.jpg")  # not its label set

    def record(box: tuple[int, int, int, int]) -> dict:
        monkeypatch.setattr(segzoo.checkpoint, "load", lambda directory: (FixedDetector(box), config))
        return score_example_frames(checkpoint, examples)

    exact = record((10, 5, 20, 10))
    assert exact["frames"] == ["camvid-a"]
    assert exact["detections"] == {"camvid-a": [{"label": 0, "score": 0.8, "box": [10.0, 5.0, 20.0, 10.0]}]}
    assert exact["thing_iou"] == {"car": 1.0, "pedestrian": None, "bicyclist": None} and exact["miou"] == 1.0
    assert len(exact["weights_sha256"]) == 64
    # Twice as wide: half of its car is road, which counts against it.
    wide = record((10, 5, 30, 10))
    assert wide["thing_iou"]["car"] == pytest.approx(0.5)
    # The regression test tells the two apart.
    assert_same_detections(exact["detections"]["camvid-a"], exact["detections"]["camvid-a"], "a")
    with pytest.raises(AssertionError, match="lost detection"):
        assert_same_detections(wide["detections"]["camvid-a"], exact["detections"]["camvid-a"], "a")
    monkeypatch.setattr(segzoo.checkpoint, "load", lambda directory: (FixedDetector((0, 0, 1, 1)), config))
    with pytest.raises(FileNotFoundError, match="no camvid-"):
        score_example_frames(checkpoint, tmp_path)
