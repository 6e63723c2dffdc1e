"""Semantic-segmentation scores from a confusion matrix streamed over a whole data set.

Scores are computed once from the summed confusion matrix of every pixel in the data set, not
averaged over per-image scores (which would over-weight small images and classes that happen to
be missing from an image). Rows of the matrix are ground truth, columns predictions.

Conventions (the same as torchmetrics' ``MulticlassJaccardIndex``, ``average="macro"``):

* pixels labelled ``ignore_index`` are left out entirely;
* a class that occurs neither in the ground truth nor in the predictions has IoU and Dice NaN and
  is left out of the means (an empty class is neither perfect nor a failure);
* a class predicted but absent from the ground truth has IoU 0, and its accuracy (recall) is NaN.

:class:`ConfusionMatrix` accumulates on the tensors' own device (int64, exact): per batch only a
few scalars (the label check) reach the CPU. :func:`scores_from_confusion` is a pure function, for evaluation
code and for the app's per-image IoU against an uploaded ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

__all__ = ["ConfusionMatrix", "SegmentationScores", "confusion_matrix", "scores_from_confusion"]


@dataclass
class SegmentationScores:
    """Scores of one confusion matrix. Per-class tensors are float64 on the CPU, NaN where undefined.

    Fields can also be read as ``scores["miou"]``.
    """

    confusion_matrix: torch.Tensor  # C x C int64, rows = ground truth, columns = prediction
    iou: torch.Tensor  # per class, TP / (TP + FP + FN) (Jaccard)
    dice: torch.Tensor  # per class, 2 TP / (2 TP + FP + FN) (F1)
    class_accuracy: torch.Tensor  # per class, TP / (TP + FN) (recall)
    miou: float  # mean of the defined per-class IoUs
    mdice: float
    pixel_accuracy: float  # correct pixels / all counted pixels
    mean_class_accuracy: float
    fw_iou: float  # IoU weighted by ground-truth class frequency

    def __getitem__(self, name: str):  # noqa: ANN204 - tensor or float, as the field
        if name not in self._names():
            raise KeyError(name)
        return getattr(self, name)

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @property
    def num_classes(self) -> int:
        return self.confusion_matrix.shape[0]

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict:
        """Plain JSON-able python (NaN -> ``None``), per-class scores keyed by class name.

        ``support`` is the number of ground-truth pixels of a class, ``predicted`` the number of
        pixels predicted as it.
        """
        if class_names is None:
            class_names = [str(i) for i in range(self.num_classes)]
        if len(class_names) != self.num_classes:
            raise ValueError(f"got {len(class_names)} class names for {self.num_classes} classes")
        support = self.confusion_matrix.sum(1).tolist()
        predicted = self.confusion_matrix.sum(0).tolist()
        per_class = {
            name: {
                "iou": _json_float(self.iou[i]),
                "dice": _json_float(self.dice[i]),
                "accuracy": _json_float(self.class_accuracy[i]),
                "support": support[i],
                "predicted": predicted[i],
            }
            for i, name in enumerate(class_names)
        }
        return {
            "miou": _json_float(self.miou),
            "mdice": _json_float(self.mdice),
            "pixel_accuracy": _json_float(self.pixel_accuracy),
            "mean_class_accuracy": _json_float(self.mean_class_accuracy),
            "fw_iou": _json_float(self.fw_iou),
            "per_class": per_class,
            "class_names": list(class_names),
            "confusion_matrix": self.confusion_matrix.tolist(),
        }


def _json_float(value: float | torch.Tensor) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _nanmean(values: torch.Tensor) -> float:
    defined = values[~values.isnan()]
    return float(defined.mean()) if defined.numel() else math.nan


def scores_from_confusion(cm: torch.Tensor, ignore_index: int | None = None) -> SegmentationScores:
    """All scores of a C x C confusion matrix (rows ground truth, columns prediction).

    ``ignore_index``, when it names one of the C classes, marks a class that has no ground truth
    by construction: its scores are NaN and it is left out of the means (as torchmetrics does).
    """
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {tuple(cm.shape)}")
    cm = cm.detach().to("cpu", torch.int64)
    counts = cm.double()
    true_pos = counts.diagonal()
    support = counts.sum(1)  # ground-truth pixels per class
    predicted = counts.sum(0)
    union = support + predicted - true_pos
    nan = torch.tensor(math.nan, dtype=torch.float64)
    # torch.where keeps 0/0 out of the results: the divisions below are only used where defined.
    iou = torch.where(union > 0, true_pos / union, nan)
    dice = torch.where(union > 0, 2 * true_pos / (support + predicted), nan)
    class_accuracy = torch.where(support > 0, true_pos / support, nan)
    if ignore_index is not None and 0 <= ignore_index < cm.shape[0]:
        iou[ignore_index] = dice[ignore_index] = class_accuracy[ignore_index] = math.nan
    total = counts.sum()
    # Every class with ground truth has a defined IoU; the others weigh 0.
    fw_iou = float((support / total * iou.nan_to_num(0.0)).sum()) if total > 0 else math.nan
    return SegmentationScores(
        confusion_matrix=cm,
        iou=iou,
        dice=dice,
        class_accuracy=class_accuracy,
        miou=_nanmean(iou),
        mdice=_nanmean(dice),
        pixel_accuracy=float(true_pos.sum() / total) if total > 0 else math.nan,
        mean_class_accuracy=_nanmean(class_accuracy),
        fw_iou=fw_iou,
    )


def _check_labels(labels: torch.Tensor, num_classes: int, ignore_index: int | None, what: str) -> None:
    """Every value must be a class or ``ignore_index``: one min/max reduction and one sync."""
    if labels.numel() == 0:
        return
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"{what} must hold integer class labels, got {labels.dtype}")
    if ignore_index is not None:
        labels = labels.masked_fill(labels == ignore_index, 0)
    low, high = torch.stack(torch.aminmax(labels)).tolist()
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"{what} holds label {bad}, outside [0, {num_classes}) and not ignore_index={ignore_index}")


def _as_labels(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Predicted labels N x H x W from logits/probabilities N x C x H x W or labels N x H x W."""
    if preds.dim() == target.dim() + 1:
        if preds.shape[1] != num_classes:
            raise ValueError(f"preds have {preds.shape[1]} channels for {num_classes} classes")
        preds = preds.argmax(1)
    if preds.shape != target.shape:
        raise ValueError(
            f"preds {tuple(preds.shape)} do not match target {tuple(target.shape)}: expected logits "
            "N x C x H x W or labels N x H x W for target N x H x W"
        )
    return preds


def confusion_matrix(
    preds: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None
) -> torch.Tensor:
    """C x C int64 confusion matrix (rows ground truth, columns prediction) on ``target``'s device.

    ``preds`` are logits/probabilities N x C x H x W (arg-maxed) or labels shaped like ``target``.
    Raises ``ValueError`` for a label outside ``[0, C)`` that is not ``ignore_index``.
    """
    preds = _as_labels(preds, target, num_classes).to(target.device)
    _check_labels(target, num_classes, ignore_index, "target")
    if preds.dim() == target.dim():  # predicted labels from outside: check them as well
        _check_labels(preds, num_classes, None, "preds")
    target, preds = target.reshape(-1).long(), preds.reshape(-1).long()
    # Ignored pixels go to one extra bin, dropped afterwards: a fixed-size bincount without
    # boolean indexing (which would sync to learn the number of valid pixels).
    index = target * num_classes + preds
    if ignore_index is not None:
        index = index.masked_fill(target == ignore_index, num_classes * num_classes)
    counts = torch.bincount(index, minlength=num_classes * num_classes + 1)
    return counts[: num_classes * num_classes].reshape(num_classes, num_classes)


class ConfusionMatrix:
    """Streaming confusion matrix over a data set; :meth:`compute` gives :class:`SegmentationScores`.

    >>> metric = ConfusionMatrix(num_classes=11, ignore_index=11)
    >>> for images, masks in loader:                        # doctest: +SKIP
    ...     metric.update(model(images), masks)
    >>> scores = metric.compute(); scores.miou               # doctest: +SKIP

    ``matrix`` holds the running C x C int64 counts (rows truth, columns prediction; None before
    the first batch when no ``device`` was given), e.g. to all-reduce across processes. It lives on
    ``device``, or on the device of the first batch when ``device`` is None; batches elsewhere are
    moved to it.
    """

    def __init__(
        self, num_classes: int, ignore_index: int | None = None, device: torch.device | str | None = None
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = None if device is None else torch.device(device)
        self.matrix: torch.Tensor | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every pixel seen so far."""
        self.matrix = None
        if self.device is not None:
            self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=self.device)

    @torch.no_grad()
    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``preds`` logits N x C x H x W or labels N x H x W; ``target`` N x H x W."""
        if self.matrix is None:
            self.device = target.device
            self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=self.device)
        target = target.to(self.device)
        preds = preds.to(self.device)
        self.matrix += confusion_matrix(preds, target, self.num_classes, self.ignore_index)

    def compute(self) -> SegmentationScores:
        """Scores of every pixel seen since the last :meth:`reset` (all NaN when none)."""
        matrix = self.matrix
        if matrix is None:
            matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        return scores_from_confusion(matrix, self.ignore_index)
