"""predict_instances (filtering, ordering, 0-based labels) and draw_instances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from segzoo.instance.predict import Instances, draw_instances, instance_colours, predict_instances


class FixedModel(nn.Module):
    """Three detections at fixed places on a 40x60 image, in a scrambled score order."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.seen += images
        _, h, w = images[0].shape
        masks = torch.zeros(3, 1, h, w)
        masks[0, 0, 5:15, 5:15] = 0.9
        masks[1, 0, 20:30, 30:50] = 0.7
        masks[2, 0, 0:5, 0:5] = 0.6
        return [{
            "boxes": torch.tensor([[5.0, 5, 15, 15], [30, 20, 50, 30], [0, 0, 5, 5]]),
            "labels": torch.tensor([1, 2, 1]),
            "scores": torch.tensor([0.6, 0.95, 0.2]),
            "masks": masks,
        }]  # fmt: skip


def test_predict_filters_sorts_and_uses_0_based_labels() -> None:
    model = FixedModel()
    image = np.full((40, 60, 3), 200, dtype=np.uint8)
    result = predict_instances(model, image, {"num_classes": 2, "class_names": ["a", "b"]}, score_threshold=0.5)
    assert result.scores.tolist() == pytest.approx([0.95, 0.6])
    assert result.labels.tolist() == [1, 0] and result.labels.dtype == np.int64
    assert result.boxes.shape == (2, 4) and result.boxes[0].tolist() == [30, 20, 50, 30]
    assert result.masks.dtype == bool and result.masks.shape == (2, 40, 60)
    assert result.masks[0].sum() == 200 and result.masks[1].sum() == 100
    # The model saw the image as RGB floats in [0, 1].
    assert model.seen[0].shape == (3, 40, 60) and model.seen[0].max().item() == pytest.approx(200 / 255)
    low = predict_instances(model, image, {"num_classes": 2}, score_threshold=0.0)
    assert len(low.scores) == 3


class AutocastProbe(FixedModel):
    """FixedModel that records whether it ran under CPU autocast and answers in its dtype."""

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.autocast = torch.is_autocast_enabled("cpu")
        output = super().forward(images)[0]
        dtype = torch.get_autocast_dtype("cpu") if self.autocast else torch.float32
        return [{k: v.to(dtype) if v.is_floating_point() else v for k, v in output.items()}]


def test_predict_runs_under_the_recipes_autocast_and_returns_float32() -> None:
    from segzoo.devices import ComputeRecipe

    image = np.full((40, 60, 3), 200, dtype=np.uint8)
    config = {"num_classes": 2}
    model = AutocastProbe()
    reference = predict_instances(model, image, config)
    assert model.autocast is False
    bf16 = ComputeRecipe(torch.device("cpu"), "bf16-mixed", channels_last=False)
    fast = predict_instances(model, image, config, recipe=bf16)
    assert model.autocast is True
    assert fast.scores.dtype == np.float32 and fast.boxes.dtype == np.float32
    assert fast.labels.tolist() == reference.labels.tolist() and (fast.masks == reference.masks).all()


def test_predict_rejects_bad_images_and_labels() -> None:
    with pytest.raises(ValueError, match="H x W x 3"):
        predict_instances(FixedModel(), np.zeros((40, 60), dtype=np.uint8), {})
    with pytest.raises(ValueError, match="uint8"):
        predict_instances(FixedModel(), np.zeros((40, 60, 3), dtype=np.float32), {})
    with pytest.raises(ValueError, match="lists 1 classes"):
        predict_instances(FixedModel(), np.zeros((40, 60, 3), dtype=np.uint8), {"num_classes": 1})


def _instances() -> Instances:
    masks = np.zeros((2, 80, 120), dtype=bool)
    masks[0, 30:50, 20:50] = True
    masks[1, 30:50, 70:100] = True
    return Instances(
        boxes=np.array([[20, 30, 50, 50], [70, 30, 100, 50]], dtype=np.float32),
        labels=np.array([0, 1]),
        scores=np.array([0.9, 0.3], dtype=np.float32),
        masks=masks,
    )


def test_draw_colours_masks_boxes_and_respects_threshold() -> None:
    image = np.full((80, 120, 3), 100, dtype=np.uint8)
    palette = [(255, 0, 0), (0, 0, 255)]
    drawn = draw_instances(image, _instances(), ["date", "fig"], palette=palette, score_threshold=0.5)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert not np.shares_memory(drawn, image) and (image == 100).all()
    # Inside the kept mask: blended with the first instance colour.
    expected = np.round(0.5 * 100 + 0.5 * np.array(instance_colours(1)[0]))
    assert np.abs(drawn[40, 35].astype(int) - expected).max() <= 1
    # The box edge has the class colour; the instance under the threshold is not drawn.
    assert tuple(drawn[45, 20]) == (255, 0, 0)
    assert (drawn[35:50, 72:98] == 100).all()
    assert (drawn[70:, :] == 100).all()  # far from everything: untouched
    # With a lower threshold both appear, each mask in its own colour.
    both = draw_instances(image, _instances(), ["date", "fig"], score_threshold=0.1)
    assert (both[45, 85] != 100).any() and tuple(both[45, 35]) != tuple(both[45, 85])


def test_draw_handles_nothing_and_checks_sizes() -> None:
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    empty = Instances(
        boxes=np.zeros((0, 4)), labels=np.zeros(0, int), scores=np.zeros(0), masks=np.zeros((0, 10, 10), bool),
    )  # fmt: skip
    assert (draw_instances(image, empty, []) == 0).all()
    with pytest.raises(ValueError, match="masks are"):
        draw_instances(np.zeros((20, 20, 3), dtype=np.uint8), _instances(), ["a", "b"])


def test_instance_colours_are_distinct() -> None:
    colours = instance_colours(12)
    assert len(set(colours)) == 12


def test_label_map_paints_the_best_instance_on_top_in_another_label_sets_indices() -> None:
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2] = True  # class 1, score 0.6
    masks[1, 1:3] = True  # class 0, score 0.9: wins row 1
    masks[2, 3] = True  # class 1, score 0.1
    instances = Instances(
        boxes=np.zeros((3, 4), np.float32),
        labels=np.array([1, 0, 1]),
        scores=np.array([0.6, 0.9, 0.1], np.float32),
        masks=masks,
    )
    painted = instances.label_map(background=7, score_threshold=0.5)
    assert painted[:, 0].tolist() == [1, 0, 0, 7]
    mapped = instances.label_map(background=7, score_threshold=0.0, class_indices=[4, 5])
    assert mapped[:, 0].tolist() == [5, 4, 4, 5] and mapped.dtype == np.int64
