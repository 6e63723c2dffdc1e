"""Polygon annotation files, rasterised to label masks: COCO JSON (polygons and RLE)
and VGG Image Annotator (VIA 2) JSON exports or project files (polygon, polyline, rect,
circle and ellipse regions). Overlapping shapes are painted largest first, so small
objects stay visible on top of the large ones they sit on."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segzoo.data.base import option_hint

ANNOTATION_FILES = ("annotations.json", "coco.json", "via.json", "via_region_data.json")
VIA_CLASS_KEYS = ("class", "label", "category", "name", "type")


def split_annotation_file(root: Path, split: str) -> Path | None:
    """The COCO file of one split, when the data set has one per split:
    ``annotations/instances_<split>.json``, ``instances_<split>.json`` or ``<split>.json``."""
    for candidate in (root / "annotations" / f"instances_{split}.json", root / f"instances_{split}.json"):
        if candidate.is_file():
            return candidate
    return root / f"{split}.json" if (root / f"{split}.json").is_file() else None


def find_annotation_file(
    root: Path, ignore: tuple[str, ...] = (), choose: str = option_hint("annotations", "FILE")
) -> Path | None:
    """The annotation JSON in ``root`` (or ``root/annotations``): a conventional name, else
    the only JSON there. ``ignore`` names other JSON files; ``choose`` tells how to pick one
    when there are several (the data set option that names the file)."""
    for name in ANNOTATION_FILES:
        if (root / name).is_file():
            return root / name
    candidates = sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))
    candidates = [p for p in candidates if p.name not in ignore]
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise ValueError(f"{root} has several JSON files ({names}); choose one: {choose}")
    return candidates[0] if candidates else None


def load_annotation_json(path: Path) -> tuple[str, Any]:
    """``("coco", data)``, or ``("via", data)`` with VIA's image records under
    ``data["_via_img_metadata"]`` (as in a VIA 2 project file) for a JSON export too."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"annotation file {path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and {"images", "annotations", "categories"} <= data.keys():
        return "coco", data
    if isinstance(data, dict) and "_via_img_metadata" in data:
        return "via", data
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "regions" in v for v in data.values()):
        return "via", {"_via_img_metadata": data}
    if isinstance(data, dict) and {"project", "file", "metadata"} <= data.keys():
        raise ValueError(f"{path} is a VIA 3 project, which is not supported; use VIA 2's JSON export")
    raise ValueError(
        f"{path}: not a COCO file (images, annotations, categories) nor a VGG Image Annotator (VIA 2) JSON export"
    )


def via_regions(record: dict) -> list[dict]:
    regions = record.get("regions", [])
    return list(regions.values()) if isinstance(regions, dict) else list(regions)  # VIA 1 used a dict


def _via_value(attributes: dict, key: str | None) -> str | None:
    if key is None:
        return None
    value = attributes.get(key)
    if isinstance(value, dict):  # checkbox attribute: {"cat": true}
        chosen = [k for k, v in value.items() if v]
        value = chosen[0] if len(chosen) == 1 else None
    return None if value in (None, "") else str(value)


def via_class_key(data: dict, path: Path, key: str | None = None) -> str | None:
    """The region attribute that holds the class, or ``None`` when regions carry none."""
    declared = (data.get("_via_attributes") or {}).get("region") or {}
    keys = set(declared)
    for record in data["_via_img_metadata"].values():
        for region in via_regions(record):
            keys |= set(region.get("region_attributes") or {})
    if key is not None:
        if key not in keys:
            raise ValueError(f"{path}: no region attribute {key!r}; attributes found: {sorted(keys) or 'none'}")
        return key
    if len(keys) <= 1:
        return next(iter(keys), None)
    preferred = [k for k in VIA_CLASS_KEYS if k in keys]
    if preferred:
        return preferred[0]
    raise ValueError(
        f"{path}: regions have several attributes {sorted(keys)}; choose the class one: "
        f"{option_hint('via_attribute', 'NAME')}"
    )


def via_class_names(data: dict, key: str | None) -> list[str]:
    if key is None:
        return ["object"]
    declared = ((data.get("_via_attributes") or {}).get("region") or {}).get(key) or {}
    options = declared.get("options")
    if isinstance(options, dict) and options:
        return [str(o) for o in options]
    found = {
        _via_value(region.get("region_attributes") or {}, key)
        for record in data["_via_img_metadata"].values()
        for region in via_regions(record)
    }
    return sorted(v for v in found if v is not None)


def rasterize_via(
    regions: list[dict], key: str | None, class_to_label: dict[str, int], shape: tuple[int, int], where: str
) -> np.ndarray:
    """Paint VIA regions (polygon, polyline, rect, circle, ellipse) into a label mask."""
    shapes = []
    for region in regions:
        attrs = region.get("shape_attributes") or {}
        kind = attrs.get("name")
        name = _via_value(region.get("region_attributes") or {}, key) if key else "object"
        if name is None:
            raise ValueError(f"{where}: a {kind} region has no {key!r} attribute")
        if name not in class_to_label:
            raise ValueError(f"{where}: region class {name!r} is not in the class list {sorted(class_to_label)}")
        if kind in ("polygon", "polyline"):
            points = np.stack([attrs["all_points_x"], attrs["all_points_y"]], axis=1)
        elif kind == "rect":
            x, y, w, h = (attrs[k] for k in ("x", "y", "width", "height"))
            points = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
        elif kind in ("circle", "ellipse"):
            rx, ry = (attrs["r"], attrs["r"]) if kind == "circle" else (attrs["rx"], attrs["ry"])
            angle = float(np.degrees(attrs.get("theta", 0.0)))
            points = cv2.ellipse2Poly(
                (round(attrs["cx"]), round(attrs["cy"])), (round(rx), round(ry)), round(angle), 0, 360, 5
            )
        elif kind == "point":
            continue  # a point labels no area
        else:
            raise ValueError(f"{where}: unsupported VIA region shape {kind!r}")
        points = np.round(np.asarray(points, dtype=np.float64)).astype(np.int32)
        shapes.append((abs(cv2.contourArea(points)), class_to_label[name], points))
    mask = np.zeros(shape, dtype=np.uint8)
    for _, label, points in sorted(shapes, key=lambda s: -s[0]):
        cv2.fillPoly(mask, [points], int(label))
    return mask


def rasterize_coco(
    annotations: list[dict], category_to_label: dict[int, int], shape: tuple[int, int], where: str
) -> np.ndarray:
    """Paint COCO polygons / RLE into a label mask, largest object first."""
    mask = np.zeros(shape, dtype=np.uint8)
    for ann in sorted(annotations, key=lambda a: -float(a.get("area", 0))):
        if ann["category_id"] not in category_to_label:
            raise ValueError(f"{where}: annotation {ann.get('id')} has unknown category_id {ann['category_id']}")
        if ann.get("segmentation"):
            pixels = coco_segmentation_mask(ann["segmentation"], *shape).astype(bool)
            mask[pixels] = category_to_label[ann["category_id"]]
    return mask


def coco_segmentation_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, RLE or uncompressed RLE) as a uint8 ``H x W`` mask.

    Polygons of fewer than 3 points cover no area and are skipped: pycocotools would read
    a first polygon of 2 points (4 numbers) as a box.
    """
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), dtype=np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    with warnings.catch_warnings():  # pycocotools 2.0 trips a NumPy 2 deprecation warning
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(np.uint8)
