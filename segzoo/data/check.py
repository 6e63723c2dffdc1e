"""Data checks and class statistics (``segzoo data check DIR``).

:func:`check_dataset` loads every sample the way training does and collects, instead of
raising, what is wrong: images without masks, unreadable files, image/mask size
mismatches and label values outside the class list (each naming the file). It also counts
pixels per class, from which :func:`median_frequency_weights` derives loss weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from segzoo.data.base import SegmentationDataset, exif_orientation


@dataclass
class ClassStats:
    """Pixel counts per class. ``image_pixels[c]``: pixels of the images where class ``c``
    occurs (the denominator of median-frequency balancing)."""

    num_classes: int
    pixels: np.ndarray = field(default=None)  # type: ignore[assignment]
    image_pixels: np.ndarray = field(default=None)  # type: ignore[assignment]
    images_with: np.ndarray = field(default=None)  # type: ignore[assignment]
    ignored: int = 0
    total: int = 0

    def __post_init__(self) -> None:
        for name in ("pixels", "image_pixels", "images_with"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(self.num_classes, dtype=np.int64))

    def add(self, counts: np.ndarray, ignore_index: int | None) -> None:
        """Add one mask's ``np.bincount`` (length >= num_classes)."""
        per_class = counts[: self.num_classes]
        present = per_class > 0
        labelled = int(per_class.sum())
        self.pixels += per_class
        self.image_pixels[present] += labelled
        self.images_with += present
        self.ignored += int(counts[ignore_index]) if ignore_index is not None and ignore_index < len(counts) else 0
        self.total += int(counts.sum())

    @property
    def frequencies(self) -> np.ndarray:
        """Share of the labelled pixels per class."""
        return self.pixels / max(1, int(self.pixels.sum()))

    def median_frequency_weights(self) -> np.ndarray:
        """Eigen & Fergus (2015) median-frequency balancing, as in SegNet: with
        ``freq(c) = pixels(c) / labelled pixels of the images containing c``, the weight is
        ``median(freq) / freq(c)``, the median taken over the classes that occur.

        The one definition behind both ``segzoo data check`` and ``--class-weights median``.
        A class that never occurs gets weight 0: with no pixel of it there is nothing to
        learn or to weigh (and any other value would only matter if the class appeared
        in a prediction, where a loss weight plays no part)."""
        present = self.image_pixels > 0
        weights = np.zeros(self.num_classes)
        if present.any():
            freq = self.pixels[present] / self.image_pixels[present]
            weights[present] = np.median(freq) / freq
        return weights.astype(np.float32)


def _is_dataset(source: Any) -> bool:
    """A data set (anything with ``info`` and ``load_mask`` or ``load_raw``), not masks."""
    return hasattr(source, "info") and (hasattr(source, "load_mask") or hasattr(source, "load_raw"))


def _masks(source: Any, progress: bool) -> Iterable[np.ndarray]:
    if _is_dataset(source):
        indices = tqdm(range(len(source)), desc=f"{source.info.name} masks", disable=not progress, leave=False)
        if hasattr(source, "load_mask"):  # the labels alone: no image is decoded
            return (source.load_mask(i) for i in indices)
        return (source.load_raw(i)[1] for i in indices)
    return (np.asarray(m) for m in source)


def class_statistics(
    source: SegmentationDataset | Iterable[np.ndarray],
    num_classes: int | None = None,
    ignore_index: int | None = None,
    progress: bool = True,
) -> ClassStats:
    """Pixel counts of a data set (its masks only; images are not decoded) or of masks."""
    if _is_dataset(source):
        num_classes = source.info.num_classes if num_classes is None else num_classes
        ignore_index = source.info.ignore_index if ignore_index is None else ignore_index
    if num_classes is None:
        raise ValueError("num_classes is needed when passing masks rather than a data set")
    stats = ClassStats(num_classes)
    for mask in _masks(source, progress):
        if isinstance(mask, torch.Tensor):
            mask = mask.numpy()
        counts = np.bincount(mask.ravel().astype(np.int64), minlength=num_classes)
        unknown = np.flatnonzero(counts[num_classes:]) + num_classes
        unknown = unknown[unknown != ignore_index] if ignore_index is not None else unknown
        if len(unknown):
            raise ValueError(f"a mask holds values {unknown.tolist()} outside 0..{num_classes - 1}")
        stats.add(counts, ignore_index)
    return stats


def median_frequency_weights(
    source: SegmentationDataset | Iterable[np.ndarray],
    num_classes: int | None = None,
    ignore_index: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Per-class loss weights (float32 tensor of ``num_classes``) by median-frequency
    balancing (:meth:`ClassStats.median_frequency_weights`); pass the training data set,
    e.g. to ``nn.CrossEntropyLoss(weight=...)``. ``ValueError`` if no pixel is labelled."""
    stats = class_statistics(source, num_classes, ignore_index, progress)
    if not stats.pixels.any():
        raise ValueError("the masks hold no labelled pixel, so there are no class frequencies to balance")
    return torch.from_numpy(stats.median_frequency_weights())


@dataclass
class CheckReport:
    dataset: str
    split: str
    samples: int
    problems: list[str]
    stats: ClassStats
    class_names: list[str]
    ignore_index: int | None
    sizes: dict[tuple[int, int], int]  # (height, width) -> images
    # Worth a look but not wrong: photos that viewers show turned (EXIF orientation).
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _identity(item):  # noqa: ANN001, ANN202 - module level so worker processes can pickle it
    return item


class _CheckItems(Dataset):
    """Loads sample ``i`` like training does; returns its pixel counts or the error."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[tuple[int, int] | None, np.ndarray | None, str | None, str | None]:
        try:
            image, mask = self.dataset.load_raw(index)
        except (ValueError, OSError) as exc:  # corrupt file, bad label value, size mismatch
            return None, None, str(exc), None
        return image.shape[:2], np.bincount(mask.ravel(), minlength=256), None, self._orientation_note(index)

    def _orientation_note(self, index: int) -> str | None:
        path = self.dataset.images[index]
        orientation = exif_orientation(path)
        if orientation == 1:
            return None
        return (
            f"{path} has EXIF orientation {orientation}: viewers and annotation tools show it turned, but "
            "training reads it as stored; check that its labels fit the stored pixels, or save it upright"
        )


def check_dataset(dataset: SegmentationDataset, workers: int = 0, progress: bool = True) -> CheckReport:
    """Load every sample of ``dataset`` and report problems and class statistics
    (``dataset`` built with ``missing="skip"`` also reports images without masks)."""
    info = dataset.info
    stats = ClassStats(info.num_classes)
    problems = list(dataset.problems)
    notes: list[str] = []
    sizes: dict[tuple[int, int], int] = {}
    loader = DataLoader(_CheckItems(dataset), batch_size=None, num_workers=workers, collate_fn=_identity)
    split = getattr(dataset, "split", "")
    for shape, counts, error, note in tqdm(
        loader, total=len(dataset), desc=f"checking {info.name} {split}", disable=not progress, leave=False
    ):
        if error is not None:
            problems.append(error)
            continue
        sizes[shape] = sizes.get(shape, 0) + 1
        stats.add(counts, info.ignore_index)
        if note:
            notes.append(note)
    return CheckReport(
        info.name, split, len(dataset), problems, stats, list(info.class_names), info.ignore_index, sizes, notes
    )


def format_sizes(sizes: dict[tuple[int, int], int]) -> str:
    if not sizes:
        return "none"
    common = sorted(sizes.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{w}x{h} ({n})" for (h, w), n in common[:3])
    return text + (f" and {len(common) - 3} other sizes" if len(common) > 3 else "")


def format_reports(reports: list[CheckReport], max_problems: int = 20) -> str:
    """The text ``segzoo data check`` prints: problems, then a per-class table with each
    split's pixel share and the median-frequency weights of the first split."""
    lines = []
    for r in reports:
        lines.append(
            f"{r.dataset} {r.split}: {r.samples} samples, image sizes (width x height) {format_sizes(r.sizes)}"
        )
        for problem in r.problems[:max_problems]:
            lines.append(f"  problem: {problem}")
        if len(r.problems) > max_problems:
            lines.append(f"  ... and {len(r.problems) - max_problems} more problems")
        for warning in r.warnings[:max_problems]:
            lines.append(f"  warning: {warning}")
        if len(r.warnings) > max_problems:
            lines.append(f"  ... and {len(r.warnings) - max_problems} more warnings")
    if not reports:
        return "nothing to check"
    base = reports[0]
    weights = base.stats.median_frequency_weights()
    width = max(len(n) for n in base.class_names + ["class"])
    header = f"{'id':>3}  {'class':<{width}}" + "".join(f"  {r.split + ' %':>10}" for r in reports)
    header += f"  {'images':>7}  {'weight':>7}"
    lines += [
        "",
        f"pixel share per class (of labelled pixels); images containing it and "
        f"median-frequency weight from {base.split} (what --class-weights median gives when training on it; "
        "0 for a class that does not occur):",
        header,
    ]
    for c, name in enumerate(base.class_names):
        row = f"{c:>3}  {name:<{width}}" + "".join(f"  {100 * r.stats.frequencies[c]:>10.2f}" for r in reports)
        lines.append(row + f"  {base.stats.images_with[c]:>7}  {weights[c]:>7.4f}")
    if base.ignore_index is not None:
        row = f"{base.ignore_index:>3}  {'(ignored)':<{width}}"
        row += "".join(f"  {100 * r.stats.ignored / max(1, r.stats.total):>9.2f}*" for r in reports)
        lines += [row, "* share of all pixels"]
    total = sum(len(r.problems) for r in reports)
    lines.append("")
    lines.append("no problems found" if total == 0 else f"{total} problem(s) found")
    return "\n".join(lines)
