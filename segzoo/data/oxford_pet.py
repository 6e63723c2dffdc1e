"""Oxford-IIIT Pet in the layout of its official archives (``images.tar.gz`` and
``annotations.tar.gz`` unpacked side by side)::

    root/images/<name>.jpg               photos (non-image files such as *.mat are skipped)
    root/annotations/trimaps/<name>.png  1 = pet, 2 = background, 3 = border
    root/annotations/trainval.txt        "<name> <class id> <species 1 cat, 2 dog> <breed id>"
    root/annotations/test.txt

Modes (option ``mode``):

- ``trimap``: background, pet, border (3 classes, nothing ignored);
- ``binary``: background, pet; the border is ignored (255);
- ``species``: background, cat, dog from the species column; the border is ignored.

Splits: the official ``trainval`` and ``test``, and ``train``/``val``: a seeded split of
trainval (``val_fraction`` of it for val, ``seed`` 0) so models can be validated without
touching test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from segzoo.data.base import (
    DatasetInfo,
    SegmentationDataset,
    apply_lut,
    check_missing_option,
    is_image_file,
    make_lut,
    read_mask_file,
    summarize_problems,
)

IGNORE_INDEX = 255
MODES = {
    "trimap": (["background", "pet", "border"], [(0, 0, 0), (220, 20, 60), (255, 255, 255)], None),
    "binary": (["background", "pet"], [(0, 0, 0), (220, 20, 60)], IGNORE_INDEX),
    "species": (["background", "cat", "dog"], [(0, 0, 0), (255, 140, 0), (30, 144, 255)], IGNORE_INDEX),
}
SPLITS = ("trainval", "test", "train", "val")
PET, BACKGROUND, BORDER = 1, 2, 3  # trimap values on disk


def info(mode: str = "trimap") -> DatasetInfo:
    if mode not in MODES:
        raise ValueError(f"oxford_pet mode must be one of {', '.join(MODES)}; got {mode!r}")
    names, palette, ignore = MODES[mode]
    return DatasetInfo("oxford_pet", list(names), list(palette), ignore, {"mode": mode})


def _luts(mode: str) -> dict[int, np.ndarray]:
    """Lookup table per species (1 cat, 2 dog) from trimap values to labels."""
    if mode == "trimap":
        lut = make_lut({BACKGROUND: 0, PET: 1, BORDER: 2})
        return {1: lut, 2: lut}
    if mode == "binary":
        lut = make_lut({BACKGROUND: 0, PET: 1, BORDER: IGNORE_INDEX})
        return {1: lut, 2: lut}
    return {s: make_lut({BACKGROUND: 0, PET: s, BORDER: IGNORE_INDEX}) for s in (1, 2)}


def read_list(path: Path) -> list[tuple[str, int]]:
    """``(name, species)`` rows of an official list file; ``#`` lines are comments."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 3 or fields[2] not in ("1", "2"):
            raise ValueError(f"{path}:{number}: expected '<name> <class id> <species 1|2> <breed id>', got {line!r}")
        rows.append((fields[0], int(fields[2])))
    return rows


def split_trainval(rows: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded split; the same ``seed`` gives the same split on every machine."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, not {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(rows))
    n_val = max(1, round(len(rows) * val_fraction))
    val = sorted(order[:n_val].tolist())
    train = sorted(order[n_val:].tolist())
    return [rows[i] for i in train], [rows[i] for i in val]


class OxfordPet(SegmentationDataset):
    """Oxford-IIIT Pet photos with trimap-derived masks (see the module docstring)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        transform: Callable | None = None,
        mode: str = "trimap",
        val_fraction: float = 0.1,
        seed: int = 0,
        missing: str = "error",
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"oxford_pet has splits {', '.join(SPLITS)}; got {split!r}")
        check_missing_option(missing)
        dataset_info = info(mode)
        root = Path(root)
        if not (root / "annotations").is_dir() and (root / "oxford-iiit-pet" / "annotations").is_dir():
            root = root / "oxford-iiit-pet"  # torchvision's download layout
        list_file = root / "annotations" / ("test.txt" if split == "test" else "trainval.txt")
        if not list_file.is_file():
            raise FileNotFoundError(f"split list not found: {list_file} (expected the official annotations layout)")
        rows = read_list(list_file)
        if split in ("train", "val"):
            rows = split_trainval(rows, val_fraction, seed)[0 if split == "train" else 1]

        images_dir, trimaps_dir = root / "images", root / "annotations" / "trimaps"
        if not images_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {images_dir}")
        # Look images up by stem among real image files: the official images/ also holds
        # a few .mat files, which are skipped.
        by_stem = {p.stem: p for p in sorted(images_dir.iterdir()) if is_image_file(p)}
        images, self.masks, self.species, problems = [], [], [], []
        for name, species in rows:
            image, mask = by_stem.get(name), trimaps_dir / f"{name}.png"
            if image is None:
                problems.append(f"{list_file.name} lists {name} but there is no image {images_dir / name}.jpg")
            elif not mask.is_file():
                problems.append(f"image without mask: {image} (no {mask})")
            else:
                images.append(image)
                self.masks.append(mask)
                self.species.append(species)
        if problems and missing == "error":
            raise FileNotFoundError(summarize_problems(problems))
        options = {"mode": mode} | ({"val_fraction": val_fraction, "seed": seed} if split in ("train", "val") else {})
        super().__init__(replace(dataset_info, options=options), images, transform)
        self.root, self.split, self.mode = root, split, mode
        self.problems = problems
        self._luts = _luts(mode)

    def mask_source(self, index: int) -> str:
        return str(self.masks[index])

    def read_label(self, index: int, image_shape: tuple[int, int]) -> np.ndarray:
        path = self.masks[index]
        return apply_lut(read_mask_file(path), self._luts[self.species[index]], path)
