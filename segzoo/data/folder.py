"""Your own data: a folder of images with masks or polygon annotations.

Layout (``root`` is the folder)::

    root/images/                photos (.jpg, .png, ...; other files are skipped)
    root/masks/<stem>.png       one mask per image, either
                                - index PNGs: the class index per pixel (grey or palette PNG), or
                                - colour PNGs: RGB colours listed in the classes file
    root/classes.yaml           class name -> RGB colour, in class-index order (or .yml/.json)
    root/annotations.json       instead of masks/: COCO polygons, or VGG Image Annotator
                                (VIA 2) polygons, rasterised to masks when loaded
    root/train.txt, val.txt ... optional split lists (file stems or names, one a line)

The classes file is a mapping in index order; colours are ``[r, g, b]`` or ``"#rrggbb"``::

    background: [0, 0, 0]
    road: [128, 64, 128]
    car: "#00008e"

or the same under a ``classes:`` key next to ``ignore_index: 255`` (stored value of
ignored pixels in index masks; 255 by default, ``null`` for none) and ``ignore_color``
(colour of ignored pixels in colour masks). A plain list of names also works for index
masks (colours are then generated).

Classes of annotation files: COCO categories (sorted by id) and VIA region attribute values
(the options declared in a VIA project, else the values found), after ``background``; a
classes file, if present, fixes the list and order instead. Overlapping shapes are painted
largest first, so small objects stay on top.

Splits: ``all``; ``train``/``val``/``test`` from ``<split>.txt`` (or ``splits/<split>.txt``)
when present, else a seeded random split (``val_fraction`` 0.2, ``test_fraction`` 0, ``seed`` 0).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segzoo.data.annotations import (
    find_annotation_file,
    load_annotation_json,
    rasterize_coco,
    rasterize_via,
    via_class_key,
    via_class_names,
    via_regions,
)
from segzoo.data.base import (
    DatasetInfo,
    SegmentationDataset,
    apply_lut,
    check_missing_option,
    default_palette,
    is_image_file,
    make_lut,
    read_mask_file,
    summarize_problems,
)

CLASSES_FILES = ("classes.yaml", "classes.yml", "classes.json", "palette.yaml", "palette.yml", "palette.json")
SPLITS = ("all", "train", "val", "test")
DEFAULT_IGNORE_INDEX = 255


# -- classes files ---------------------------------------------------------------------------------


def parse_color(value: Any, where: str) -> tuple[int, int, int]:
    if isinstance(value, str) and value.startswith("#") and len(value) == 7:
        return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    if (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, int) and 0 <= v <= 255 for v in value)
    ):
        return tuple(value)  # type: ignore[return-value]
    raise ValueError(f"{where}: colour must be [r, g, b] with values 0-255 or '#rrggbb', got {value!r}")


def read_classes_file(path: str | Path) -> dict[str, Any]:
    """Read a classes (palette) file. Returns ``{"names", "palette" (None if only names),
    "ignore_index", "ignore_color"}``."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    extra: dict[str, Any] = {}
    if isinstance(data, dict) and "classes" in data:
        extra = {k: v for k, v in data.items() if k != "classes"}
        data = data["classes"]
    unknown = set(extra) - {"ignore_index", "ignore_color"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)} (allowed: classes, ignore_index, ignore_color)")
    if isinstance(data, list) and all(isinstance(n, str) for n in data):
        names, palette = [str(n) for n in data], None
    elif isinstance(data, dict) and data:
        names = [str(n) for n in data]
        palette = [parse_color(c, f"{path}: class {n!r}") for n, c in data.items()]
        if len(set(palette)) != len(palette):
            raise ValueError(f"{path}: two classes share a colour")
    else:
        raise ValueError(f"{path}: expected a mapping of class name to [r, g, b] colour, or a list of names")
    ignore_index = extra.get("ignore_index", DEFAULT_IGNORE_INDEX)
    if ignore_index is not None and (not isinstance(ignore_index, int) or ignore_index < len(names)):
        raise ValueError(f"{path}: ignore_index must be an integer >= the number of classes ({len(names)}) or null")
    ignore_color = extra.get("ignore_color")
    if ignore_color is not None:
        ignore_color = parse_color(ignore_color, f"{path}: ignore_color")
        if palette and ignore_color in palette:
            raise ValueError(f"{path}: ignore_color {ignore_color} is also a class colour")
    return {"names": names, "palette": palette, "ignore_index": ignore_index, "ignore_color": ignore_color}


def find_classes_file(root: Path) -> Path | None:
    return next((root / n for n in CLASSES_FILES if (root / n).is_file()), None)


# -- the data set ----------------------------------------------------------------------------------


def _resolve(
    root: Path,
    classes: str | Path | Sequence[str] | None,
    annotations: str | Path | None,
    ignore_index: int | None | str,
    via_attribute: str | None,
) -> dict[str, Any]:
    """Work out the source (masks / COCO / VIA), the class list and its palette."""
    if isinstance(classes, (str, Path)):
        classes_path = Path(classes) if Path(classes).is_absolute() else root / classes
        spec = read_classes_file(classes_path)
    elif classes is not None:
        spec = {
            "names": [str(c) for c in classes],
            "palette": None,
            "ignore_index": DEFAULT_IGNORE_INDEX,
            "ignore_color": None,
        }
    else:
        classes_path = find_classes_file(root)
        spec = read_classes_file(classes_path) if classes_path else None
    if ignore_index != "default" and spec is not None:
        spec["ignore_index"] = ignore_index

    if annotations is not None:
        annotation_path = Path(annotations) if Path(annotations).is_absolute() else root / annotations
        if not annotation_path.is_file():
            raise FileNotFoundError(f"annotation file not found: {annotation_path}")
    elif (root / "masks").is_dir():
        annotation_path = None
    else:
        annotation_path = find_annotation_file(root, ignore=CLASSES_FILES)
        if annotation_path is None:
            raise FileNotFoundError(f"{root}: expected masks/ or a COCO / VIA annotations JSON next to images/")

    source: dict[str, Any] = {"annotation_path": annotation_path}
    if annotation_path is None:
        source["kind"] = "masks"
        if spec is None:
            raise ValueError(
                f"{root}: masks need a classes file ({' or '.join(CLASSES_FILES[:3])}: class name -> colour, "
                "in index order) or classes=[...] naming the classes"
            )
    else:
        kind, data = load_annotation_json(annotation_path)
        source.update(kind=kind, data=data)
        if kind == "coco":
            categories = sorted(data["categories"], key=lambda c: c["id"])
            found = ["background"] + [str(c["name"]) for c in categories]
        else:
            source["via_key"] = via_class_key(data, annotation_path, via_attribute)
            found = ["background"] + via_class_names(data, source["via_key"])
        if spec is None:
            spec = {"names": found, "palette": None, "ignore_index": None, "ignore_color": None}
        if ignore_index != "default":
            spec["ignore_index"] = ignore_index
        if spec["names"][0] != "background":
            raise ValueError(f"{annotation_path}: with annotation files the first class must be 'background'")
        if kind == "coco":
            unknown = [str(c["name"]) for c in categories if str(c["name"]) not in spec["names"]]
            if unknown:
                raise ValueError(f"{annotation_path}: categories {unknown} are not in the class list {spec['names']}")
            source["category_to_label"] = {c["id"]: spec["names"].index(str(c["name"])) for c in categories}
    if spec["ignore_index"] is not None and spec["ignore_index"] < len(spec["names"]):
        raise ValueError(f"ignore_index {spec['ignore_index']} must not be a class index (0..{len(spec['names']) - 1})")
    source["spec"] = spec
    return source


def info(
    root: str | Path,
    classes: Any = None,
    annotations: str | Path | None = None,
    ignore_index: int | None | str = "default",
    via_attribute: str | None = None,
) -> DatasetInfo:
    """The class list of a folder data set (reads only its classes / annotation file)."""
    spec = _resolve(Path(root), classes, annotations, ignore_index, via_attribute)["spec"]
    palette = spec["palette"] or default_palette(len(spec["names"]))
    return DatasetInfo("folder", spec["names"], palette, spec["ignore_index"])


def _read_split_list(path: Path) -> list[str]:
    return [
        Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def select_split(
    stems: list[str], root: Path, split: str, val_fraction: float, test_fraction: float, seed: int
) -> list[str]:
    """Stems of ``split``: from a list file if there is one, else a seeded random split."""
    if split not in SPLITS:
        raise ValueError(f"folder data sets have splits {', '.join(SPLITS)}; got {split!r}")
    if split == "all":
        return stems
    for list_path in (root / f"{split}.txt", root / "splits" / f"{split}.txt"):
        if list_path.is_file():
            wanted = _read_split_list(list_path)
            unknown = sorted(set(wanted) - set(stems))
            if unknown:
                raise FileNotFoundError(f"{list_path} names {len(unknown)} unknown images, e.g. {unknown[:5]}")
            return wanted
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1")
    order = np.random.default_rng(seed).permutation(len(stems))
    n_test, n_val = round(len(stems) * test_fraction), round(len(stems) * val_fraction)
    if split == "test" and n_test == 0:
        raise ValueError(f"{root} has no test.txt; pass test_fraction > 0 for a random test split")
    if split == "val" and n_val == 0:
        raise ValueError(f"{root} has no val.txt and val_fraction={val_fraction} leaves no validation images")
    picked = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}[split]
    return [stems[i] for i in sorted(picked)]


def images_by_stem(images_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """Image files of a folder by stem (non-images are skipped); two images with one
    stem are a problem, since masks and split lists name images by stem."""
    found: dict[str, Path] = {}
    problems = []
    for path in sorted(images_dir.iterdir()):
        if not is_image_file(path):
            continue
        if path.stem in found:
            problems.append(f"two images share the name {path.stem}: {found[path.stem].name} and {path.name}")
            continue
        found[path.stem] = path
    return found, problems


class FolderDataset(SegmentationDataset):
    """A user's folder of images with index / colour masks or COCO / VIA polygons.

    Options: ``classes``, a classes file (default: found in ``root``) or a list of class
    names; ``annotations``, the COCO / VIA JSON (default: ``masks/`` if present, else the
    JSON file in ``root``); ``mask_type``, ``auto`` (RGB PNGs are colour masks, grey and
    palette PNGs index masks), ``index`` or ``color``; ``ignore_index``, overriding the
    classes file's (``"default"``: 255 for masks, none for annotation files);
    ``via_attribute``, the VIA region attribute naming the class (default: guessed);
    ``val_fraction`` / ``test_fraction`` / ``seed`` for the random split; ``missing``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "all",
        transform: Callable | None = None,
        classes: str | Path | Sequence[str] | None = None,
        annotations: str | Path | None = None,
        mask_type: str = "auto",
        ignore_index: int | None | str = "default",
        via_attribute: str | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        seed: int = 0,
        missing: str = "error",
    ) -> None:
        check_missing_option(missing)
        if mask_type not in ("auto", "index", "color"):
            raise ValueError(f"mask_type must be 'auto', 'index' or 'color', not {mask_type!r}")
        root = Path(root)
        images_dir = root / "images"
        if not images_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {images_dir}")
        source = _resolve(root, classes, annotations, ignore_index, via_attribute)
        spec = source["spec"]
        self.kind: str = source["kind"]
        self.annotation_path: Path | None = source["annotation_path"]
        self.mask_type = mask_type
        names = spec["names"]
        self.ignore_color = spec["ignore_color"]
        self._lut = make_lut(
            {i: i for i in range(len(names))}
            | ({spec["ignore_index"]: spec["ignore_index"]} if spec["ignore_index"] is not None else {})
        )
        if spec["palette"]:
            colors = list(spec["palette"]) + ([self.ignore_color] if self.ignore_color else [])
            labels = list(range(len(names))) + ([spec["ignore_index"]] if self.ignore_color else [])
            if self.ignore_color and spec["ignore_index"] is None:
                raise ValueError("ignore_color needs an ignore_index")
            packed = np.array([(r << 16) | (g << 8) | b for r, g, b in colors], dtype=np.int64)
            order = np.argsort(packed)
            self._color_keys, self._color_labels = packed[order], np.array(labels, dtype=np.uint8)[order]
        else:
            self._color_keys = None

        image_by_stem, problems = images_by_stem(images_dir)
        self._records: dict[str, Any] = {}
        if self.kind == "masks":
            masks = {p.stem: p for p in sorted((root / "masks").iterdir()) if p.suffix.lower() == ".png"}
            problems += [f"image without mask: {image_by_stem[s]}" for s in sorted(image_by_stem.keys() - masks.keys())]
            problems += [f"mask without image: {masks[s]}" for s in sorted(masks.keys() - image_by_stem.keys())]
            self._records = {s: masks[s] for s in masks.keys() & image_by_stem.keys()}
        elif self.kind == "coco":
            problems += self._index_coco(source, root, image_by_stem)
        else:
            problems += self._index_via(source, image_by_stem)
        if problems and missing == "error":
            raise FileNotFoundError(summarize_problems(problems))

        stems = select_split(sorted(self._records), root, split, val_fraction, test_fraction, seed)
        palette = spec["palette"] or default_palette(len(names))
        options = {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed} if split != "all" else {}
        super().__init__(
            DatasetInfo("folder", names, palette, spec["ignore_index"], options),
            [image_by_stem[s] for s in stems],
            transform,
        )
        self.stems = stems
        self.root, self.split = root, split
        self.problems = problems

    def _index_coco(self, source: dict, root: Path, image_by_stem: dict[str, Path]) -> list[str]:
        data, problems = source["data"], []
        self._category_to_label = source["category_to_label"]
        by_image: dict[Any, list[dict]] = {img["id"]: [] for img in data["images"]}
        json_name = self.annotation_path.name
        for ann in data["annotations"]:
            if ann["image_id"] not in by_image:
                problems.append(f"{json_name}: annotation {ann.get('id')} has unknown image_id {ann['image_id']}")
                continue
            by_image[ann["image_id"]].append(ann)
        for img in data["images"]:
            stem = Path(img["file_name"]).stem
            if stem not in image_by_stem:
                problems.append(f"{json_name} lists {img['file_name']} but there is no such image in {root / 'images'}")
                continue
            self._records[stem] = (img, by_image[img["id"]])
        listed = set(self._records)
        problems += [
            f"image without annotation entry: {image_by_stem[s]}" for s in sorted(image_by_stem.keys() - listed)
        ]
        return problems

    def _index_via(self, source: dict, image_by_stem: dict[str, Path]) -> list[str]:
        self._via_key = source["via_key"]
        names = source["spec"]["names"]
        self._class_to_label = {n: i for i, n in enumerate(names)}
        problems = []
        for record in source["data"]["_via_img_metadata"].values():
            stem = Path(record["filename"]).stem
            if stem not in image_by_stem:
                problems.append(f"{self.annotation_path.name} lists {record['filename']} but there is no such image")
                continue
            self._records[stem] = via_regions(record)
        problems += [
            f"image without annotation entry: {image_by_stem[s]}"
            for s in sorted(image_by_stem.keys() - set(self._records))
        ]
        return problems

    def mask_source(self, index: int) -> str:
        if self.kind == "masks":
            return str(self._records[self.stems[index]])
        return f"{self.annotation_path} ({self.images[index].name})"

    def read_label(self, index: int, image_shape: tuple[int, int]) -> np.ndarray:
        record = self._records[self.stems[index]]
        if self.kind == "coco":
            img, anns = record
            if (img.get("height"), img.get("width")) != tuple(image_shape):
                raise ValueError(
                    f"size mismatch: image {self.images[index]} is {image_shape[1]}x{image_shape[0]} but "
                    f"{self.annotation_path.name} says {img.get('width')}x{img.get('height')} (width x height)"
                )
            return rasterize_coco(anns, self._category_to_label, image_shape, self.mask_source(index))
        if self.kind == "via":
            return rasterize_via(record, self._via_key, self._class_to_label, image_shape, self.mask_source(index))
        return self._read_mask_png(record)

    def _read_mask_png(self, path: Path) -> np.ndarray:
        color = self.mask_type == "color"
        if self.mask_type == "auto" and self._color_keys is not None:
            from PIL import Image

            with Image.open(path) as pil:
                color = pil.mode in ("RGB", "RGBA")
        if not color:
            return apply_lut(read_mask_file(path), self._lut, path)
        if self._color_keys is None:
            raise ValueError(f"mask {path} is a colour image but the classes file gives no colours")
        rgb = read_mask_file(path, color=True).astype(np.int64)
        packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        where = np.clip(np.searchsorted(self._color_keys, packed), 0, len(self._color_keys) - 1)
        known = self._color_keys[where] == packed
        if not known.all():
            bad = np.unique(packed[~known])
            shown = ", ".join(f"({v >> 16}, {(v >> 8) & 255}, {v & 255})" for v in bad[:10].tolist())
            raise ValueError(
                f"mask {path} has colours that are not in the classes file: {shown}" + (" ..." if len(bad) > 10 else "")
            )
        return self._color_labels[where]
