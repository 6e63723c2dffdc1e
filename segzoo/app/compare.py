"""Run several models on one photo and put their results side by side.

The photo is decoded, resized and normalised once per distinct pre-processing (models of a
data set share it), then every model runs on the same tensor. Label maps are kept at the
working size; overlays are drawn at the uploaded size on request, so moving the opacity
slider re-blends without running a model again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from segzoo.app.catalog import LabelSet, ModelCache, ModelEntry
from segzoo.checkpoint import CheckpointError
from segzoo.export import runtime_name
from segzoo.inference import (
    exif_orientation,
    inference_scale,
    inference_short_side,
    input_dtype,
    orient,
    overlay,
    predict_labels,
    resize_max_side,
    stored_shape,
    to_tensor,
)
from segzoo.metrics import SegmentationScores, confusion_matrix, scores_from_confusion

if TYPE_CHECKING:  # imported where used: the app runs without instance support (see catalog)
    from segzoo.instance.predict import Instances

log = logging.getLogger(__name__)

# Disagreement colours by number of distinct labels at a pixel: 2, 3, 4 or more.
DISAGREEMENT_COLOURS = ((255, 214, 0), (255, 120, 0), (220, 20, 60))
# Where the classics' majority label differs from the encoder models'.
GROUP_DISAGREEMENT_COLOUR = (200, 0, 200)


@dataclass
class ModelOutput:
    entry: ModelEntry
    seconds: float = math.nan  # the forward pass and arg-max, not loading
    load_seconds: float = 0.0  # 0 when the model was already cached
    labels: np.ndarray | None = None  # semantic: uint8 label map at the working size
    instances: Instances | None = None  # instance models: what they found at the working size
    work_size: tuple[int, int] | None = None  # (height, width) the model saw
    image_scores: dict[str, float] | None = None  # vs the uploaded ground truth
    class_iou: dict[str, float] | None = None  # the same, per class name; NaN where undefined
    runtime: str = "torch"  # or "onnxruntime": what ran it
    error: str | None = None


@dataclass(frozen=True)
class GroupDisagreement:
    """Where the classics (``ModelSpec.classic``) and the encoder models part ways: at each
    pixel each group votes (the label most of its models give; on a tie, its model with the
    best test mIoU decides) and the votes differ."""

    image: np.ndarray  # the photo faded to grey, differing pixels in GROUP_DISAGREEMENT_COLOUR
    share: float  # of the photo's pixels
    classics: list[str]  # the models of each group, as the UI names them, best test mIoU first
    encoders: list[str]
    # The most frequent (classics' class, encoder models' class, share of the photo's pixels).
    top_pairs: list[tuple[str, str, float]]


@dataclass
class Comparison:
    image: np.ndarray  # RGB as uploaded
    label_set: LabelSet
    outputs: list[ModelOutput] = field(default_factory=list)
    work_image: np.ndarray | None = None  # what the semantic models saw (the first group's)
    score_threshold: float = 0.5
    ground_truth_note: str | None = None
    notes: list[str] = field(default_factory=list)  # how the upload was read (first frame, ...)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    def semantic(self) -> list[ModelOutput]:
        return [o for o in self.outputs if o.labels is not None]

    def full_size_labels(self, output: ModelOutput) -> np.ndarray:
        return resize_labels(output.labels, self.size)

    def rendered(self, output: ModelOutput, alpha: float, score_threshold: float | None = None) -> np.ndarray:
        """The model's result over the photo at the uploaded size (the photo itself on error)."""
        if output.labels is not None:
            return overlay(self.image, self.full_size_labels(output), self.label_set.palette, alpha)
        if output.instances is not None:
            from segzoo.instance.predict import draw_instances

            threshold = self.score_threshold if score_threshold is None else score_threshold
            work = _resize_rgb(self.image, output.work_size or self.size)
            names, palette = self.label_set.classes_of(output.entry)
            drawing = draw_instances(work, output.instances, names, palette, threshold)
            drawing = _resize_rgb(np.asarray(drawing, dtype=np.uint8), self.size)
            blended = (1 - alpha) * self.image.astype(np.float32) + alpha * drawing.astype(np.float32)
            return blended.round().clip(0, 255).astype(np.uint8)
        return self.image

    def disagreement(self) -> tuple[np.ndarray, float] | None:
        """Image of the pixels where the semantic models disagree, and that share of pixels."""
        maps = [self.full_size_labels(o) for o in self.semantic()]
        if len(maps) < 2:
            return None
        counts = distinct_label_counts(maps)
        return render_disagreement(self.image, counts), float((counts > 1).mean())

    def group_disagreement(self, top: int = 3) -> GroupDisagreement | None:
        """Where the classics' majority label differs from the encoder models'; ``None``
        unless both groups have a semantic model in the comparison."""
        # Best test mIoU first (untested last): within a group, a tie goes to the better model.
        ranked = sorted(self.semantic(), key=lambda o: -np.nan_to_num(o.entry.test_miou(), nan=-1.0))
        classics = [o for o in ranked if o.entry.classic]
        encoders = [o for o in ranked if not o.entry.classic]
        if not classics or not encoders:
            return None
        classic_votes = majority_labels([self.full_size_labels(o) for o in classics])
        encoder_votes = majority_labels([self.full_size_labels(o) for o in encoders])
        differ = classic_votes != encoder_votes
        names = self.label_set.class_names
        n = max(len(names), int(classic_votes.max()) + 1, int(encoder_votes.max()) + 1)
        pairs = np.bincount(classic_votes[differ].astype(np.int64) * n + encoder_votes[differ], minlength=n * n)
        top_pairs = [
            (_class_name(names, int(code) // n), _class_name(names, int(code) % n), float(pairs[code] / differ.size))
            for code in np.argsort(pairs, kind="stable")[::-1][:top]
            if pairs[code]
        ]
        image = render_mask(self.image, differ, GROUP_DISAGREEMENT_COLOUR)
        return GroupDisagreement(
            image,
            float(differ.mean()),
            [o.entry.label for o in classics],
            [o.entry.label for o in encoders],
            top_pairs,
        )

    def table(self) -> pd.DataFrame:
        rows = []
        for o in self.outputs:
            scores = o.image_scores or {}
            notes = []
            if o.error:
                notes.append(o.error)
            if o.entry.interim:
                notes.append("interim checkpoint (training not finished)")
            if o.load_seconds:
                notes.append(f"loaded in {o.load_seconds:.1f} s; first run, time includes set-up")
            if o.instances is not None:
                notes.append(f"{int((o.instances.scores >= self.score_threshold).sum())} instances")
                if o.image_scores:
                    notes.append(f"scored on its classes ({', '.join(self.label_set.classes_of(o.entry)[0])})")
            rows.append(
                {
                    "Model": o.entry.label,
                    "Family": o.entry.family,
                    "Time (ms)": _round(o.seconds * 1000, 1),
                    "mIoU, your mask (%)": _round(100 * scores.get("miou", math.nan), 1),
                    "Pixel acc., your mask (%)": _round(100 * scores.get("pixel_accuracy", math.nan), 1),
                    "Test mIoU (%)": _round(100 * o.entry.test_miou(), 1),
                    "Notes": "; ".join(notes),
                }
            )
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)

    def scored(self) -> list[ModelOutput]:
        """The outputs scored per class against an uploaded ground truth."""
        return [o for o in self.outputs if o.class_iou is not None]

    def class_iou_table(self) -> pd.DataFrame:
        """IoU in % on the uploaded mask, models (rows) x classes; NaN (a blank cell, ``null`` in
        the API's JSON; not 0) where a class is in neither the mask nor the model's labels."""
        names = self.label_set.class_names
        rows = [
            {"Model": o.entry.label, **{name: _round(100 * o.class_iou.get(name, math.nan), 1) for name in names}}
            for o in self.scored()
        ]
        return pd.DataFrame(rows, columns=["Model", *names])

    def class_iou_frame(self) -> pd.DataFrame:
        """The per-class IoU in the leaderboard's layout (``model``, ``interim``, ``iou``), so
        :func:`segzoo.app.figures.class_iou_heatmap` draws it."""
        rows = [{"model": o.entry.key, "interim": o.entry.interim, "iou": o.class_iou} for o in self.scored()]
        return pd.DataFrame(rows, columns=["model", "interim", "iou"])


TABLE_COLUMNS = [
    "Model",
    "Family",
    "Time (ms)",
    "mIoU, your mask (%)",
    "Pixel acc., your mask (%)",
    "Test mIoU (%)",
    "Notes",
]


def _round(value: float, digits: int) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), digits)


def working_image(image: np.ndarray, max_side: int | None, config: dict[str, Any] | None = None) -> np.ndarray:
    """Downscale to the scale the model runs at (as ``segzoo predict`` does), never beyond
    ``max_side``; small photos are not upscaled."""
    side = inference_scale(image, config or {}, fallback=max_side or max(image.shape[:2]))
    return resize_max_side(image, min(side, max_side) if max_side else side)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if labels.shape[:2] == tuple(size):
        return labels
    return cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def _resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == tuple(size):
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def compare_models(
    image: np.ndarray,
    label_set: LabelSet,
    entries: Sequence[ModelEntry],
    cache: ModelCache,
    max_side: int | None = 1024,
    score_threshold: float = 0.5,
    ground_truth: np.ndarray | None = None,
) -> Comparison:
    """Run every entry on ``image``; a model that fails to load is reported, not fatal."""
    comparison = Comparison(image=image, label_set=label_set, score_threshold=score_threshold)
    work_images: dict[Any, np.ndarray] = {}
    tensors: dict[tuple, torch.Tensor] = {}
    for entry in entries:
        output = ModelOutput(entry)
        comparison.outputs.append(output)
        short_side = inference_short_side(entry.config)  # models run at one scale share the input
        if short_side not in work_images:
            work = working_image(image, max_side, entry.config)
            # torch.from_numpy warns on read-only arrays (PIL's are): copy those once.
            work_images[short_side] = work if work.flags.writeable else work.copy()
        work = work_images[short_side]
        output.work_size = work.shape[:2]
        try:
            start = time.perf_counter()
            cached = entry in cache
            model = cache.get(entry)
            output.load_seconds = 0.0 if cached else time.perf_counter() - start
            output.runtime = runtime_name(model)
            if entry.task == "instance":
                from segzoo.instance.predict import predict_instances

                start = time.perf_counter()
                output.instances = predict_instances(model, work, entry.config, cache.device, score_threshold)
                output.seconds = time.perf_counter() - start
                indices = entry.label_set_indices
                if ground_truth is not None and indices is not None:  # its classes are some of the mask's
                    painted = output.instances.label_map(label_set.num_classes, score_threshold, indices)
                    painted = resize_labels(painted.astype(np.int32), comparison.size)
                    output.class_iou = instance_class_iou(painted, ground_truth, entry, label_set)
                    defined = [v for v in output.class_iou.values() if not math.isnan(v)]
                    output.image_scores = {"miou": float(np.mean(defined)) if defined else math.nan}
                continue
            dtype = input_dtype(model)
            mean = tuple(entry.config.get("mean", (0.485, 0.456, 0.406)))
            std = tuple(entry.config.get("std", (0.229, 0.224, 0.225)))
            key = (short_side, mean, std, dtype)
            if key not in tensors:
                tensors[key] = to_tensor(work, mean, std, cache.device, dtype)
            start = time.perf_counter()
            output.labels = predict_labels(model, tensors[key], recipe=cache.recipe)
            output.seconds = time.perf_counter() - start
            if comparison.work_image is None:
                comparison.work_image = work
            if ground_truth is not None:
                scores = mask_scores(comparison.full_size_labels(output), ground_truth, label_set)
                output.image_scores = {"miou": scores.miou, "pixel_accuracy": scores.pixel_accuracy}
                output.class_iou = dict(zip(label_set.class_names, scores.iou.tolist(), strict=True))
        except CheckpointError as exc:  # a broken or unverifiable file: the message says it all
            log.warning("%s: %s", entry.directory, exc)
            output.error = f"failed: {exc}"
        except (RuntimeError, ValueError) as exc:  # a fault in the model: keep the traceback
            log.exception("%s failed", entry.directory)
            output.error = f"failed: {exc}"
    return comparison


def mask_scores(prediction: np.ndarray, ground_truth: np.ndarray, label_set: LabelSet) -> SegmentationScores:
    """One label map's scores on the uploaded mask, from one confusion matrix: a class absent
    from both has a NaN IoU and is left out of the mIoU."""
    cm = confusion_matrix(
        torch.from_numpy(prediction.astype(np.int64)),
        torch.from_numpy(ground_truth.astype(np.int64)),
        label_set.num_classes,
        label_set.ignore_index,
    )
    return scores_from_confusion(cm, label_set.ignore_index)


def instance_class_iou(
    painted: np.ndarray, ground_truth: np.ndarray, entry: ModelEntry, label_set: LabelSet
) -> dict[str, float]:
    """IoU on the uploaded mask of each class an instance model knows; the label set's other
    classes get no score (they are not its to predict), though a car painted on road counts
    against the car."""
    # The label set's classes plus the painted background ("none of its instances").
    cm = confusion_matrix(
        torch.from_numpy(painted.astype(np.int64)),
        torch.from_numpy(ground_truth.astype(np.int64)),
        label_set.num_classes + 1,
        label_set.ignore_index,
    )
    iou = scores_from_confusion(cm, label_set.ignore_index).iou
    indices = entry.label_set_indices or range(label_set.num_classes)
    return {label_set.class_names[i]: float(iou[i]) for i in indices}


def read_ground_truth(
    path: str | Path,
    label_set: LabelSet,
    size: tuple[int, int],
    photo_orientation: int = 1,
    notes: list[str] | None = None,
) -> np.ndarray:
    """A ground-truth mask as class indices ``int64 HxW``, upright like the photo.

    Accepts a single-channel (or palette-mode) PNG of class indices, or an RGB PNG drawn in
    the data set's colours, where black is read as "unlabelled" when the data set ignores a
    label. ``size`` is the photo's upright size and ``photo_orientation`` the EXIF
    orientation applied to it: a mask with its own EXIF orientation is turned by it, and a
    mask that fits only the photo as stored is turned like the photo (with a note in
    ``notes``). Raises ``ValueError`` naming the file (its own name, never a server path)
    for a wrong size or unknown labels/colours.
    """
    name = Path(path).name
    try:
        with Image.open(path) as mask_image:
            mask_image.load()
            own_orientation = exif_orientation(mask_image)
            if own_orientation != 1:
                mask_image = ImageOps.exif_transpose(mask_image)
            mode = mask_image.mode
            if mode in ("P", "L", "I", "I;16", "1"):
                labels = np.asarray(mask_image).astype(np.int64)
                rgb = None
            else:
                rgb = np.asarray(mask_image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"ground-truth mask {name}: not a readable image ({exc})") from None
    shape = labels.shape if rgb is None else rgb.shape[:2]
    if photo_orientation != 1 and own_orientation == 1:
        stored = stored_shape(size, photo_orientation)
        if tuple(shape) == stored != tuple(size):
            # Drawn on the photo's stored pixels (as a data set's masks are): turn it alike.
            if rgb is None:
                labels = orient(labels, photo_orientation)
            else:
                rgb = orient(rgb, photo_orientation)
            shape = tuple(size)
            _note(
                notes,
                f"ground-truth mask {name} fits the photo as stored; turned by the photo's EXIF "
                f"orientation {photo_orientation}, like the photo",
            )
        elif tuple(shape) == stored == tuple(size):
            _note(
                notes,
                f"the photo has EXIF orientation {photo_orientation} and ground-truth mask {name} fits it "
                "both as stored and as shown: it is taken as drawn on the photo as shown (upright)",
            )
    if tuple(shape) != tuple(size):
        raise ValueError(
            f"ground-truth mask {name} is {shape[1]}x{shape[0]} but the photo is {size[1]}x{size[0]}; "
            "upload the mask that belongs to this photo"
        )
    if rgb is not None:
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            labels = rgb[..., 0].astype(np.int64)  # an index mask saved as grey RGB
        else:
            labels = _labels_from_colours(rgb, label_set, name)
    known = labels < label_set.num_classes
    if label_set.ignore_index is not None:
        known |= labels == label_set.ignore_index
    if not known.all():
        unknown = sorted(np.unique(labels[~known]).tolist())
        raise ValueError(
            f"ground-truth mask {name} holds labels {unknown[:10]} unknown to {label_set.name} "
            f"(classes 0-{label_set.num_classes - 1}"
            + (f", ignored {label_set.ignore_index}" if label_set.ignore_index is not None else "")
            + ")"
        )
    return labels


def _note(notes: list[str] | None, text: str) -> None:
    log.info("%s", text)
    if notes is not None:
        notes.append(text)


def _labels_from_colours(rgb: np.ndarray, label_set: LabelSet, name: str) -> np.ndarray:
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    palette = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(label_set.palette)}
    if label_set.ignore_index is not None:
        palette.setdefault(0, label_set.ignore_index)  # black: unlabelled
    values, inverse = np.unique(codes, return_inverse=True)
    unknown = [int(v) for v in values if int(v) not in palette]
    if unknown:
        colours = ", ".join(f"({v >> 16}, {(v >> 8) & 255}, {v & 255})" for v in unknown[:5])
        raise ValueError(
            f"ground-truth mask {name} has colours not in the {label_set.name} palette: {colours}"
            + (" ..." if len(unknown) > 5 else "")
        )
    lut = np.array([palette[int(v)] for v in values], dtype=np.int64)
    return lut[inverse.reshape(codes.shape)]


def distinct_label_counts(label_maps: Sequence[np.ndarray]) -> np.ndarray:
    """Per pixel, how many different labels the maps give (1 = all agree)."""
    stacked = np.sort(np.stack(label_maps), axis=0)
    return (1 + (np.diff(stacked, axis=0) != 0).sum(axis=0)).astype(np.uint8)


def majority_labels(label_maps: Sequence[np.ndarray]) -> np.ndarray:
    """Per pixel, the label most of the maps give; a tie goes to the earliest map's label
    among the tied (pass the maps best first)."""
    stacked = np.stack(label_maps)
    support = np.stack([(stacked == labels).sum(axis=0) for labels in stacked])  # maps agreeing with each
    earliest_best = support.argmax(axis=0)  # argmax takes the first of equal counts
    return np.take_along_axis(stacked, earliest_best[None], axis=0)[0]


def _faded(image: np.ndarray) -> np.ndarray:
    """The photo as a light grey background (float32 RGB) for a map drawn over it."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.repeat((96 + 0.5 * grey)[..., None], 3, axis=2)


def _paint(out: np.ndarray, where: np.ndarray, colour: tuple[int, int, int]) -> None:
    out[where] = 0.15 * out[where] + 0.85 * np.asarray(colour, dtype=np.float32)


def render_disagreement(image: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Faded grey photo; disagreeing pixels in yellow (2 labels), orange (3), red (4+)."""
    out = _faded(image)
    for i, colour in enumerate(DISAGREEMENT_COLOURS):
        _paint(out, counts == i + 2 if i < len(DISAGREEMENT_COLOURS) - 1 else counts >= i + 2, colour)
    return out.round().clip(0, 255).astype(np.uint8)


def render_mask(image: np.ndarray, where: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Faded grey photo with the pixels of ``where`` in ``colour``."""
    out = _faded(image)
    _paint(out, where, colour)
    return out.round().clip(0, 255).astype(np.uint8)


def _class_name(names: Sequence[str], index: int) -> str:
    return names[index] if index < len(names) else f"class {index}"
