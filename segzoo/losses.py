"""Segmentation losses: cross-entropy, Dice, Tversky, focal and ``lam * Tversky + (1 - lam) * CE``.

Every loss is an ``nn.Module`` called as ``loss(logits, target)`` with ``logits`` N x C x H x W
(raw scores; half precision is computed in float32) and ``target`` N x H x W long holding values in
``[0, C)`` or ``ignore_index``. ``ignore_index`` may lie outside ``[0, C)`` (255 for VOC, 11 for
CamVid's 11 classes); a pixel carrying it changes neither the value of the loss nor its gradient
with respect to any other pixel (its own logits get zero gradient). Any other value outside
``[0, C)`` raises a ``ValueError`` instead of a CUDA device-side assert.

Why not ``segmentation_models_pytorch.losses``? Its Dice/Tversky losses do mask ignored pixels
exactly, but they average over *all* C classes after zeroing the classes absent from the batch, so
the loss scale changes with how many classes a batch happens to contain (5 of CamVid's 11 present
-> the Dice term shrinks by 5/11), which also shifts the balance inside ``lam * Tversky +
(1 - lam) * CE`` from batch to batch. Its multiclass ``FocalLoss`` is a one-vs-rest *sigmoid* loss,
inconsistent with the softmax the other losses (and inference) use. The versions here are a few
lines each: Dice/Tversky average over the classes present in the batch's valid pixels, and the
focal loss is the softmax one of Lin et al. (reduces exactly to cross-entropy at ``gamma = 0``).

Dice and Tversky are "batch" scores: true/false positives are summed over every valid pixel of the
whole batch before the per-class ratio is taken, which is steadier than averaging per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LOSSES",
    "CombinedLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "TverskyLoss",
    "build_loss",
]

#: Names accepted by :func:`build_loss` (and ``segzoo train --loss``).
LOSSES = ("ce", "dice", "tversky", "focal", "combined")

ClassWeights = Sequence[float] | torch.Tensor | None


def _check_inputs(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None) -> None:
    """Shapes must match and every label must be a class or ``ignore_index``.

    One min/max reduction and one device sync: a wrong label would otherwise vanish silently
    (Dice/Tversky) or kill the CUDA context with a device-side assert (cross-entropy).
    """
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[:1] + logits.shape[2:] != target.shape:
        raise ValueError(
            f"expected logits N x C x H x W and target N x H x W, got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    if target.dtype != torch.long:
        raise ValueError(f"target must be a LongTensor of class indices, got {target.dtype}")
    if logits.shape[1] < 2:
        raise ValueError(f"need logits for at least 2 classes, got C={logits.shape[1]}")
    if target.numel() == 0:
        return
    labels = target if ignore_index is None else target.masked_fill(target == ignore_index, 0)
    low, high = torch.stack(torch.aminmax(labels)).tolist()  # one reduction, one sync
    num_classes = logits.shape[1]
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"target holds label {bad}, outside [0, {num_classes}) and not ignore_index={ignore_index}")


def _as_weights(class_weights: ClassWeights) -> torch.Tensor | None:
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
    if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"class_weights must be finite, >= 0 and not all 0, got {weights.tolist()}")
    return weights


def _check_weights(weights: torch.Tensor | None, num_classes: int) -> None:
    if weights is not None and weights.numel() != num_classes:
        raise ValueError(f"got {weights.numel()} class_weights for {num_classes} classes")


def _valid_mask(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 logits (autocast) are upcast: softmax and log in half precision lose too much."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


# Denominator floor: a batch whose pixels are all ignored gives 0 (numerator 0 too), not 0/0 = NaN.
_TINY = torch.finfo(torch.float32).tiny


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy: the mean over non-ignored pixels, weighted by ``class_weights``.

    Equals ``torch.nn.CrossEntropyLoss(weight=class_weights, ignore_index=ignore_index)`` (the mean
    divides by the summed class weights of the valid pixels), except that a batch without a single
    valid pixel gives 0 instead of NaN.
    """

    gamma = 0.0  # focusing exponent; FocalLoss sets it

    def __init__(self, ignore_index: int | None = None, class_weights: ClassWeights = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer("class_weights", _as_weights(class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_inputs(logits, target, self.ignore_index)
        return self._loss(logits, target)

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_weights(self.class_weights, logits.shape[1])
        valid = _valid_mask(target, self.ignore_index)
        safe_target = torch.where(valid, target, 0)  # ignore_index may be >= C: never index with it
        log_pt = F.log_softmax(_at_least_float32(logits), dim=1).gather(1, safe_target.unsqueeze(1)).squeeze(1)
        losses = torch.where(valid, -log_pt, 0.0)  # where, not *: no inf * 0 from ignored pixels
        if self.gamma:
            # 1 - p_t via expm1 (exact near p_t = 1); the floor keeps pow's gradient finite for gamma < 1.
            losses = (-torch.expm1(log_pt)).clamp_min(_TINY).pow(self.gamma) * losses
        weights = valid.to(losses.dtype)
        if self.class_weights is not None:
            weights = weights * self.class_weights.to(losses.dtype)[safe_target]
        return (losses * weights).sum() / weights.sum().clamp_min(_TINY)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"


class FocalLoss(CrossEntropyLoss):
    """Softmax focal loss (Lin et al., 2017): ``-w_t (1 - p_t) ** gamma * log p_t``.

    ``p_t`` is the softmax probability of the true class and ``w_t`` its class weight (the paper's
    alpha_t; 1 without ``class_weights``). Averaged like :class:`CrossEntropyLoss` (divided by the
    summed weights of the valid pixels), so ``gamma = 0`` is cross-entropy exactly. ``gamma = 2``
    (the paper's choice) down-weights pixels that are already classified confidently, so that the
    hard ones (boundaries, rare classes) dominate the gradient.
    """

    def __init__(self, gamma: float = 2.0, ignore_index: int | None = None, class_weights: ClassWeights = None) -> None:
        super().__init__(ignore_index=ignore_index, class_weights=class_weights)
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, ignore_index={self.ignore_index}"


class TverskyLoss(nn.Module):
    """Tversky loss ``1 - TP / (TP + alpha * FP + beta * FN)`` per class, averaged over classes.

    TP, FP and FN are soft counts from the softmax probabilities ``p``, summed over the valid pixels
    of the whole batch: ``TP_c = sum p_c [y = c]``, ``FP_c = sum p_c [y != c]``,
    ``FN_c = sum (1 - p_c) [y = c]``. ``alpha`` weights false positives and ``beta`` false
    negatives (Salehi et al., 2017); ``alpha = beta = 0.5`` is the Dice loss. The default
    ``alpha = 0.3, beta = 0.7`` punishes missed pixels more than spurious ones, i.e. favours
    recall: thin and rare classes (poles, pedestrians, cyclists), which a network trained on
    imbalanced data tends to under-segment, are grown rather than dropped.

    Only classes that occur among the batch's valid pixels are averaged (weighted by
    ``class_weights`` when given): for a class absent from the batch the ratio is 0/0 when it is
    not predicted, and its false positives are already paid for by the present classes' false
    negatives. ``smooth`` is added to numerator and denominator. A batch with no valid pixel gives 0.
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        ignore_index: int | None = None,
        class_weights: ClassWeights = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        if alpha < 0 or beta < 0 or alpha + beta <= 0:
            raise ValueError(f"Tversky alpha and beta must be >= 0 and not both 0, got alpha={alpha}, beta={beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.ignore_index = ignore_index
        self.smooth, self.eps = float(smooth), float(eps)
        self.register_buffer("class_weights", _as_weights(class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_inputs(logits, target, self.ignore_index)
        return self._loss(logits, target)

    def per_class(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss of each class (C,), present (C,) bool)``: the terms that :meth:`forward` averages."""
        _check_inputs(logits, target, self.ignore_index)
        return self._per_class(logits, target)

    def _per_class(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = _valid_mask(target, self.ignore_index)
        probs = torch.where(valid.unsqueeze(1), F.softmax(_at_least_float32(logits), dim=1), 0.0)
        # Mask before indexing with the labels: ignore_index may be >= C (255, or 11 for CamVid).
        safe_target = torch.where(valid, target, 0).unsqueeze(1)
        truth = torch.zeros_like(probs).scatter_(1, safe_target, 1.0) * valid.unsqueeze(1)  # one-hot
        dims = (0, 2, 3)
        true_pos = (probs * truth).sum(dims)
        support = truth.sum(dims)
        false_pos = probs.sum(dims) - true_pos
        false_neg = support - true_pos
        score = (true_pos + self.smooth) / (
            true_pos + self.alpha * false_pos + self.beta * false_neg + self.smooth
        ).clamp_min(self.eps)
        return 1.0 - score, support > 0

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_weights(self.class_weights, logits.shape[1])
        losses, present = self._per_class(logits, target)
        weights = present.to(losses.dtype)
        if self.class_weights is not None:
            weights = weights * self.class_weights.to(losses.dtype)
        return (losses * weights).sum() / weights.sum().clamp_min(_TINY)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, ignore_index={self.ignore_index}, smooth={self.smooth}"


class DiceLoss(TverskyLoss):
    """Soft Dice loss ``1 - 2 TP / (2 TP + FP + FN)``: :class:`TverskyLoss` with alpha = beta = 0.5."""

    def __init__(
        self,
        ignore_index: int | None = None,
        class_weights: ClassWeights = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
    ) -> None:
        super().__init__(0.5, 0.5, ignore_index=ignore_index, class_weights=class_weights, smooth=smooth, eps=eps)


class CombinedLoss(nn.Module):
    """``lam * Tversky + (1 - lam) * cross-entropy``, ``lam = 0.75`` by default.

    The region term (Tversky) optimises overlap directly and resists class imbalance; the
    cross-entropy term gives well-behaved per-pixel gradients early in training, when the soft
    overlaps are still near zero. Both parts share ``ignore_index`` and ``class_weights``.
    """

    def __init__(
        self,
        lam: float = 0.75,
        alpha: float = 0.3,
        beta: float = 0.7,
        ignore_index: int | None = None,
        class_weights: ClassWeights = None,
        smooth: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        self.lam = float(lam)
        self.ignore_index = ignore_index
        self.tversky = TverskyLoss(alpha, beta, ignore_index=ignore_index, class_weights=class_weights, smooth=smooth)
        self.ce = CrossEntropyLoss(ignore_index=ignore_index, class_weights=class_weights)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_inputs(logits, target, self.ignore_index)  # once for both terms
        return self.lam * self.tversky._loss(logits, target) + (1.0 - self.lam) * self.ce._loss(logits, target)

    def extra_repr(self) -> str:
        return f"lam={self.lam}"


def build_loss(
    name: str,
    num_classes: int,
    ignore_index: int | None = None,
    class_weights: ClassWeights = None,
    *,
    tversky_alpha: float = 0.3,
    tversky_beta: float = 0.7,
    lam: float = 0.75,
    focal_gamma: float = 2.0,
    smooth: float = 0.0,
) -> nn.Module:
    """The loss called ``name`` (one of :data:`LOSSES`) for ``num_classes`` classes.

    Keyword options a loss does not use are ignored, so a command line can pass all of its options
    whatever ``--loss`` is: ``tversky_alpha``/``tversky_beta`` (FP/FN weights; "tversky" and
    "combined"), ``lam`` (Tversky share of "combined"), ``focal_gamma`` ("focal"), ``smooth``
    ("dice", "tversky", "combined").
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    weights = _as_weights(class_weights)
    _check_weights(weights, num_classes)
    if name == "ce":
        return CrossEntropyLoss(ignore_index=ignore_index, class_weights=weights)
    if name == "dice":
        return DiceLoss(ignore_index=ignore_index, class_weights=weights, smooth=smooth)
    if name == "tversky":
        return TverskyLoss(tversky_alpha, tversky_beta, ignore_index=ignore_index, class_weights=weights, smooth=smooth)
    if name == "focal":
        return FocalLoss(focal_gamma, ignore_index=ignore_index, class_weights=weights)
    return CombinedLoss(
        lam, tversky_alpha, tversky_beta, ignore_index=ignore_index, class_weights=weights, smooth=smooth
    )
