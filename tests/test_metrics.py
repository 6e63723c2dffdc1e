"""segzoo.metrics: hand-computed confusion matrices and scores, streaming, torchmetrics agreement."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from segzoo.metrics import ConfusionMatrix, SegmentationScores, confusion_matrix, scores_from_confusion

NAN = float("nan")


def assert_scores_equal(actual: torch.Tensor, expected: list[float]) -> None:
    """Per-class scores equal, NaN where expected NaN."""
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64), equal_nan=True, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- hand-computed
def test_hand_computed_confusion_matrix_and_scores() -> None:
    target = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
    preds = torch.tensor([[[0, 1, 1], [1, 0, 2]]])
    metric = ConfusionMatrix(3, ignore_index=255)
    metric.update(preds, target)
    scores = metric.compute()
    # The pixel labelled 255 is dropped; the five others, as (truth, prediction):
    # (0,0) (0,1) (1,1) (1,1) (2,0)  -> rows = truth, columns = prediction
    assert scores.confusion_matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # class 0: TP 1, support 2, predicted 2 -> IoU 1/(2+2-1) = 1/3, Dice 2/4, accuracy 1/2
    # class 1: TP 2, support 2, predicted 3 -> IoU 2/3, Dice 4/5, accuracy 1
    # class 2: TP 0, support 1, predicted 0 -> IoU 0, Dice 0, accuracy 0
    assert_scores_equal(scores.iou, [1 / 3, 2 / 3, 0.0])
    assert_scores_equal(scores.dice, [0.5, 0.8, 0.0])
    assert_scores_equal(scores.class_accuracy, [0.5, 1.0, 0.0])
    assert scores.miou == pytest.approx(1 / 3, abs=1e-12)
    assert scores.mdice == pytest.approx(1.3 / 3, abs=1e-12)
    assert scores.pixel_accuracy == pytest.approx(3 / 5, abs=1e-12)
    assert scores.mean_class_accuracy == pytest.approx(0.5, abs=1e-12)
    # frequency-weighted IoU: 2/5 * 1/3 + 2/5 * 2/3 + 1/5 * 0 = 2/5
    assert scores.fw_iou == pytest.approx(2 / 5, abs=1e-12)
    assert scores["miou"] == scores.miou  # dict-style access works too


def test_absent_class_is_nan_and_left_out_of_means() -> None:
    # 4 classes. Class 2: in neither truth nor prediction -> NaN everywhere, not in the means.
    # Class 3: predicted once, never in truth -> IoU 0 and Dice 0 (counted), accuracy NaN (0/0).
    target = torch.tensor([[0, 0, 1, 1]])
    preds = torch.tensor([[0, 0, 1, 3]])
    scores = scores_from_confusion(confusion_matrix(preds, target, 4))
    assert scores.confusion_matrix.tolist() == [[2, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    # class 0: IoU 2/2; class 1: TP 1, support 2, predicted 1 -> 1/2; class 3: 0/1
    assert_scores_equal(scores.iou, [1.0, 0.5, NAN, 0.0])
    assert_scores_equal(scores.dice, [1.0, 2 / 3, NAN, 0.0])
    assert_scores_equal(scores.class_accuracy, [1.0, 0.5, NAN, NAN])
    assert scores.miou == pytest.approx(1.5 / 3, abs=1e-12)
    assert scores.mdice == pytest.approx((1 + 2 / 3) / 3, abs=1e-12)
    assert scores.mean_class_accuracy == pytest.approx(0.75, abs=1e-12)
    assert scores.pixel_accuracy == pytest.approx(3 / 4, abs=1e-12)
    assert scores.fw_iou == pytest.approx(0.5 * 1.0 + 0.5 * 0.5, abs=1e-12)


def test_perfect_prediction_scores_one() -> None:
    target = torch.randint(0, 5, (2, 8, 8))
    scores = scores_from_confusion(confusion_matrix(target, target, 5))
    assert scores.miou == scores.mdice == scores.pixel_accuracy == scores.mean_class_accuracy == 1.0
    assert scores.fw_iou == pytest.approx(1.0, abs=1e-12)


def test_nothing_seen_gives_nan_scores() -> None:
    scores = ConfusionMatrix(3).compute()
    assert scores.confusion_matrix.tolist() == [[0] * 3] * 3
    assert scores.iou.isnan().all()
    assert all(math.isnan(v) for v in (scores.miou, scores.mdice, scores.pixel_accuracy, scores.fw_iou))
    # all pixels ignored: same
    metric = ConfusionMatrix(3, ignore_index=255)
    metric.update(torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), 255))
    assert metric.compute().confusion_matrix.sum() == 0
    assert math.isnan(metric.compute().miou)


def test_logits_and_labels_give_the_same_matrix() -> None:
    logits = torch.randn(2, 4, 6, 6)
    target = torch.randint(0, 4, (2, 6, 6))
    torch.testing.assert_close(confusion_matrix(logits, target, 4), confusion_matrix(logits.argmax(1), target, 4))


def test_ignore_index_equal_to_num_classes() -> None:
    # CamVid: 11 classes, label 11 = unlabelled. Here 2 classes with ignore_index 2.
    target = torch.tensor([[[0, 2, 1, 2]]])
    preds = torch.tensor([[[0, 1, 0, 0]]])
    metric = ConfusionMatrix(2, ignore_index=2)
    metric.update(preds, target)
    assert metric.compute().confusion_matrix.tolist() == [[1, 0], [1, 0]]


def test_ignore_index_inside_the_classes_leaves_that_class_out() -> None:
    # ignore_index 0 names a real output class: it has no ground truth by construction.
    target = torch.tensor([[0, 1, 1, 2]])
    preds = torch.tensor([[1, 0, 1, 2]])
    metric = ConfusionMatrix(3, ignore_index=0, device="cpu")
    metric.update(preds, target)
    result = metric.compute()
    assert result.confusion_matrix.tolist() == [[0, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert_scores_equal(result.iou, [NAN, 0.5, 1.0])  # predictions of class 0 are FN of class 1
    assert result.miou == pytest.approx(0.75)


# ---------------------------------------------------------------- streaming
def test_streaming_equals_one_update_over_the_concatenation() -> None:
    batches = [(torch.randn(n, 5, 7, 9), torch.randint(0, 6, (n, 7, 9))) for n in (1, 3, 2)]
    streamed = ConfusionMatrix(5, ignore_index=5)
    for logits, target in batches:
        streamed.update(logits, target)
    at_once = ConfusionMatrix(5, ignore_index=5)
    at_once.update(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    assert torch.equal(streamed.compute().confusion_matrix, at_once.compute().confusion_matrix)
    assert streamed.compute().miou == at_once.compute().miou
    # dataset-level, not a mean of per-image scores
    per_image = []
    for logits, target in batches:
        for i in range(len(target)):
            per_image.append(scores_from_confusion(confusion_matrix(logits[i : i + 1], target[i : i + 1], 5, 5)).miou)
    assert streamed.compute().miou != pytest.approx(sum(per_image) / len(per_image), abs=1e-9)

    streamed.reset()
    assert streamed.compute().confusion_matrix.sum() == 0


def test_counts_are_exact_int64() -> None:
    metric = ConfusionMatrix(2)
    target = torch.ones(1, 64, 64, dtype=torch.long)
    for _ in range(3):
        metric.update(target, target)
    assert metric.matrix.dtype == torch.int64
    assert metric.compute().confusion_matrix.tolist() == [[0, 0], [0, 3 * 64 * 64]]


# ---------------------------------------------------------------- torchmetrics
@pytest.mark.parametrize(("num_classes", "ignore_index"), [(2, None), (5, None), (11, 11), (21, 255), (6, 2)])
def test_agrees_with_torchmetrics_jaccard(num_classes: int, ignore_index: int | None) -> None:
    ours = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    theirs = MulticlassJaccardIndex(num_classes, average=None, ignore_index=ignore_index)
    theirs_macro = MulticlassJaccardIndex(num_classes, average="macro", ignore_index=ignore_index)
    for _ in range(4):
        # the last class never occurs in the truth, so some classes are absent or only predicted
        target = torch.randint(0, max(num_classes - 1, 2), (3, 16, 20))
        logits = torch.randn(3, num_classes, 16, 20)
        logits[:, 0] += 1.0  # uneven predictions
        if ignore_index is not None:
            target[torch.rand(target.shape) < 0.2] = ignore_index
        ours.update(logits, target)
        theirs.update(logits, target)
        theirs_macro.update(logits, target)
    scores = ours.compute()
    reference = theirs.compute().double()
    defined = ~scores.iou.isnan()
    torch.testing.assert_close(scores.iou[defined], reference[defined], rtol=0, atol=1e-6)
    # where we say NaN, torchmetrics reports its zero_division value 0 and leaves the class out of
    # its macro average as well
    assert (reference[~defined] == 0).all()
    assert scores.miou == pytest.approx(theirs_macro.compute().item(), abs=1e-6)


def test_agrees_with_torchmetrics_when_a_class_is_absent_from_both() -> None:
    target = torch.randint(0, 3, (2, 10, 10))  # classes 3 and 4 never in truth
    preds = torch.randint(0, 4, (2, 10, 10))  # class 4 never predicted either
    scores = scores_from_confusion(confusion_matrix(preds, target, 5))
    assert scores.iou[4].isnan() and scores.iou[3] == 0
    macro = MulticlassJaccardIndex(5, average="macro")(preds, target)
    assert scores.miou == pytest.approx(macro.item(), abs=1e-6)


# ---------------------------------------------------------------- bad input and output format
@pytest.mark.parametrize(("bad_label", "ignore_index"), [(3, 255), (255, None), (-1, None), (4, 3)])
def test_target_label_outside_classes_raises(bad_label: int, ignore_index: int | None) -> None:
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    target[0, 0, 1] = bad_label
    metric = ConfusionMatrix(3, ignore_index=ignore_index)
    with pytest.raises(ValueError, match=f"target holds label {bad_label}"):
        metric.update(torch.randn(1, 3, 2, 2), target)


def test_bad_preds_raise() -> None:
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    metric = ConfusionMatrix(3, ignore_index=255)
    with pytest.raises(ValueError, match="preds holds label 255"):
        metric.update(torch.full((1, 2, 2), 255), target)  # ignore_index is not a valid prediction
    with pytest.raises(ValueError, match="4 channels for 3 classes"):
        metric.update(torch.randn(1, 4, 2, 2), target)
    with pytest.raises(ValueError, match="do not match"):
        metric.update(torch.zeros(1, 2, 3, dtype=torch.long), target)
    with pytest.raises(ValueError, match="integer class labels"):
        metric.update(torch.randn(1, 3, 2, 2), target.float())
    assert metric.compute().confusion_matrix.sum() == 0  # nothing half-counted


def test_to_dict_is_plain_json_with_null_for_nan() -> None:
    target = torch.tensor([[0, 0, 1, 1]])
    preds = torch.tensor([[0, 0, 1, 3]])
    scores = scores_from_confusion(confusion_matrix(preds, target, 4))
    names = ["sky", "road", "tree", "car"]
    data = json.loads(json.dumps(scores.to_dict(names), allow_nan=False))
    assert data["class_names"] == names
    assert data["per_class"]["tree"] == {"iou": None, "dice": None, "accuracy": None, "support": 0, "predicted": 0}
    assert data["per_class"]["car"] == {"iou": 0.0, "dice": 0.0, "accuracy": None, "support": 0, "predicted": 1}
    assert data["per_class"]["road"]["iou"] == 0.5
    assert data["miou"] == pytest.approx(0.5)
    assert data["confusion_matrix"][1] == [0, 1, 0, 1]
    assert set(data) == {
        "miou",
        "mdice",
        "pixel_accuracy",
        "mean_class_accuracy",
        "fw_iou",
        "per_class",
        "class_names",
        "confusion_matrix",
    }
    assert list(scores.to_dict()["per_class"]) == ["0", "1", "2", "3"]
    with pytest.raises(ValueError, match="3 class names for 4 classes"):
        scores.to_dict(names[:3])
    nothing = json.loads(json.dumps(ConfusionMatrix(2).compute().to_dict(), allow_nan=False))
    assert nothing["miou"] is None


def test_scores_from_confusion_rejects_non_square() -> None:
    with pytest.raises(ValueError, match="square"):
        scores_from_confusion(torch.zeros(2, 3, dtype=torch.long))
    assert isinstance(scores_from_confusion(torch.eye(2, dtype=torch.long)), SegmentationScores)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_accumulates_on_the_gpu() -> None:
    metric = ConfusionMatrix(4, ignore_index=255)
    cpu = ConfusionMatrix(4, ignore_index=255)
    for _ in range(3):
        logits = torch.randn(2, 4, 32, 32)
        target = torch.randint(0, 4, (2, 32, 32))
        target[:, :4] = 255
        metric.update(logits.cuda(), target.cuda())
        cpu.update(logits, target)
    assert metric.matrix.device.type == "cuda"
    assert torch.equal(metric.compute().confusion_matrix, cpu.compute().confusion_matrix)
