"""Built-in data sets: layouts, split sizes, label mapping and clear errors for bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from segzoo.data import (
    DATASETS,
    TASKS,
    dataset_names,
    detect_dataset,
    get_dataset,
    get_dataset_info,
    get_instance_dataset,
)

RNG = np.random.default_rng(0)


def write_image(path, h=24, w=32, fmt=None) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(image).save(path, format=fmt)
    return image


def write_mask(path, mask: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(mask.astype(np.uint8), mode="L")
    if palette:
        pil = pil.convert("P")
        pil.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    pil.save(path)


def labels(h=24, w=32, values=range(12)) -> np.ndarray:
    return RNG.choice(np.array(list(values), dtype=np.uint8), (h, w))


# -- contracts -------------------------------------------------------------------------------------


def test_dataset_info_contracts():
    camvid = get_dataset_info("camvid")
    assert camvid.num_classes == 11 and camvid.ignore_index == 11 and camvid.class_names[0] == "sky"
    assert len(camvid.palette) == 11 and camvid.palette[3] == (128, 64, 128)
    voc = get_dataset_info("voc2012")
    assert voc.num_classes == 21 and voc.ignore_index == 255 and voc.class_names[0] == "background"
    assert get_dataset_info("oxford_pet").class_names == ["background", "pet", "border"]
    assert get_dataset_info("oxford_pet").ignore_index is None
    assert get_dataset_info("oxford_pet", mode="binary").class_names == ["background", "pet"]
    assert get_dataset_info("oxford_pet", mode="binary").ignore_index == 255
    assert get_dataset_info("oxford_pet", mode="species").class_names == ["background", "cat", "dog"]
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*camvid"):
        get_dataset_info("nope")
    with pytest.raises(ValueError, match="mode"):
        get_dataset_info("oxford_pet", mode="tri")


def test_one_registry_lists_both_tasks_and_refuses_the_other_tasks_names(tmp_path):
    assert dataset_names("semantic") == ["camvid", "oxford_pet", "voc2012", "folder"]
    assert dataset_names("instance") == ["coco", "fruits_nuts", "camvid_instances"]
    assert dataset_names() == dataset_names("semantic") + dataset_names("instance")
    assert all(DATASETS[n].task == task for task in TASKS for n in dataset_names(task))
    with pytest.raises(ValueError, match="'coco' is a data set for instance segmentation.*camvid"):
        get_dataset("coco", tmp_path)
    with pytest.raises(ValueError, match="'camvid' is a data set for semantic segmentation.*camvid_instances"):
        get_instance_dataset("camvid", tmp_path, "train")
    with pytest.raises(ValueError, match="camvid_instances has no option annotation_file; its options are: min_area"):
        get_instance_dataset("camvid_instances", tmp_path, "train", annotation_file="x.json")


# -- CamVid ----------------------------------------------------------------------------------------


@pytest.fixture
def camvid_root(tmp_path):
    root = tmp_path / "camvid"
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        for i in range(n):
            # frames may be .png (upstream) or .jpg (re-encoded copies)
            write_image(root / split / f"f{i}.{'png' if i % 2 else 'jpg'}")
            write_mask(root / f"{split}annot" / f"f{i}.png", labels())
    return root


def test_camvid_synthetic_layout(camvid_root):
    assert detect_dataset(camvid_root) == "camvid"
    assert [len(get_dataset("camvid", camvid_root, s)) for s in ("train", "val", "test", "trainval")] == [3, 2, 2, 5]
    ds = get_dataset("camvid", camvid_root, "train")
    image, mask = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 24, 32)
    assert mask.dtype == torch.int64 and mask.shape == (24, 32)
    assert abs(float(image.mean())) < 1.5  # normalised, not 0..255
    raw_image, raw_mask = ds.load_raw(1)
    assert raw_image.dtype == np.uint8 and raw_image.shape == (24, 32, 3)
    np.testing.assert_array_equal(raw_mask, np.asarray(Image.open(camvid_root / "trainannot" / "f1.png")))
    np.testing.assert_array_equal(raw_image, np.asarray(Image.open(camvid_root / "train" / "f1.png")))


def test_camvid_label_outside_class_list_names_file_and_values(camvid_root):
    bad = labels()
    bad[0, :3] = [12, 40, 12]
    write_mask(camvid_root / "trainannot" / "f2.png", bad)
    ds = get_dataset("camvid", camvid_root, "train")
    ds[0]  # other samples still load
    with pytest.raises(ValueError, match=r"f2\.png.*outside the class list: 12, 40"):
        ds[2]


def test_camvid_image_without_mask(camvid_root):
    write_image(camvid_root / "train" / "orphan.jpg")
    with pytest.raises(FileNotFoundError, match=r"image without mask: .*orphan\.jpg"):
        get_dataset("camvid", camvid_root, "train")
    ds = get_dataset("camvid", camvid_root, "train", missing="skip")
    assert len(ds) == 3 and any("orphan.jpg" in p for p in ds.problems)


def test_corrupt_and_truncated_images_name_the_file(camvid_root):
    (camvid_root / "train" / "f0.jpg").write_bytes(b"definitely not a jpeg")
    data = (camvid_root / "train" / "f1.png").read_bytes()
    (camvid_root / "train" / "f1.png").write_bytes(data[: len(data) // 2])
    ds = get_dataset("camvid", camvid_root, "train")
    with pytest.raises(ValueError, match=r"cannot read image .*f0\.jpg"):
        ds[0]
    with pytest.raises(ValueError, match=r"cannot read image .*f1\.png"):
        ds[1]


def test_truncated_jpeg_is_an_error_not_grey_pixels(tmp_path):
    from segzoo.inference import read_image

    write_image(tmp_path / "a.jpg", 64, 64)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "b.jpg").write_bytes(data[: len(data) * 2 // 3])
    assert read_image(tmp_path / "a.jpg", None, upright=False).shape == (64, 64, 3)  # as data sets read
    with pytest.raises(ValueError, match=r"b\.jpg"):
        read_image(tmp_path / "b.jpg", None, upright=False)


def test_size_mismatch_names_both_files(camvid_root):
    write_mask(camvid_root / "trainannot" / "f0.png", labels(20, 30))
    ds = get_dataset("camvid", camvid_root, "train")
    with pytest.raises(ValueError, match=r"size mismatch: image .*f0\.jpg is 32x24 but its mask .*f0\.png is 30x20"):
        ds[0]


def test_unknown_split_and_missing_root(camvid_root, tmp_path):
    with pytest.raises(ValueError, match="splits train, val, test, trainval"):
        get_dataset("camvid", camvid_root, "training")
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        get_dataset("camvid", tmp_path / "nowhere", "train")


# -- Oxford pet ------------------------------------------------------------------------------------


@pytest.fixture
def pet_root(tmp_path):
    root = tmp_path / "pets"
    rows = [("Abyssinian_1", 1, 1), ("Abyssinian_2", 1, 1), ("american_bulldog_1", 2, 2), ("american_bulldog_2", 2, 2)]
    trimap = np.full((24, 32), 2, np.uint8)  # background
    trimap[6:18, 8:24] = 1  # pet
    trimap[6, 8:24] = 3  # border
    for name, _, _ in rows + [("Bengal_9", 6, 1)]:
        write_image(root / "images" / f"{name}.jpg")
        write_mask(root / "annotations" / "trimaps" / f"{name}.png", trimap)
    (root / "images" / "Abyssinian_100.mat").write_bytes(b"MATLAB 5.0 MAT-file")  # like the official archive
    lines = "\n".join(f"{n} {c} {s} 1" for n, c, s in rows)
    (root / "annotations" / "trainval.txt").write_text("# comment line\n" + lines + "\n")
    (root / "annotations" / "test.txt").write_text("Bengal_9 6 1 3\n")
    return root, trimap


def test_oxford_pet_modes(pet_root):
    root, trimap = pet_root
    assert detect_dataset(root) == "oxford_pet"
    assert len(get_dataset("oxford_pet", root, "trainval")) == 4
    assert len(get_dataset("oxford_pet", root, "test")) == 1
    expected = {
        "trimap": {2: 0, 1: 1, 3: 2},
        "binary": {2: 0, 1: 1, 3: 255},
    }
    for mode, mapping in expected.items():
        ds = get_dataset("oxford_pet", root, "trainval", mode=mode)
        _, mask = ds.load_raw(0)
        np.testing.assert_array_equal(mask, np.vectorize(mapping.get)(trimap))
    ds = get_dataset("oxford_pet", root, "trainval", mode="species")
    cat = ds.load_raw(ds.images.index(root / "images" / "Abyssinian_1.jpg"))[1]
    dog = ds.load_raw(ds.images.index(root / "images" / "american_bulldog_1.jpg"))[1]
    np.testing.assert_array_equal(cat, np.vectorize({2: 0, 1: 1, 3: 255}.get)(trimap))
    np.testing.assert_array_equal(dog, np.vectorize({2: 0, 1: 2, 3: 255}.get)(trimap))


def test_oxford_pet_seeded_train_val_split(pet_root):
    root, _ = pet_root
    train = get_dataset("oxford_pet", root, "train", val_fraction=0.25)
    val = get_dataset("oxford_pet", root, "val", val_fraction=0.25)
    assert len(train) == 3 and len(val) == 1 and not set(train.images) & set(val.images)
    assert get_dataset("oxford_pet", root, "val", val_fraction=0.25).images == val.images


def test_oxford_pet_bad_trimap_value(pet_root):
    root, trimap = pet_root
    bad = trimap.copy()
    bad[0, 0] = 7
    write_mask(root / "annotations" / "trimaps" / "Abyssinian_2.png", bad)
    ds = get_dataset("oxford_pet", root, "trainval")
    with pytest.raises(ValueError, match=r"Abyssinian_2\.png.*values outside the class list: 7"):
        ds.load_raw(1)


# -- VOC -------------------------------------------------------------------------------------------


def test_voc_palette_masks(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    mask = labels(values=[0, 1, 15, 20, 255])
    for name in ("2007_000032", "2007_000033"):
        write_image(voc / "JPEGImages" / f"{name}.jpg")
        write_mask(voc / "SegmentationClass" / f"{name}.png", mask, palette=True)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\n")
    assert detect_dataset(tmp_path) == "voc2012"
    ds = get_dataset("voc2012", tmp_path, "train")  # the folder holding VOCdevkit/ works too
    assert len(ds) == 1 and len(get_dataset("voc2012", voc, "val")) == 1
    np.testing.assert_array_equal(ds.load_raw(0)[1], mask)  # palette indices, not colours
    bad = mask.copy()
    bad[3, 3] = 21
    write_mask(voc / "SegmentationClass" / "2007_000032.png", bad, palette=True)
    with pytest.raises(ValueError, match=r"2007_000032\.png.*: 21 "):
        ds.load_raw(0)


# -- folder: index / colour PNGs -------------------------------------------------------------------


def test_folder_index_masks_with_classes_yaml(tmp_path):
    for i in range(5):
        write_image(tmp_path / "images" / f"img{i}.jpg")
        write_mask(tmp_path / "masks" / f"img{i}.png", labels(values=[0, 1, 2, 255]))
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    (tmp_path / "classes.yaml").write_text("background: [0, 0, 0]\nroad: [128, 64, 128]\ncar: '#00008e'\n")
    info = get_dataset_info("folder", root=tmp_path)
    assert info.class_names == ["background", "road", "car"] and info.ignore_index == 255
    assert info.palette == [(0, 0, 0), (128, 64, 128), (0, 0, 142)]
    ds = get_dataset("folder", tmp_path, "all")
    assert len(ds) == 5
    np.testing.assert_array_equal(ds.load_raw(0)[1], np.asarray(Image.open(tmp_path / "masks" / "img0.png")))
    write_mask(tmp_path / "masks" / "img3.png", labels(values=[0, 3]))
    with pytest.raises(ValueError, match=r"img3\.png.*outside the class list: 3 \(valid stored values: 0\.\.2, 255\)"):
        ds.load_raw(3)


def test_folder_index_masks_need_class_names(tmp_path):
    write_image(tmp_path / "images" / "a.png")
    write_mask(tmp_path / "masks" / "a.png", labels(values=[0, 1]))
    with pytest.raises(ValueError, match="classes file"):
        get_dataset("folder", tmp_path)
    ds = get_dataset("folder", tmp_path, "all", classes=["bg", "fg"])
    assert ds.info.class_names == ["bg", "fg"] and ds.load_raw(0)[1].max() <= 1


def test_folder_colour_masks(tmp_path):
    palette = {"background": [0, 0, 0], "sky": [70, 130, 180], "tree": [107, 142, 35]}
    (tmp_path / "classes.json").write_text(json.dumps({"classes": palette, "ignore_color": [255, 255, 255]}))
    index = labels(values=[0, 1, 2, 255])
    colours = np.array(list(palette.values()) + [[255, 255, 255]] * 253, np.uint8)
    colours[255] = [255, 255, 255]
    write_image(tmp_path / "images" / "a.jpg")
    (tmp_path / "masks").mkdir()
    Image.fromarray(colours[index]).save(tmp_path / "masks" / "a.png")
    ds = get_dataset("folder", tmp_path, "all")
    assert ds.info.class_names == ["background", "sky", "tree"] and ds.info.ignore_index == 255
    np.testing.assert_array_equal(ds.load_raw(0)[1], index)
    rgb = colours[index].copy()
    rgb[5, 5] = [1, 2, 3]
    Image.fromarray(rgb).save(tmp_path / "masks" / "a.png")
    with pytest.raises(ValueError, match=r"a\.png has colours that are not in the classes file: \(1, 2, 3\)"):
        ds.load_raw(0)


def test_folder_splits_from_lists_and_seeded(tmp_path):
    for i in range(10):
        write_image(tmp_path / "images" / f"im{i}.png", 8, 8)
        write_mask(tmp_path / "masks" / f"im{i}.png", labels(8, 8, [0, 1]))
    options = {"classes": ["a", "b"]}
    train = get_dataset("folder", tmp_path, "train", **options)
    val = get_dataset("folder", tmp_path, "val", **options)
    assert len(train) == 8 and len(val) == 2 and not set(train.images) & set(val.images)
    assert get_dataset("folder", tmp_path, "val", **options).images == val.images  # seeded
    other_seeds = {tuple(get_dataset("folder", tmp_path, "val", seed=s, **options).images) for s in range(1, 6)}
    assert len(other_seeds | {tuple(val.images)}) > 1  # the seed matters
    (tmp_path / "val.txt").write_text("im3\nim7.png\n")
    val = get_dataset("folder", tmp_path, "val", **options)
    assert [p.stem for p in val.images] == ["im3", "im7"]
    with pytest.raises(ValueError, match="test_fraction"):
        get_dataset("folder", tmp_path, "test", **options)


# -- folder: COCO and VIA polygons -----------------------------------------------------------------


def square(x0, y0, x1, y1) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def test_folder_coco_polygons(tmp_path):
    write_image(tmp_path / "images" / "a.jpg", 40, 60)
    write_image(tmp_path / "images" / "b.jpg", 40, 60)
    coco = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": 40, "width": 60},
            {"id": 2, "file_name": "b.jpg", "height": 40, "width": 60},
        ],
        "categories": [{"id": 7, "name": "fig"}, {"id": 3, "name": "date"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 7,
                "segmentation": [square(10, 10, 30, 30)],
                "area": 400,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 3,
                "segmentation": [square(20, 20, 25, 25)],
                "area": 25,
                "iscrowd": 0,
            },
        ],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    ds = get_dataset("folder", tmp_path, "all")
    assert ds.info.class_names == ["background", "date", "fig"]  # categories sorted by id
    mask = ds.load_raw(0)[1]
    assert set(np.unique(mask)) == {0, 1, 2}
    assert abs(int((mask == 2).sum()) + int((mask == 1).sum()) - 400) <= 45  # the 20x20 square, boundary pixels aside
    assert mask[22, 22] == 1 and mask[12, 12] == 2 and mask[5, 5] == 0  # small date painted over the fig
    assert ds.load_raw(1)[1].max() == 0  # an image without annotations is all background
    coco["images"][0]["height"] = 41
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=r"size mismatch: image .*a\.jpg is 60x40 but annotations\.json says 60x41"):
        get_dataset("folder", tmp_path, "all").load_raw(0)


def via_region(shape: dict, **attributes) -> dict:
    return {"shape_attributes": shape, "region_attributes": attributes}


def test_folder_via_polygons(tmp_path):
    write_image(tmp_path / "images" / "cat.jpg", 40, 60)
    regions = [
        via_region({"name": "polygon", "all_points_x": [5, 25, 25, 5], "all_points_y": [5, 5, 25, 25]}, label="cat"),
        via_region({"name": "rect", "x": 40, "y": 10, "width": 10, "height": 20}, label="dog"),
        via_region({"name": "circle", "cx": 15, "cy": 15, "r": 3}, label="dog"),
    ]
    export = {"cat.jpg1234": {"filename": "cat.jpg", "size": 1234, "regions": regions, "file_attributes": {}}}
    (tmp_path / "via_region_data.json").write_text(json.dumps(export))
    ds = get_dataset("folder", tmp_path, "all")
    assert ds.info.class_names == ["background", "cat", "dog"]
    mask = ds.load_raw(0)[1]
    assert mask[10, 10] == 1 and mask[20, 45] == 2 and mask[15, 15] == 2 and mask[35, 55] == 0

    # A VIA project file: the declared options fix the class order; a typo is an error.
    project = {
        "_via_settings": {},
        "_via_img_metadata": {"cat.jpg1234": {"filename": "cat.jpg", "size": 1234, "regions": regions[:1]}},
        "_via_attributes": {"region": {"label": {"type": "dropdown", "options": {"dog": "", "cat": ""}}}},
    }
    (tmp_path / "via_region_data.json").write_text(json.dumps(project))
    ds = get_dataset("folder", tmp_path, "all")
    assert ds.info.class_names == ["background", "dog", "cat"] and ds.load_raw(0)[1][10, 10] == 2
    project["_via_img_metadata"]["cat.jpg1234"]["regions"] = [dict(regions[0], region_attributes={"label": "catt"})]
    (tmp_path / "via_region_data.json").write_text(json.dumps(project))
    with pytest.raises(ValueError, match=r"via_region_data\.json \(cat\.jpg\): region class 'catt' is not in"):
        get_dataset("folder", tmp_path, "all").load_raw(0)


def test_folder_via_without_attributes_is_one_class(tmp_path):
    write_image(tmp_path / "images" / "b.png", 30, 30)
    region = via_region({"name": "polygon", "all_points_x": [2, 20, 20], "all_points_y": [2, 2, 20]})
    (tmp_path / "balloons.json").write_text(json.dumps({"b.png9": {"filename": "b.png", "regions": {"0": region}}}))
    ds = get_dataset("folder", tmp_path, "all")
    assert ds.info.class_names == ["background", "object"] and ds.load_raw(0)[1][5, 15] == 1


# -- real data (../shared/datasets) ----------------------------------------------------------------


@pytest.mark.shared_data
def test_camvid_published_split_sizes(shared_datasets):
    root = shared_datasets / "camvid"
    sizes = {s: len(get_dataset("camvid", root, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 367, "val": 101, "test": 233}
    image, mask = get_dataset("camvid", root, "test")[0]
    assert image.shape == (3, 360, 480) and mask.shape == (360, 480)
    assert int(mask.max()) <= 11 and int(mask.min()) >= 0


@pytest.mark.shared_data
def test_oxford_pet_sample_official_layout(shared_datasets):
    root = shared_datasets / "oxford-iiit-pet-sample"
    assert len(get_dataset("oxford_pet", root, "trainval")) == 300  # the stray .mat files are skipped
    ds = get_dataset("oxford_pet", root, "test", mode="species")
    assert len(ds) == 298
    cat = next(i for i, p in enumerate(ds.images) if p.name.startswith("Abyssinian"))
    dog = next(i for i, p in enumerate(ds.images) if p.name.startswith("american_bulldog"))
    assert set(np.unique(ds.load_raw(cat)[1])) == {0, 1, 255}
    assert set(np.unique(ds.load_raw(dog)[1])) == {0, 2, 255}


@pytest.mark.shared_data
def test_fruits_nuts_coco_folder(shared_datasets):
    ds = get_dataset("folder", shared_datasets / "fruits-nuts", "all")
    assert len(ds) == 18 and ds.info.class_names == ["background", "date", "fig", "hazelnut"]
    image, mask = ds[0]
    assert image.shape == (3, 600, 800) and set(np.unique(mask.numpy())) <= {0, 1, 2, 3}
    assert (mask > 0).float().mean() > 0.05  # the fruit polygons were painted
