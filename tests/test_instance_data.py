"""Instance data sets: COCO folders (synthetic and fruits-nuts) and CamVid connected components."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segzoo.data import get_instance_dataset
from segzoo.data.camvid_instances import CamVidInstances
from segzoo.data.coco import CocoInstanceDataset, annotation_mask, split_image_ids
from segzoo.data.instances import boxes_from_masks, collate_instances

SHAPES = ("disc", "square")


def _disc_polygon(cx: float, cy: float, r: float, n: int = 24) -> list[float]:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).ravel().round(2).tolist()


def make_coco_folder(root: Path, num_images: int = 6, size: tuple[int, int] = (96, 128), seed: int = 0) -> Path:
    """A COCO-format folder (``images/`` + ``annotations.json``) of red discs and blue
    squares on a noisy grey background; categories use ids 7 and 3 to test remapping."""
    rng = np.random.default_rng(seed)
    height, width = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    category_ids = {"disc": 7, "square": 3}
    for image_id in range(num_images):
        pixels = rng.integers(90, 140, size=(height, width, 3), dtype=np.uint8)
        for k, shape in enumerate(SHAPES):
            cx = width * (0.3 + 0.4 * k) + rng.uniform(-8, 8)
            cy = height * 0.5 + rng.uniform(-15, 15)
            r = rng.uniform(12, 18)
            if shape == "disc":
                polygon = _disc_polygon(cx, cy, r)
                colour = (220, 40, 40)
            else:
                polygon = [cx - r, cy - r, cx + r, cy - r, cx + r, cy + r, cx - r, cy + r]
                colour = (40, 60, 220)
            points = np.array(polygon, dtype=np.float32).reshape(-1, 2).round().astype(np.int32)
            cv2.fillPoly(pixels, [points], colour)
            xs, ys = polygon[0::2], polygon[1::2]
            bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category_ids[shape],
                "segmentation": [polygon], "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0,
            })  # fmt: skip
        Image.fromarray(pixels).save(root / "images" / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": height, "width": width})
    categories = [{"id": 7, "name": "disc"}, {"id": 3, "name": "square"}]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def test_coco_folder_targets_and_category_remapping(tmp_path: Path) -> None:
    root = make_coco_folder(tmp_path / "toy", num_images=5)
    ds = get_instance_dataset("coco", root, "train")
    # Categories sorted by id: 3 "square" -> label 1, 7 "disc" -> label 2.
    assert ds.class_names == ["square", "disc"] and ds.num_classes == 2 and len(ds.palette) == 2
    image, target = ds[0]
    assert image.shape == (3, 96, 128) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert target["boxes"].shape == (2, 4) and target["masks"].shape == (2, 96, 128)
    assert sorted(target["labels"].tolist()) == [1, 2]
    disc = target["masks"][target["labels"] == 2][0].numpy()
    # The disc is red in the image: the mask covers red pixels.
    red = image[0].numpy() > 0.8
    assert (red & disc.astype(bool)).sum() > 0.9 * disc.sum()
    # Boxes enclose their masks (to a pixel: polygon coordinates are not integers).
    mask_boxes = torch.from_numpy(boxes_from_masks(target["masks"].numpy()))
    assert torch.allclose(mask_boxes, target["boxes"], atol=1.5)


def test_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    ids = list(range(18))
    train, val = split_image_ids(ids, "train"), split_image_ids(ids, "val")
    assert val == [4, 9, 14] and set(train) | set(val) == set(ids) and not set(train) & set(val)
    assert split_image_ids(ids, "test") == val and split_image_ids(ids, "all") == ids
    with pytest.raises(ValueError, match="unknown split"):
        split_image_ids(ids, "dev")


def test_horizontal_flip_moves_boxes_with_masks(tmp_path: Path) -> None:
    root = make_coco_folder(tmp_path / "toy", num_images=1)
    ds = CocoInstanceDataset(root, "all", train=True)
    seen_flipped = False
    for seed in range(8):
        torch.manual_seed(seed)
        image, target = ds[0]
        boxes = torch.from_numpy(boxes_from_masks(target["masks"].numpy()))
        assert torch.allclose(boxes, target["boxes"], atol=1.5)
        seen_flipped |= bool(image[0, 48, :64].mean() < image[0, 48, 64:].mean())  # disc moved right
    assert seen_flipped


def test_collate_keeps_lists(tmp_path: Path) -> None:
    ds = get_instance_dataset("coco", make_coco_folder(tmp_path / "toy", 3), "all")
    images, targets = collate_instances([ds[0], ds[1]])
    assert isinstance(images, list) and len(images) == 2 and targets[1]["image_id"].item() == 1


def test_ground_truth_is_valid_coco(tmp_path: Path) -> None:
    ds = get_instance_dataset("coco", make_coco_folder(tmp_path / "toy", 5), "val")
    gt = ds.coco_ground_truth()
    assert [i["id"] for i in gt["images"]] == [4]
    assert {c["id"] for c in gt["categories"]} == {1, 2}
    assert {a["category_id"] for a in gt["annotations"]} == {1, 2}
    ids = [a["id"] for a in gt["annotations"]]
    assert len(set(ids)) == len(ids) and min(ids) >= 1


def test_bad_annotations_name_the_file(tmp_path: Path) -> None:
    root = make_coco_folder(tmp_path / "toy", 2)
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"][0]["category_id"] = 99
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotations\.json.*unknown category 99"):
        get_instance_dataset("coco", root, "all")

    root = make_coco_folder(tmp_path / "toy2", 2)
    (root / "images" / "1.png").unlink()
    ds = get_instance_dataset("coco", root, "all")
    with pytest.raises(FileNotFoundError, match=r"1\.png"):
        ds[1]
    (root / "images" / "1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"1\.png"):
        ds[1]
    (root / "annotations.json").write_text("{ truncated")
    with pytest.raises(ValueError, match=r"annotations\.json"):
        get_instance_dataset("coco", root, "all")
    with pytest.raises(ValueError, match="unknown instance data set"):
        get_instance_dataset("voc_instances", root, "all")


def test_short_polygons_cover_nothing(tmp_path: Path) -> None:
    # The decoder both tasks use: a 2-point "polygon" first would otherwise be read as a box.
    data = json.loads((make_coco_folder(tmp_path / "toy", 1) / "annotations.json").read_text())
    ann = data["annotations"][0]
    expected = annotation_mask(ann, 96, 128)
    assert expected.sum() > 0
    ann["segmentation"] = [[10.0, 10.0, 60.0, 60.0], *ann["segmentation"]]
    np.testing.assert_array_equal(annotation_mask(ann, 96, 128), expected)


def make_camvid_folder(root: Path) -> Path:
    """Two frames in CamVid's layout: frame 0 has two cars, a pedestrian and a tiny
    (below min_area) bicyclist fleck; frame 1 has no thing at all."""
    for part in ("train", "trainannot"):
        (root / part).mkdir(parents=True, exist_ok=True)
    label = np.full((60, 80), 3, dtype=np.uint8)  # road
    label[:10] = 11  # unlabelled
    label[20:30, 5:25] = 8  # car 1
    label[20:30, 40:60] = 8  # car 2
    label[35:55, 65:72] = 9  # pedestrian
    label[50:52, 10:12] = 10  # 4-pixel bicyclist: below min_area
    empty = np.full((60, 80), 0, dtype=np.uint8)
    for stem, lab in (("f0", label), ("f1", empty)):
        Image.fromarray(lab).save(root / "trainannot" / f"{stem}.png")
        Image.fromarray(np.full((60, 80, 3), 128, dtype=np.uint8)).save(root / "train" / f"{stem}.png")
    (root / "train.txt").write_text("f0\nf1\n")
    return root


def test_camvid_instances_are_connected_components(tmp_path: Path) -> None:
    ds = get_instance_dataset("camvid_instances", make_camvid_folder(tmp_path / "camvid"), "train", min_area=10)
    assert isinstance(ds, CamVidInstances) and ds.class_names == ["car", "pedestrian", "bicyclist"]
    assert ds.options() == {"min_area": 10}
    _, target = ds[0]
    assert target["labels"].tolist() == [1, 1, 2]
    assert target["boxes"].tolist() == [[5, 20, 25, 30], [40, 20, 60, 30], [65, 35, 72, 55]]
    assert target["masks"].sum((1, 2)).tolist() == [200, 200, 140]
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 60, 80)
    gt = ds.coco_ground_truth()
    assert len(gt["annotations"]) == 3 and [a["area"] for a in gt["annotations"]] == [200.0, 200.0, 140.0]
    # With min_area 1 the 4-pixel bicyclist counts too.
    _, all_of_them = get_instance_dataset("camvid_instances", tmp_path / "camvid", "train", min_area=1)[0]
    assert all_of_them["labels"].tolist() == [1, 1, 2, 3]


@pytest.mark.shared_data
def test_fruits_nuts(shared_datasets: Path) -> None:
    root = shared_datasets / "fruits-nuts"
    train = get_instance_dataset("fruits_nuts", root, "train")
    val = get_instance_dataset("fruits_nuts", root, "val")
    assert (len(train), len(val)) == (15, 3) and train.class_names == ["date", "fig", "hazelnut"]
    gt_train, gt_val = train.coco_ground_truth(), val.coco_ground_truth()
    assert len(gt_train["annotations"]) + len(gt_val["annotations"]) == 165
    image, target = val[0]
    assert image.shape == (3, 600, 800) and len(target["labels"]) == len(target["masks"]) > 0


@pytest.mark.shared_data
def test_camvid_instances_on_real_labels(shared_datasets: Path) -> None:
    ds = get_instance_dataset("camvid_instances", shared_datasets / "camvid", "val")
    assert len(ds) == 101
    labels, masks = ds.instances(0)
    label = ds.semantic_label(0)
    # Every instance pixel carries its class's CamVid id, and instances do not overlap.
    for k, m in zip(labels, masks.astype(bool)):
        assert (label[m] == {1: 8, 2: 9, 3: 10}[int(k)]).all() and m.sum() >= 50
    assert masks.sum(0).max() <= 1
