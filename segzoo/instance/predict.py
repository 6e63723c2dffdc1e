"""Instances in one photo, and a drawing of them: a colour per instance over its mask, its
box, and its class name with the score."""

from __future__ import annotations

import colorsys
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn

from segzoo.devices import ComputeRecipe

MASK_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays has no single truth value
class Instances:
    """The objects found in one image, one row per instance.

    ``boxes``: ``N x 4`` float32, ``x1 y1 x2 y2`` in pixels; ``labels``: ``N`` int64, 0-based
    indices into the checkpoint's ``class_names``; ``scores``: ``N`` float32 in ``[0, 1]``;
    ``masks``: ``N x H x W`` bool, at the image's size.
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def nbytes(self) -> int:
        return self.boxes.nbytes + self.labels.nbytes + self.scores.nbytes + self.masks.nbytes

    def label_map(
        self, background: int, score_threshold: float = 0.0, class_indices: Sequence[int] | None = None
    ) -> np.ndarray:
        """The instances painted into one ``H x W`` int64 map of class indices (``class_indices``
        maps them to another label set's), ``background`` where none scores ``>= score_threshold``;
        where instances overlap, the higher score wins."""
        painted = np.full(self.masks.shape[1:], background, dtype=np.int64)
        classes = self.labels if class_indices is None else np.asarray(class_indices, dtype=np.int64)[self.labels]
        for i in np.argsort(self.scores, kind="stable"):
            if self.scores[i] >= score_threshold:
                painted[self.masks[i]] = classes[i]
        return painted


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"expected an RGB image as a uint8 H x W x 3 array, got {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")


@torch.inference_mode()
def predict_instances(
    model: nn.Module,
    image: np.ndarray,
    config: dict[str, Any],
    device: str | torch.device = "cpu",
    score_threshold: float = 0.5,
    recipe: ComputeRecipe | None = None,
) -> Instances:
    """Detect and segment objects in an RGB ``uint8 HxWx3`` image.

    Returns the instances scoring ``>= score_threshold``, sorted by falling score, with
    labels indexing ``config["class_names"]``. The model resizes internally to the size it
    was trained at. ``recipe``: run the forward pass under its autocast (float32 without one).
    """
    _check_image(image)
    model.eval()
    dtype = next(model.parameters()).dtype
    x = torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1).to(dtype) / 255.0  # copy: may be read-only
    with recipe.autocast() if recipe is not None else contextlib.nullcontext():
        output = model([x])[0]
    instances = instances_from_output(output, image.shape[:2], score_threshold)
    num_classes = config.get("num_classes")
    if num_classes is not None and len(instances) and instances.labels.max() >= num_classes:
        raise ValueError(f"the model predicted class {instances.labels.max()} but config lists {num_classes} classes")
    return instances


def instances_from_output(
    output: dict[str, torch.Tensor], shape: tuple[int, int], score_threshold: float = 0.5
) -> Instances:
    """A torchvision-style detection output (1-based ``labels``, ``N x 1 x H x W`` mask
    probabilities) as :class:`Instances` scoring ``>= score_threshold``, best first."""
    scores = output["scores"].float().cpu().numpy()
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] >= score_threshold]
    height, width = shape
    masks = output["masks"][:, 0][torch.from_numpy(order).to(output["masks"].device)] > MASK_THRESHOLD
    return Instances(
        boxes=output["boxes"].float().cpu().numpy()[order].reshape(-1, 4).astype(np.float32),
        labels=output["labels"].cpu().numpy()[order].astype(np.int64) - 1,
        scores=scores[order].astype(np.float32),
        masks=masks.cpu().numpy().reshape(-1, height, width),
    )


def instance_colours(n: int) -> list[tuple[int, int, int]]:
    """``n`` well-separated bright colours (hues a golden-ratio step apart)."""
    colours = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((0.08 + i * 0.618034) % 1.0, 0.75, 0.95)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def draw_instances(
    image: np.ndarray,
    instances: Instances,
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]] | None = None,
    score_threshold: float = 0.5,
    alpha: float = 0.5,
) -> np.ndarray:
    """Draw the instances scoring ``>= score_threshold`` over a copy of ``image``.

    Each instance's mask gets its own colour (outlined); its box and label (``"name 0.93"``)
    use the class colour from ``palette`` when given, else the instance's colour. Higher
    scores are drawn on top. ``instances`` is :func:`predict_instances`' result for an
    image of this size.
    """
    _check_image(image)
    scores, masks = instances.scores, instances.masks
    if len(masks) and masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"instance masks are {masks.shape[1:]} but the image is {image.shape[:2]}")
    keep = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= score_threshold]
    canvas = image.astype(np.float32)
    colours = instance_colours(len(keep))
    # Masks first (lowest score first, so the best instance ends on top), then boxes and labels.
    for rank in reversed(range(len(keep))):
        mask = masks[keep[rank]]
        colour = np.array(colours[rank], dtype=np.float32)
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * colour
    out = canvas.round().clip(0, 255).astype(np.uint8)
    height, width = image.shape[:2]
    thickness = max(1, round(max(height, width) / 500))
    font_scale = max(0.4, max(height, width) / 1400)
    for rank in reversed(range(len(keep))):
        i = keep[rank]
        contours, _ = cv2.findContours(masks[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colours[rank], thickness)
        label = int(instances.labels[i])
        name = class_names[label] if 0 <= label < len(class_names) else f"class {label}"
        has_class_colour = palette is not None and 0 <= label < len(palette)
        box_colour = tuple(int(c) for c in palette[label]) if has_class_colour else colours[rank]
        x1, y1, x2, y2 = (int(round(float(v))) for v in instances.boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), box_colour, thickness)
        _draw_label(out, f"{name} {scores[i]:.2f}", (x1, y1), box_colour, font_scale, thickness)
    return out


def _draw_label(
    canvas: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int], scale: float, thickness: int
) -> None:
    """Text on a filled box in ``colour`` just above ``corner`` (below it at the top edge)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    text_thickness = max(1, thickness - 1)
    (tw, th), baseline = cv2.getTextSize(text, font, scale, text_thickness)
    x, y = corner
    x = min(max(0, x), max(0, canvas.shape[1] - tw - 4))
    top = y - th - baseline - 4
    if top < 0:
        top = y
    cv2.rectangle(canvas, (x, top), (x + tw + 4, top + th + baseline + 4), colour, cv2.FILLED)
    # Black on light colours, white on dark ones (ITU-R BT.601 luma).
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    text_colour = (0, 0, 0) if luma > 140 else (255, 255, 255)
    cv2.putText(canvas, text, (x + 2, top + th + 2), font, scale, text_colour, text_thickness, cv2.LINE_AA)
