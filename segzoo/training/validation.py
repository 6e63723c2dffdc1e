"""Validation and evaluation share this one function, so ``segzoo evaluate`` on a saved
checkpoint gives the number training recorded for it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from segzoo.checkpoint import stored_in_half
from segzoo.devices import ComputeRecipe
from segzoo.metrics import ConfusionMatrix
from segzoo.training.augment import normalize


@dataclass
class ValidationSums:
    """What a process adds up over its images; summed over processes it gives the scores."""

    confusion: torch.Tensor  # C x C int64, rows ground truth
    loss_sum: torch.Tensor  # float64 scalar: sum of per-image losses
    images: torch.Tensor  # int64 scalar


@torch.no_grad()
def validate(
    model: nn.Module,
    samples: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_classes: int,
    ignore_index: int | None,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    loss_fn: nn.Module | None = None,
    channels_last: bool = False,
    precision: str = "32-true",
    progress: bool = False,
    total: int | None = None,
    desc: str = "validate",
) -> ValidationSums:
    """Run ``model`` (in eval mode, float32 unless ``precision`` names an autocast one) on each
    ``(image uint8 3 x h x w, mask H x W)`` and add its pixels to a confusion matrix.

    Images are at the data set's scale, masks at full resolution: logits are resized
    (bilinear) to the mask before the arg-max. One image at a time, so images of any size
    can be scored and the result does not depend on batching.
    """
    was_training = model.training
    model.eval()
    metric = ConfusionMatrix(num_classes, ignore_index=ignore_index, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    try:
        with ComputeRecipe(device, precision, channels_last).autocast():
            for image, mask in tqdm(samples, total=total, desc=desc, disable=not progress, leave=False):
                x = normalize(image.to(device, non_blocking=True)[None], mean, std)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                target = mask.to(device, non_blocking=True)[None].long()
                logits = model(x).float()
                if logits.shape[-2:] != target.shape[-2:]:
                    logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
                metric.update(logits.argmax(1), target)
                if loss_fn is not None:
                    loss_sum += loss_fn(logits, target).double()
                count += 1
    finally:
        model.train(was_training)
    return ValidationSums(metric.matrix, loss_sum, torch.tensor(count, device=device))


@contextmanager
def weights_rounded_to_half(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Temporarily round every weight and buffer a checkpoint stores as float16 to float16
    precision (:func:`segzoo.checkpoint.stored_in_half`).

    Validating with the rounded weights makes the recorded score the score of the saved file.
    """
    if not enabled:
        yield
        return
    state = {k: v for k, v in model.state_dict().items() if stored_in_half(v)}
    saved = {k: v.detach().clone() for k, v in state.items()}
    with torch.no_grad():
        for v in state.values():
            v.copy_(v.half())
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in state.items():
                v.copy_(saved[k])
