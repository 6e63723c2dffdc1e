"""segzoo.losses: hand-computed values, ignore_index invariance, options and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from segzoo.losses import (
    LOSSES,
    CombinedLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    TverskyLoss,
    build_loss,
)

LN2, LN3 = math.log(2.0), math.log(3.0)


def two_class_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two pixels (N=1, C=2, H=1, W=2) with round softmax probabilities.

    pixel a: logits (ln 3, 0) -> p = (3/4, 1/4), label 0
    pixel b: logits (0, 0)    -> p = (1/2, 1/2), label 1
    """
    logits = torch.tensor([[[[LN3, 0.0]], [[0.0, 0.0]]]], dtype=torch.float64)
    target = torch.tensor([[[0, 1]]])
    return logits, target


def three_class_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three pixels (N=1, C=3, H=1, W=3); class 2 occurs in no label.

    pixel a: logits (ln 2, 0, 0) -> p = (1/2, 1/4, 1/4), label 0
    pixel b: logits (0, ln 2, 0) -> p = (1/4, 1/2, 1/4), label 1
    pixel c: logits (0, 0, 0)    -> p = (1/3, 1/3, 1/3), label 1
    """
    logits = torch.tensor([[[[LN2, 0.0, 0.0]], [[0.0, LN2, 0.0]], [[0.0, 0.0, 0.0]]]], dtype=torch.float64)
    target = torch.tensor([[[0, 1, 1]]])
    return logits, target


# ---------------------------------------------------------------- hand-computed values, 2 classes
# CE: pixel a: -ln(3/4) = ln(4/3); pixel b: -ln(1/2) = ln 2.
# Soft counts: class 0: TP = 3/4, FP = 1/2 (pixel b), FN = 1 - 3/4 = 1/4
#              class 1: TP = 1/2, FP = 1/4 (pixel a), FN = 1 - 1/2 = 1/2
# Dice_0 = 2 TP / (2 TP + FP + FN) = 1.5 / 2.25 = 2/3;  Dice_1 = 1 / 1.75 = 4/7
# Tversky(0.3, 0.7)_0 = 0.75 / (0.75 + 0.3 * 0.5 + 0.7 * 0.25) = 0.75 / 1.075 = 30/43
# Tversky(0.3, 0.7)_1 = 0.5 / (0.5 + 0.3 * 0.25 + 0.7 * 0.5) = 0.5 / 0.925 = 20/37
# Focal(gamma 2): a: (1 - 3/4)^2 ln(4/3) = ln(4/3) / 16;  b: (1 - 1/2)^2 ln 2 = ln(2) / 4
CE_2 = (math.log(4 / 3) + LN2) / 2
DICE_2 = 1 - (2 / 3 + 4 / 7) / 2  # = 8/21
TVERSKY_2 = 1 - (30 / 43 + 20 / 37) / 2
FOCAL_2 = (math.log(4 / 3) / 16 + LN2 / 4) / 2


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        (CrossEntropyLoss(), CE_2),
        (DiceLoss(), DICE_2),
        (TverskyLoss(), TVERSKY_2),  # defaults alpha=0.3 (FP), beta=0.7 (FN)
        (FocalLoss(), FOCAL_2),  # default gamma=2
        (CombinedLoss(), 0.75 * TVERSKY_2 + 0.25 * CE_2),  # default lam=0.75
    ],
    ids=["ce", "dice", "tversky", "focal", "combined"],
)
def test_two_class_hand_computed(loss: torch.nn.Module, expected: float) -> None:
    logits, target = two_class_batch()
    assert loss(logits, target).item() == pytest.approx(expected, abs=1e-12)


def test_class_weights_hand_computed() -> None:
    logits, target = two_class_batch()
    weights = [1.0, 3.0]
    # CE/focal: sum_pixels w_t * loss / sum_pixels w_t = (1 * ln(4/3) + 3 * ln 2) / (1 + 3)
    assert CrossEntropyLoss(class_weights=weights)(logits, target).item() == pytest.approx(
        (math.log(4 / 3) + 3 * LN2) / 4, abs=1e-7
    )
    assert FocalLoss(class_weights=weights)(logits, target).item() == pytest.approx(
        (math.log(4 / 3) / 16 + 3 * LN2 / 4) / 4, abs=1e-7
    )
    # Dice: 1 - weighted mean of the per-class scores = 1 - (1 * 2/3 + 3 * 4/7) / 4
    assert DiceLoss(class_weights=weights)(logits, target).item() == pytest.approx(
        1 - (2 / 3 + 3 * 4 / 7) / 4, abs=1e-7
    )


def test_ce_matches_torch_with_weights_and_ignore() -> None:
    logits = torch.randn(2, 5, 6, 7)
    target = torch.randint(0, 5, (2, 6, 7))
    target[0, :2] = 255
    weights = torch.rand(5) + 0.1
    expected = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=255)(logits, target)
    assert CrossEntropyLoss(255, weights)(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy() -> None:
    logits = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    target = torch.randint(0, 4, (2, 5, 5))
    assert FocalLoss(gamma=0.0)(logits, target).item() == pytest.approx(
        CrossEntropyLoss()(logits, target).item(), abs=1e-12
    )


# ---------------------------------------------------------------- hand-computed values, 3 classes
# Class 2 is absent from the labels: it is left out of the Dice/Tversky average.
# class 0: TP = 1/2, FP = 1/4 + 1/3 = 7/12, FN = 1/2       -> Dice_0 = 1 / (1 + 7/12 + 1/2) = 12/25
# class 1: TP = 1/2 + 1/3 = 5/6, FP = 1/4, FN = 1/2 + 2/3 = 7/6
#                                                          -> Dice_1 = (5/3) / (5/3 + 1/4 + 7/6) = 20/37
# CE = (ln 2 + ln 2 + ln 3) / 3
def test_three_class_hand_computed_with_absent_class() -> None:
    logits, target = three_class_batch()
    assert DiceLoss()(logits, target).item() == pytest.approx(1 - (12 / 25 + 20 / 37) / 2, abs=1e-12)
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx((2 * LN2 + LN3) / 3, abs=1e-12)
    # Tversky(0.3, 0.7): class 0: 0.5 / (0.5 + 0.3 * 7/12 + 0.7 * 0.5) = 0.5 / 1.025
    #                    class 1: (5/6) / (5/6 + 0.3 * 0.25 + 0.7 * 7/6)
    tversky_0 = 0.5 / (0.5 + 0.3 * 7 / 12 + 0.7 * 0.5)
    tversky_1 = (5 / 6) / (5 / 6 + 0.3 * 0.25 + 0.7 * 7 / 6)
    assert TverskyLoss()(logits, target).item() == pytest.approx(1 - (tversky_0 + tversky_1) / 2, abs=1e-12)
    losses, present = TverskyLoss().per_class(logits, target)
    assert present.tolist() == [True, True, False]


def test_tversky_with_half_half_is_dice() -> None:
    logits = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 4, 4))
    assert TverskyLoss(0.5, 0.5)(logits, target).item() == pytest.approx(DiceLoss()(logits, target).item(), abs=1e-12)


def test_tversky_alpha_beta_weigh_false_positives_and_negatives() -> None:
    # Over-segmentation (FP only) vs under-segmentation (FN only) of class 1.
    target = torch.tensor([[[0, 0, 1, 1]]])
    big = 40.0  # softmax is one-hot to float64 precision (exp(-40) ~ 4e-18)
    over = torch.tensor([[[[big, 0.0, 0.0, 0.0]], [[0.0, big, big, big]]]], dtype=torch.float64)
    under = torch.tensor([[[[big, big, big, 0.0]], [[0.0, 0.0, 0.0, big]]]], dtype=torch.float64)
    # Averaged over both classes the two cases mirror each other, so look at class 1 alone:
    # over:  TP = 2, FP = 1, FN = 0;  under: TP = 1, FP = 0, FN = 1.
    recall_first = TverskyLoss(alpha=0.3, beta=0.7)
    assert recall_first.per_class(over, target)[0][1].item() == pytest.approx(1 - 2 / 2.3, abs=1e-12)
    assert recall_first.per_class(under, target)[0][1].item() == pytest.approx(1 - 1 / 1.7, abs=1e-12)
    # missing a pixel costs more than a spurious one; the other way round with alpha > beta
    precision_first = TverskyLoss(alpha=0.7, beta=0.3)
    assert precision_first.per_class(over, target)[0][1].item() == pytest.approx(1 - 2 / 2.7, abs=1e-12)
    assert precision_first.per_class(under, target)[0][1].item() == pytest.approx(1 - 1 / 1.3, abs=1e-12)


def test_combined_is_lam_tversky_plus_one_minus_lam_ce() -> None:
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[1, 0] = 4  # ignore_index == C
    for lam in (0.0, 0.3, 0.75, 1.0):
        combined = CombinedLoss(lam=lam, alpha=0.4, beta=0.6, ignore_index=4)(logits, target)
        tversky = TverskyLoss(0.4, 0.6, ignore_index=4)(logits, target)
        ce = CrossEntropyLoss(ignore_index=4)(logits, target)
        assert combined.item() == pytest.approx((lam * tversky + (1 - lam) * ce).item(), abs=1e-6)


# ---------------------------------------------------------------- ignore_index changes nothing
ALL_LOSSES = pytest.mark.parametrize("name", LOSSES)


@ALL_LOSSES
@pytest.mark.parametrize("num_classes, ignore_index", [(2, 255), (4, 255), (11, 11), (3, 0)])
def test_ignored_pixels_change_neither_value_nor_gradient(name: str, num_classes: int, ignore_index: int) -> None:
    """Ignored pixels: the loss and the gradients at the other pixels equal those of the batch
    without them (a cropped copy), whatever logits the ignored pixels carry."""
    kept_classes = [c for c in range(num_classes) if c != ignore_index]
    target = torch.tensor(kept_classes)[torch.randint(0, len(kept_classes), (2, 5, 8))]
    target[:, :, 6:] = ignore_index  # the last two columns are ignored
    target[0, 1, 2] = ignore_index  # and one pixel inside the kept region
    logits = torch.randn(2, num_classes, 5, 8, dtype=torch.float64, requires_grad=True)
    loss = build_loss(name, num_classes, ignore_index=ignore_index, class_weights=torch.rand(num_classes) + 0.5)

    value = loss(logits, target)
    (grad,) = torch.autograd.grad(value, logits)

    cropped = logits.detach()[..., :6].clone().requires_grad_(True)
    cropped_value = loss(cropped, target[..., :6])
    (cropped_grad,) = torch.autograd.grad(cropped_value, cropped)
    torch.testing.assert_close(value, cropped_value, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad[..., :6], cropped_grad, rtol=0, atol=1e-12)
    assert grad[..., 6:].abs().max() == 0  # ignored pixels get no gradient
    assert grad[0, :, 1, 2].abs().max() == 0

    # Other logits at the ignored pixels: nothing changes.
    moved = logits.detach().clone()
    moved[..., 6:] = 50 * torch.randn_like(moved[..., 6:])
    moved[0, :, 1, 2] = torch.tensor([-30.0] + [30.0] * (num_classes - 1), dtype=torch.float64)
    moved.requires_grad_(True)
    moved_value = loss(moved, target)
    (moved_grad,) = torch.autograd.grad(moved_value, moved)
    torch.testing.assert_close(moved_value, value, rtol=0, atol=1e-12)
    torch.testing.assert_close(moved_grad, grad, rtol=0, atol=1e-12)


@ALL_LOSSES
def test_only_ignored_pixels_give_zero_loss_and_gradient(name: str) -> None:
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    target = torch.full((1, 2, 2), 255)
    value = build_loss(name, 3, ignore_index=255)(logits, target)
    value.backward()
    assert value.item() == 0.0
    assert logits.grad.abs().max() == 0


@ALL_LOSSES
@pytest.mark.parametrize("num_classes", [2, 3, 21])
def test_every_loss_trains_for_2_to_n_classes(name: str, num_classes: int) -> None:
    """Finite, positive, and a few gradient steps on free logits lower it."""
    target = torch.randint(0, num_classes, (2, 6, 6))
    logits = torch.zeros(2, num_classes, 6, 6, requires_grad=True)
    loss = build_loss(name, num_classes)
    optimizer = torch.optim.SGD([logits], lr=5.0)
    first = None
    for _ in range(5):
        value = loss(logits, target)
        assert torch.isfinite(value) and value.item() > 0
        first = value.item() if first is None else first
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    assert loss(logits, target).item() < first


def test_half_precision_logits_are_computed_in_float32() -> None:
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    for name in LOSSES:
        loss = build_loss(name, 3)
        half = loss(logits.bfloat16(), target)
        assert half.dtype == torch.float32
        assert half.item() == pytest.approx(loss(logits.bfloat16().float(), target).item(), abs=1e-6)


def test_dice_is_a_batch_score() -> None:
    """TP/FP/FN are summed over the batch: two images score like one image holding both."""
    logits = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 4, 5))
    side_by_side = torch.cat([logits[0], logits[1]], dim=2).unsqueeze(0)
    target_side_by_side = torch.cat([target[0], target[1]], dim=1).unsqueeze(0)
    assert DiceLoss()(logits, target).item() == pytest.approx(
        DiceLoss()(side_by_side, target_side_by_side).item(), abs=1e-12
    )


# ---------------------------------------------------------------- build_loss and bad input
def test_build_loss_names_and_options() -> None:
    assert LOSSES == ("ce", "dice", "tversky", "focal", "combined")
    expected_types = [CrossEntropyLoss, DiceLoss, TverskyLoss, FocalLoss, CombinedLoss]
    for name, expected_type in zip(LOSSES, expected_types):
        # every option may be passed to every loss (a CLI passes all of them)
        loss = build_loss(name, 3, 255, None, tversky_alpha=0.2, tversky_beta=0.8, lam=0.5, focal_gamma=1.0, smooth=1.0)
        assert type(loss) is expected_type
    combined = build_loss("combined", 3, tversky_alpha=0.2, tversky_beta=0.8, lam=0.5)
    assert (combined.lam, combined.tversky.alpha, combined.tversky.beta) == (0.5, 0.2, 0.8)
    assert build_loss("focal", 3, focal_gamma=1.5).gamma == 1.5
    defaults = build_loss("combined", 3)
    assert (defaults.lam, defaults.tversky.alpha, defaults.tversky.beta) == (0.75, 0.3, 0.7)


def test_class_weights_follow_the_module_to_another_device_or_dtype() -> None:
    loss = build_loss("combined", 3, class_weights=[1.0, 2.0, 3.0])
    assert loss.ce.class_weights.tolist() == [1.0, 2.0, 3.0]
    assert "class_weights" not in loss.state_dict()  # not saved with a model's weights
    loss.to(torch.float64)
    assert loss.tversky.class_weights.dtype == torch.float64


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: build_loss("lovasz", 3), "unknown loss"),
        (lambda: build_loss("ce", 3, class_weights=[1.0, 2.0]), "2 class_weights for 3 classes"),
        (lambda: build_loss("ce", 3, class_weights=[1.0, -1.0, 1.0]), "class_weights"),
        (lambda: build_loss("ce", 1), "num_classes"),
        (lambda: build_loss("combined", 3, lam=1.5), "lam"),
        (lambda: build_loss("tversky", 3, tversky_alpha=-0.1), "alpha"),
        (lambda: build_loss("focal", 3, focal_gamma=-1.0), "gamma"),
    ],
)
def test_bad_options_raise(call, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=message):
        call()


@ALL_LOSSES
@pytest.mark.parametrize(("bad_label", "ignore_index"), [(3, 255), (255, None), (-1, 255), (4, 3)])
def test_label_outside_classes_raises(name: str, bad_label: int, ignore_index: int | None) -> None:
    logits = torch.randn(1, 3, 2, 2)
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    target[0, 1, 1] = bad_label
    with pytest.raises(ValueError, match=f"label {bad_label}"):
        build_loss(name, 3, ignore_index=ignore_index)(logits, target)


def test_shape_and_dtype_errors() -> None:
    loss = CrossEntropyLoss()
    with pytest.raises(ValueError, match="N x C x H x W"):
        loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="LongTensor"):
        loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="at least 2 classes"):
        loss(torch.randn(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
