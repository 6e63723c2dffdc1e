"""Your own data: a folder of images with masks or polygon annotations.

Layout (``root`` is the folder)::

    root/images/                photos (.jpg, .png, ...; other files are skipped)
    root/masks/<stem>.png       one mask per image, either
                                - index PNGs: the class index per pixel (grey or palette PNG), or
                                - colour PNGs: colours listed in the classes file (RGB PNGs, and
                                  palette PNGs, decoded through their own palette)
    root/classes.yaml           class name -> RGB colour, in class-index order (or .yml/.json)
    root/annotations.json       instead of masks/: COCO polygons, or VGG Image Annotator
                                (VIA 2) polygons, rasterised to masks when loaded
    root/train.txt, val.txt ... optional split lists (file stems or names, one a line)

The photos may also sit beside their COCO / VIA JSON, without ``images/``: in ``root``
itself, or in ``train/``, ``val/`` (or ``valid/``) and ``test/`` folders that each hold
their photos and JSON (the Mask R-CNN balloon tutorial's layout, Roboflow's COCO export).
Such folders are the splits; ``all`` is all of them, and the class list is taken from
every folder's JSON so that every split numbers the classes alike.

The classes file is a mapping in index order; colours are ``[r, g, b]`` or ``"#rrggbb"``::

    background: [0, 0, 0]
    road: [128, 64, 128]
    car: "#00008e"

or the same under a ``classes:`` key next to ``ignore_index: 255`` (stored value of
ignored pixels in index masks; 255 by default, ``null`` for none) and ``ignore_color``
(colour of ignored pixels in colour masks). A plain list of names also works for index
masks (colours are then generated), and so does Supervisely's ``meta.json`` form,
``{"classes": [{"title": "road", "color": "#804080"}, ...], "tags": []}``.

Mask type (``mask_type``): ``auto`` reads RGB PNGs as colours; palette PNGs through their
palette as colours when the classes file gives colours (palette order may differ from
file to file), else as indices; grey PNGs as indices, unless their grey levels are class
colours and not indices. A grey mask that reads as valid labels both ways, differently,
is an error asking for ``index`` or ``color``, never a guess.

Classes of annotation files: COCO categories (sorted by id) and VIA region attribute values
(the options declared in a VIA project, else the values found), after ``background``; a
classes file, if present, fixes the list and order instead. Overlapping shapes are painted
largest first, so small objects stay on top.

Splits: ``all``; ``train``/``val``/``test`` from split folders, else from ``<split>.txt``
(or ``splits/<split>.txt``) when present, else a seeded random split (``val_fraction`` 0.2,
``test_fraction`` 0, ``seed`` 0).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    INVALID,
    DatasetInfo,
    SegmentationDataset,
    apply_lut,
    check_missing_option,
    default_palette,
    is_image_file,
    make_lut,
    option_hint,
    read_mask_file,
    summarize_problems,
)

CLASSES_FILES = ("classes.yaml", "classes.yml", "classes.json", "palette.yaml", "palette.yml", "palette.json")
SPLITS = ("all", "train", "val", "test")
# Folder names that are splits when photos sit beside their annotation JSON (no images/):
# the balloon tutorial's train/ and val/, Roboflow's train/ valid/ test/.
SPLIT_FOLDERS = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}
MASK_TYPES = ("auto", "index", "color")
DEFAULT_IGNORE_INDEX = 255
# Top-level keys of Supervisely's meta.json besides "classes": they describe tags and the
# project, not classes, so a classes file in that form may carry them.
SUPERVISELY_KEYS = frozenset({"tags", "projectType", "projectSettings"})
ACCEPTED_CLASSES_FORMS = (
    "accepted forms (YAML or JSON): a mapping of class name to colour in index order "
    "(background: [0, 0, 0], car: '#00008e'); the same under a 'classes' key, optionally with "
    "'ignore_index' and 'ignore_color'; a list of class names (index masks); or Supervisely's "
    '{"classes": [{"title": "car", "color": "#00008e"}, ...], "tags": []}'
)


# -- classes files ---------------------------------------------------------------------------------


def parse_color(value: Any, where: str) -> tuple[int, int, int]:
    if isinstance(value, str) and value.startswith("#") and len(value) == 7:
        try:
            return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        except ValueError:
            pass
    if (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, int) and 0 <= v <= 255 for v in value)
    ):
        return tuple(value)  # type: ignore[return-value]
    raise ValueError(f"{where}: colour must be [r, g, b] with values 0-255 or '#rrggbb', got {value!r}")


def _load_classes_data(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())  # YAML's message spans lines; keep the error on one
        raise ValueError(f"{path}: cannot read the classes file ({detail}); {ACCEPTED_CLASSES_FORMS}") from None


def _class_records(records: list[dict], path: Path) -> tuple[list[str], list[tuple[int, int, int]] | None]:
    """Names and colours of Supervisely-style ``[{"title": ..., "color": ...}, ...]``."""
    names, colours = [], []
    for i, record in enumerate(records):
        name = record.get("title", record.get("name"))
        if not isinstance(name, str) or not name:
            raise ValueError(f"{path}: class {i} has no 'title' (or 'name'); {ACCEPTED_CLASSES_FORMS}")
        names.append(name)
        colours.append(record.get("color", record.get("colour")))
    given = [c is not None for c in colours]
    if any(given) and not all(given):
        missing = [n for n, c in zip(names, colours, strict=True) if c is None]
        raise ValueError(f"{path}: classes {missing} have no colour; give every class a colour or none")
    if not all(given):
        return names, None
    return names, [parse_color(c, f"{path}: class {n!r}") for n, c in zip(names, colours, strict=True)]


def read_classes_file(path: str | Path) -> dict[str, Any]:
    """Read a classes (palette) file. Returns ``{"names", "palette" (None if only names),
    "ignore_index", "ignore_color"}``; a ``ValueError`` naming the file and the accepted
    forms when it cannot be read."""
    path = Path(path)
    data = _load_classes_data(path)
    extra: dict[str, Any] = {}
    if isinstance(data, dict) and "classes" in data:
        extra = {k: v for k, v in data.items() if k != "classes"}
        data = data["classes"]
        if isinstance(data, list) and any(isinstance(c, dict) for c in data):
            extra = {k: v for k, v in extra.items() if k not in SUPERVISELY_KEYS}
    unknown = set(extra) - {"ignore_index", "ignore_color"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; {ACCEPTED_CLASSES_FORMS}")
    if isinstance(data, list) and data and all(isinstance(c, dict) for c in data):
        names, palette = _class_records(data, path)
    elif isinstance(data, list) and data and all(isinstance(n, str) for n in data):
        names, palette = [str(n) for n in data], None
    elif isinstance(data, dict) and data:
        names = [str(n) for n in data]
        palette = [parse_color(c, f"{path}: class {n!r}") for n, c in data.items()]
    else:
        raise ValueError(f"{path}: no class list found; {ACCEPTED_CLASSES_FORMS}")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a class name is listed twice: {sorted({n for n in names if names.count(n) > 1})}")
    if palette and len(set(palette)) != len(palette):
        raise ValueError(f"{path}: two classes share a colour")
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


# -- layout: where the photos and their labels are -------------------------------------------------


@dataclass
class Part:
    """One folder of photos and where their labels come from: ``masks_dir`` or an
    annotation JSON (``kind`` ``coco`` / ``via``). ``split`` is set for a split folder."""

    split: str | None
    images_dir: Path
    masks_dir: Path | None = None
    annotation_path: Path | None = None
    kind: str = "masks"
    data: Any = field(default=None, repr=False)
    category_to_label: dict[Any, int] = field(default_factory=dict, repr=False)


def _holds_images(folder: Path) -> bool:
    return folder.is_dir() and any(is_image_file(p) for p in folder.iterdir())


def split_folders(root: str | Path) -> dict[str, Path]:
    """``{split: folder}`` for ``train/``, ``val/`` (``valid/``), ``test/`` folders that each
    hold photos (or ``images/``) beside their labels; empty when ``root`` has ``images/``."""
    root = Path(root)
    if (root / "images").is_dir():
        return {}
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        for name in names:
            folder = root / name
            if (folder / "images").is_dir() or _holds_images(folder):
                found[split] = folder
                break
    return found


def _part(folder: Path, split: str | None, annotations: str | Path | None) -> Part:
    """Photos in ``folder/images/`` or ``folder`` itself; labels in ``folder/masks/`` or a JSON."""
    images_dir = folder / "images" if (folder / "images").is_dir() else folder
    if images_dir == folder and not _holds_images(folder):
        raise FileNotFoundError(
            f"image folder not found: {folder / 'images'} (expected images/ with masks/ or a COCO / VIA JSON, "
            "photos beside their JSON, or train/ and val/ folders each holding photos and their JSON)"
        )
    if annotations is not None:
        path = Path(annotations) if Path(annotations).is_absolute() else folder / annotations
        if not path.is_file():
            raise FileNotFoundError(f"annotation file not found: {path}")
        return Part(split, images_dir, annotation_path=path)
    if (folder / "masks").is_dir():
        return Part(split, images_dir, masks_dir=folder / "masks")
    path = find_annotation_file(folder, ignore=CLASSES_FILES)
    if path is None:
        raise FileNotFoundError(
            f"{folder}: expected masks/ or a COCO / VIA annotations JSON next to "
            f"{'images/' if images_dir != folder else 'the photos'}"
        )
    return Part(split, images_dir, annotation_path=path)


def find_parts(root: str | Path, annotations: str | Path | None = None) -> list[Part]:
    """Every folder of photos of the data set: one, or one per split folder."""
    root = Path(root)
    folders = split_folders(root)
    if not folders:
        return [_part(root, None, annotations)]
    if annotations is not None and Path(annotations).is_absolute():
        raise ValueError(
            f"{root} has split folders ({', '.join(f.name for f in folders.values())}): name the annotation file "
            f"inside each of them ({option_hint('annotations', 'NAME')}), not one absolute path"
        )
    return [_part(folder, split, annotations) for split, folder in folders.items()]


# -- class list ------------------------------------------------------------------------------------


def _merged_via(parts: list[Part]) -> dict:
    """The VIA records of every part as one project, to find the class attribute and names."""
    records = {f"{i}:{key}": record for i, p in enumerate(parts) for key, record in p.data["_via_img_metadata"].items()}
    declared = next((p.data["_via_attributes"] for p in parts if p.data.get("_via_attributes")), None)
    return {"_via_img_metadata": records, **({"_via_attributes": declared} if declared else {})}


def _coco_categories(parts: list[Part]) -> list[dict]:
    """Categories of every COCO file, sorted by id; one id must have one name everywhere."""
    by_id: dict[Any, dict] = {}
    for part in parts:
        for category in part.data["categories"]:
            seen = by_id.setdefault(category["id"], category)
            if str(seen["name"]) != str(category["name"]):
                raise ValueError(
                    f"{part.annotation_path}: category {category['id']} is {category['name']!r} here but "
                    f"{seen['name']!r} in another split's file"
                )
    return sorted(by_id.values(), key=lambda c: c["id"])


def _read_spec(root: Path, classes: str | Path | Sequence[str] | None) -> dict[str, Any] | None:
    if isinstance(classes, (str, Path)):
        return read_classes_file(Path(classes) if Path(classes).is_absolute() else root / classes)
    if classes is not None:
        return {
            "names": [str(c) for c in classes],
            "palette": None,
            "ignore_index": DEFAULT_IGNORE_INDEX,
            "ignore_color": None,
        }
    classes_path = find_classes_file(root)
    return read_classes_file(classes_path) if classes_path else None


def _resolve(
    root: Path,
    parts: list[Part],
    classes: str | Path | Sequence[str] | None,
    ignore_index: int | None | str,
    via_attribute: str | None,
) -> dict[str, Any]:
    """The class list and palette (``spec``) of all ``parts`` together, and each part's
    source (``kind``, ``data``, COCO category -> label); ``via_key``: VIA's class attribute."""
    spec = _read_spec(root, classes)
    if ignore_index != "default" and spec is not None:
        spec["ignore_index"] = ignore_index
    kinds = set()
    for part in parts:
        if part.annotation_path is not None:
            part.kind, part.data = load_annotation_json(part.annotation_path)
        kinds.add(part.kind)
    if len(kinds) > 1:
        raise ValueError(f"{root}: the split folders mix label sources ({', '.join(sorted(kinds))}); use one kind")
    kind = kinds.pop()
    source: dict[str, Any] = {"kind": kind, "via_key": None}
    if kind == "masks":
        if spec is None:
            raise ValueError(
                f"{root}: masks need a classes file ({' or '.join(CLASSES_FILES[:3])}: class name -> colour, "
                f"in index order), or the class names: {option_hint('classes', 'FILE')}, or --num-classes N "
                "(Python: classes=[...])"
            )
    else:
        where = parts[0].annotation_path if len(parts) == 1 else root
        if kind == "coco":
            categories = _coco_categories(parts)
            found = ["background"] + list(dict.fromkeys(str(c["name"]) for c in categories))
        else:
            merged = _merged_via(parts)
            source["via_key"] = via_class_key(merged, where, via_attribute)
            found = ["background"] + via_class_names(merged, source["via_key"])
        if spec is None:
            spec = {"names": found, "palette": None, "ignore_index": None, "ignore_color": None}
        if ignore_index != "default":
            spec["ignore_index"] = ignore_index
        if spec["names"][0] != "background":
            raise ValueError(f"{where}: with annotation files the first class must be 'background'")
        if kind == "coco":
            unknown = [str(c["name"]) for c in categories if str(c["name"]) not in spec["names"]]
            if unknown:
                raise ValueError(f"{where}: categories {unknown} are not in the class list {spec['names']}")
            for part in parts:
                part.category_to_label = {c["id"]: spec["names"].index(str(c["name"])) for c in part.data["categories"]}
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
    """The class list of a folder data set (reads only its classes / annotation files)."""
    spec = _resolve(Path(root), find_parts(root, annotations), classes, ignore_index, via_attribute)["spec"]
    palette = spec["palette"] or default_palette(len(spec["names"]))
    return DatasetInfo("folder", spec["names"], palette, spec["ignore_index"])


# -- splits ----------------------------------------------------------------------------------------


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
        raise ValueError(
            f"{root} has no test.txt; for a random test split pass {option_hint('test_fraction', '0.1', flag=False)}"
        )
    if split == "val" and n_val == 0:
        raise ValueError(
            f"{root} has no val.txt and val_fraction={val_fraction} leaves no validation images; "
            f"pass {option_hint('val_fraction', '0.2', flag=False)}"
        )
    picked = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}[split]
    return [stems[i] for i in sorted(picked)]


def _chosen_parts(root: Path, parts: list[Part], split: str) -> list[Part]:
    if parts[0].split is None:
        return parts
    if split == "all":
        return parts
    chosen = [p for p in parts if p.split == split]
    if split not in SPLITS:
        raise ValueError(f"folder data sets have splits {', '.join(SPLITS)}; got {split!r}")
    if not chosen:
        found = ", ".join(f"{p.split} ({p.images_dir.relative_to(root)})" for p in parts)
        names = " or ".join(f"{n}/" for n in SPLIT_FOLDERS[split])
        raise ValueError(f"{root} has no {split} split: no {names} folder of photos (splits found: {found})")
    return chosen


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


# -- colour and index masks ------------------------------------------------------------------------


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _unknown(packed: np.ndarray, limit: int = 10) -> str:
    """The distinct packed colours, as ``(r, g, b)``, for messages."""
    values = np.unique(packed).tolist()
    shown = ", ".join(f"({v >> 16}, {(v >> 8) & 255}, {v & 255})" for v in values[:limit])
    return shown + (" ..." if len(values) > limit else "")


class FolderDataset(SegmentationDataset):
    """A user's folder of images with index / colour masks or COCO / VIA polygons.

    Options: ``classes``, a classes file (default: found in ``root``) or a list of class
    names; ``annotations``, the COCO / VIA JSON (default: ``masks/`` if present, else the
    JSON file beside the photos; with split folders, a file name inside each);
    ``mask_type``, ``auto`` (see the module), ``index`` or ``color``; ``ignore_index``,
    overriding the classes file's (``"default"``: 255 for masks, none for annotation files);
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
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be 'auto', 'index' or 'color', not {mask_type!r}")
        root = Path(root)
        all_parts = find_parts(root, annotations)
        source = _resolve(root, all_parts, classes, ignore_index, via_attribute)
        parts = _chosen_parts(root, all_parts, split)
        spec = source["spec"]
        self.kind: str = source["kind"]
        self.mask_type = mask_type
        names = spec["names"]
        self.ignore_index: int | None = spec["ignore_index"]
        self.ignore_color = spec["ignore_color"]
        self._via_key = source["via_key"]
        self._class_to_label = {n: i for i, n in enumerate(names)}
        self._lut = make_lut(
            {i: i for i in range(len(names))}
            | ({self.ignore_index: self.ignore_index} if self.ignore_index is not None else {})
        )
        self._color_keys: np.ndarray | None = None
        if spec["palette"]:
            colors = list(spec["palette"]) + ([self.ignore_color] if self.ignore_color else [])
            labels = list(range(len(names))) + ([self.ignore_index] if self.ignore_color else [])
            if self.ignore_color and self.ignore_index is None:
                raise ValueError("ignore_color needs an ignore_index")
            packed = np.array([(r << 16) | (g << 8) | b for r, g, b in colors], dtype=np.int64)
            order = np.argsort(packed)
            self._color_keys, self._color_labels = packed[order], np.array(labels, dtype=np.uint8)[order]
            # Grey level -> label of the grey class colours, to read a grey mask as colours
            # with one table look-up.
            self._grey_lut = make_lut(
                {r: label for (r, g, b), label in zip(colors, labels, strict=True) if r == g == b}
            )

        problems: list[str] = []
        samples: list[tuple[Path, Part, Any]] = []  # (image, part, label record)
        for part in parts:
            image_by_stem, part_problems = images_by_stem(part.images_dir)
            records, index_problems = self._index(part, image_by_stem)
            problems += part_problems + index_problems
            stems = sorted(records)
            if part.split is None:
                stems = select_split(stems, root, split, val_fraction, test_fraction, seed)
            samples += [(image_by_stem[s], part, records[s]) for s in stems]
        if problems and missing == "error":
            raise FileNotFoundError(summarize_problems(problems))

        palette = spec["palette"] or default_palette(len(names))
        random_split = split != "all" and parts[0].split is None
        options = {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed} if random_split else {}
        super().__init__(
            DatasetInfo("folder", names, palette, self.ignore_index, options),
            [image for image, _, _ in samples],
            transform,
        )
        self._samples = [(part, record) for _, part, record in samples]
        self.stems = [image.stem for image, _, _ in samples]
        self.parts = parts
        self.root, self.split = root, split
        self.problems = problems

    @property
    def annotation_path(self) -> Path | None:
        """The annotation JSON (the first split folder's, with several)."""
        return self.parts[0].annotation_path

    # -- indexing: which photo has which labels

    def _index(self, part: Part, image_by_stem: dict[str, Path]) -> tuple[dict[str, Any], list[str]]:
        if part.kind == "masks":
            masks = {p.stem: p for p in sorted(part.masks_dir.iterdir()) if p.suffix.lower() == ".png"}
            problems = [f"image without mask: {image_by_stem[s]}" for s in sorted(image_by_stem.keys() - masks.keys())]
            problems += [f"mask without image: {masks[s]}" for s in sorted(masks.keys() - image_by_stem.keys())]
            return {s: masks[s] for s in masks.keys() & image_by_stem.keys()}, problems
        if part.kind == "coco":
            return self._index_coco(part, image_by_stem)
        return self._index_via(part, image_by_stem)

    @staticmethod
    def _index_coco(part: Part, image_by_stem: dict[str, Path]) -> tuple[dict[str, Any], list[str]]:
        data, problems, records = part.data, [], {}
        by_image: dict[Any, list[dict]] = {img["id"]: [] for img in data["images"]}
        json_name = part.annotation_path.name
        for ann in data["annotations"]:
            if ann["image_id"] not in by_image:
                problems.append(f"{json_name}: annotation {ann.get('id')} has unknown image_id {ann['image_id']}")
                continue
            by_image[ann["image_id"]].append(ann)
        for img in data["images"]:
            stem = Path(img["file_name"]).stem
            if stem not in image_by_stem:
                problems.append(f"{json_name} lists {img['file_name']} but there is no such image in {part.images_dir}")
                continue
            records[stem] = (img, by_image[img["id"]])
        problems += [
            f"image without annotation entry: {image_by_stem[s]}" for s in sorted(image_by_stem.keys() - records.keys())
        ]
        return records, problems

    @staticmethod
    def _index_via(part: Part, image_by_stem: dict[str, Path]) -> tuple[dict[str, Any], list[str]]:
        problems, records = [], {}
        for record in part.data["_via_img_metadata"].values():
            stem = Path(record["filename"]).stem
            if stem not in image_by_stem:
                problems.append(
                    f"{part.annotation_path.name} lists {record['filename']} but there is no such image "
                    f"in {part.images_dir}"
                )
                continue
            records[stem] = via_regions(record)
        problems += [
            f"image without annotation entry: {image_by_stem[s]}" for s in sorted(image_by_stem.keys() - records.keys())
        ]
        return records, problems

    # -- reading labels

    def mask_source(self, index: int) -> str:
        part, record = self._samples[index]
        if part.kind == "masks":
            return str(record)
        return f"{part.annotation_path} ({self.images[index].name})"

    def read_label(self, index: int, image_shape: tuple[int, int]) -> np.ndarray:
        part, record = self._samples[index]
        if part.kind == "coco":
            img, anns = record
            if (img.get("height"), img.get("width")) != tuple(image_shape):
                raise ValueError(
                    f"size mismatch: image {self.images[index]} is {image_shape[1]}x{image_shape[0]} but "
                    f"{part.annotation_path.name} says {img.get('width')}x{img.get('height')} (width x height)"
                )
            return rasterize_coco(anns, part.category_to_label, image_shape, self.mask_source(index))
        if part.kind == "via":
            return rasterize_via(record, self._via_key, self._class_to_label, image_shape, self.mask_source(index))
        return self.read_mask_png(record)

    def read_mask_png(self, path: Path) -> np.ndarray:
        """Labels of one mask PNG, decoded as ``mask_type`` says (see the module)."""
        if self.mask_type == "color":
            return self._labels_from_colours(read_mask_file(path, color=True), path)
        if self.mask_type == "index" or self._color_keys is None:
            return apply_lut(read_mask_file(path), self._lut, path)
        from PIL import Image

        with Image.open(path) as pil:
            mode = pil.mode
        if mode in ("RGB", "RGBA", "P", "PA"):
            # With a colour classes file a palette PNG is a colour mask: its indices are
            # only positions in its own palette, whose order may differ from file to file.
            return self._palette_or_colour_labels(path, palette=mode in ("P", "PA"))
        if mode in ("1", "L", "LA"):
            return self._grey_labels(path, bilevel=mode == "1")
        return apply_lut(read_mask_file(path), self._lut, path)  # 16/32-bit: class indices

    def _labels_from_colours(self, rgb: np.ndarray, path: Path, strict: bool = True) -> np.ndarray | None:
        """Labels of an ``H x W x 3`` colour mask; unknown colours raise (or give ``None``)."""
        if self._color_keys is None:
            raise ValueError(f"mask {path} is read as colours but the classes file gives no colours")
        packed = _pack(rgb)
        where = np.clip(np.searchsorted(self._color_keys, packed), 0, len(self._color_keys) - 1)
        known = self._color_keys[where] == packed
        if known.all():
            return self._color_labels[where]
        if not strict:
            return None
        raise ValueError(f"mask {path} has colours that are not in the classes file: {_unknown(packed[~known])}")

    def _palette_or_colour_labels(self, path: Path, palette: bool) -> np.ndarray:
        rgb = read_mask_file(path, color=True)
        labels = self._labels_from_colours(rgb, path, strict=not palette)
        if labels is not None:
            return labels
        try:
            apply_lut(read_mask_file(path), self._lut, path)
        except ValueError:
            self._labels_from_colours(rgb, path)  # raises, naming the colours
            raise
        packed = _pack(rgb)
        unknown = packed[~np.isin(packed, self._color_keys)]
        raise ValueError(
            f"mask {path} is a palette PNG with colours that are not in the classes file ({_unknown(unknown)}), "
            "although its palette indices are valid class indices: if the indices are the classes, read it as "
            f"an index mask ({option_hint('mask_type', 'index')}); else add those colours to the classes file "
            "(the colour of ignored pixels as its ignore_color)"
        )

    def _grey_labels(self, path: Path, bilevel: bool = False) -> np.ndarray:
        """A grey mask holds class indices, or grey class colours: use the one that fits,
        and refuse to choose when both fit and disagree."""
        stored = read_mask_file(path)
        grey = stored * np.uint8(255) if bilevel else stored  # a 1-bit PNG stores 0/1, shown black/white
        try:
            as_index = apply_lut(stored, self._lut, path)
        except ValueError as exc:
            as_index, index_error = None, exc
        grey_labels = self._grey_lut[grey]
        as_colour = grey_labels.astype(np.uint8) if grey_labels.min(initial=0) != INVALID else None
        if as_index is None:
            if as_colour is None:
                raise index_error
            return as_colour
        if as_colour is not None and not np.array_equal(as_index, as_colour):
            raise ValueError(
                f"mask {path} is ambiguous: its grey values {np.unique(grey)[:10].tolist()} are valid class indices "
                "and also grey colours of the classes file, and the two readings disagree; say which it is: "
                f"{option_hint('mask_type', 'index')} or {option_hint('mask_type', 'color')}"
            )
        return as_index
