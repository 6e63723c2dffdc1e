"""Data as people download it (issue 14): palette masks with a colour classes file,
Supervisely classes files, photos beside their VIA / COCO JSON in train/ and val/ folders,
`segzoo data check` decoding as training does, one definition of median-frequency weights.

Every fixture is made here, small, in a temporary folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo.cli
from segzoo.data import detect_dataset, get_dataset, get_dataset_info
from segzoo.data.check import check_dataset

CLASSES = {"background": (0, 0, 0), "road": (128, 64, 128), "car": (0, 0, 142)}
COLOURS = np.array(list(CLASSES.values()), dtype=np.uint8)


def segzoo_main(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setattr(segzoo.cli, "COMMAND_MODULES", ["segzoo.data.cli"])
    return segzoo.cli.main(list(argv))


def write_photo(path: Path, h: int = 24, w: int = 32, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def label_map(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    labels = np.zeros((h, w), np.uint8)
    rng = np.random.default_rng(seed)
    labels[rng.integers(0, h // 2) :, : w // 2] = 1  # road bottom left
    labels[2:9, rng.integers(w // 2, w - 8) :][:, :6] = 2  # a car
    return labels


def save_palette_mask(path: Path, labels: np.ndarray, order: list[int]) -> None:
    """``labels`` as a palette PNG whose palette lists the class colours in ``order``
    (palette entry j is class order[j]), padded with colours no class uses."""
    inverse = np.argsort(order).astype(np.uint8)  # class -> palette entry
    image = Image.fromarray(inverse[labels], mode="L").convert("P")
    colours = [c for k in order for c in COLOURS[k].tolist()] + [200, 200, 7] * 5
    image.putpalette(colours)
    image.save(path)


def make_twins(tmp_path: Path, n: int = 3) -> tuple[Path, Path, list[np.ndarray]]:
    """Two folders with the same photos and labels: colour (RGB) masks, and palette masks
    whose palette order differs from file to file."""
    rgb_root, palette_root = tmp_path / "rgb", tmp_path / "palette"
    orders = [[0, 1, 2], [2, 0, 1], [1, 2, 0]]
    truths = []
    for root in (rgb_root, palette_root):
        (root / "masks").mkdir(parents=True)
        (root / "classes.yaml").write_text("".join(f"{k}: {list(v)}\n" for k, v in CLASSES.items()))
    for i in range(n):
        labels = label_map(seed=i)
        truths.append(labels)
        for root in (rgb_root, palette_root):
            write_photo(root / "images" / f"im{i}.jpg", seed=i)
        Image.fromarray(COLOURS[labels]).save(rgb_root / "masks" / f"im{i}.png")
        save_palette_mask(palette_root / "masks" / f"im{i}.png", labels, orders[i % len(orders)])
    return rgb_root, palette_root, truths


# -- palette masks ---------------------------------------------------------------------------------


def test_palette_masks_decode_to_the_labels_of_their_rgb_twins(tmp_path: Path) -> None:
    rgb_root, palette_root, truths = make_twins(tmp_path)
    # The fixture is what the issue describes: the stored indices are not the classes.
    assert not np.array_equal(np.asarray(Image.open(palette_root / "masks" / "im1.png")), truths[1])
    rgb, palette = get_dataset("folder", rgb_root, "all"), get_dataset("folder", palette_root, "all")
    for i, truth in enumerate(truths):
        np.testing.assert_array_equal(rgb.load_raw(i)[1], truth)
        np.testing.assert_array_equal(palette.load_raw(i)[1], truth)  # what training reads
        np.testing.assert_array_equal(palette.load_mask(i), truth)  # what the statistics read
        np.testing.assert_array_equal(palette[i][1].numpy(), truth)
    # Read as indices on request, they are different labels: the option reaches the decoder.
    as_index = get_dataset("folder", palette_root, "all", mask_type="index")
    assert not np.array_equal(as_index.load_raw(1)[1], truths[1])


def test_data_check_of_palette_masks_matches_the_rgb_twin_and_takes_the_mask_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    rgb_root, palette_root, _ = make_twins(tmp_path)
    reports = {}
    for name, root in (("rgb", rgb_root), ("palette", palette_root)):
        assert segzoo_main(monkeypatch, "data", "check", str(root), "-q", "--workers", "0", "--json",
                           str(tmp_path / f"{name}.json")) == 0  # fmt: skip
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())[0]
    assert "no problems found" in capsys.readouterr().out
    assert reports["palette"]["pixels"] == reports["rgb"]["pixels"]
    assert reports["palette"]["median_frequency_weights"] == reports["rgb"]["median_frequency_weights"]
    # The same flag training takes changes what the check reads (here: the wrong labels).
    assert segzoo_main(monkeypatch, "data", "check", str(palette_root), "-q", "--workers", "0",
                       "--mask-type", "index", "--json", str(tmp_path / "index.json")) == 0  # fmt: skip
    assert json.loads((tmp_path / "index.json").read_text())[0]["pixels"] != reports["rgb"]["pixels"]
    assert segzoo_main(monkeypatch, "data", "check", str(palette_root), "-q", "--workers", "0",
                       "--dataset-option", "mask_type=index", "--json", str(tmp_path / "option.json")) == 0  # fmt: skip
    assert json.loads((tmp_path / "option.json").read_text())[0]["pixels"] != reports["rgb"]["pixels"]


def test_evaluate_scores_palette_masks_like_their_rgb_twins(tmp_path: Path) -> None:
    from segzoo.checkpoint import save_checkpoint
    from segzoo.evaluate import evaluate_checkpoint
    from segzoo.registry import create_model

    rgb_root, palette_root, _ = make_twins(tmp_path)
    torch.manual_seed(0)
    info = get_dataset_info("folder", root=rgb_root)
    config = {
        "model": "unet", "model_kwargs": {"base_channels": 4}, "task": "semantic", **info.to_dict(),
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "short_side": None,
    }  # fmt: skip
    save_checkpoint(tmp_path / "ckpt", create_model("unet", num_classes=3, base_channels=4), config)
    scores = {
        name: evaluate_checkpoint(
            tmp_path / "ckpt", "all", data_root=root, device="cpu", progress=False, out=tmp_path / f"{name}.json"
        )  # fmt: skip
        for name, root in (("rgb", rgb_root), ("palette", palette_root))
    }
    assert scores["palette"]["confusion_matrix"] == scores["rgb"]["confusion_matrix"]
    truth_pixels = np.array(scores["rgb"]["confusion_matrix"]).sum(axis=1)
    expected = np.bincount(np.concatenate([label_map(seed=i).ravel() for i in range(3)]), minlength=3)
    np.testing.assert_array_equal(truth_pixels, expected)  # the true labels, not palette indices


def test_ambiguous_grey_masks_are_an_error_not_a_guess(tmp_path: Path) -> None:
    # A binary mask saved 0/255 with a black/white classes file: 255 is the ignore index
    # *and* the colour of "object". Reading it either way silently would be a guess.
    (tmp_path / "classes.yaml").write_text("background: [0, 0, 0]\nobject: [255, 255, 255]\n")
    write_photo(tmp_path / "images" / "a.png")
    mask = np.zeros((24, 32), np.uint8)
    mask[5:15, 5:15] = 255
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    with pytest.raises(ValueError, match=r"a\.png is ambiguous.*--mask-type index.*--mask-type color"):
        get_dataset("folder", tmp_path, "all").load_raw(0)
    assert (get_dataset("folder", tmp_path, "all", mask_type="color").load_raw(0)[1] == (mask > 0)).all()
    assert (get_dataset("folder", tmp_path, "all", mask_type="index").load_raw(0)[1] == mask).all()  # 255 ignored
    # Values that are only valid one way are read that way.
    Image.fromarray((mask > 0).astype(np.uint8)).save(tmp_path / "masks" / "a.png")
    assert (get_dataset("folder", tmp_path, "all").load_raw(0)[1] == (mask > 0)).all()


def test_a_palette_mask_in_other_colours_says_how_to_read_its_indices(tmp_path: Path) -> None:
    (tmp_path / "classes.yaml").write_text("".join(f"{k}: {list(v)}\n" for k, v in CLASSES.items()))
    write_photo(tmp_path / "images" / "a.png")
    labels = label_map()
    image = Image.fromarray(labels, mode="L").convert("P")
    image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])  # not the class colours
    (tmp_path / "masks").mkdir()
    image.save(tmp_path / "masks" / "a.png")
    with pytest.raises(ValueError, match=r"a\.png is a palette PNG.*--mask-type index"):
        get_dataset("folder", tmp_path, "all").load_raw(0)
    np.testing.assert_array_equal(get_dataset("folder", tmp_path, "all", mask_type="index").load_raw(0)[1], labels)


def test_palette_mask_with_an_unlisted_ignore_colour_names_it(tmp_path: Path) -> None:
    # VOC-style: palette index = class, palette colour = class colour, and 255 (ignored) in
    # a colour the classes file does not list. Said, not silently read as indices.
    (tmp_path / "classes.yaml").write_text("".join(f"{k}: {list(v)}\n" for k, v in CLASSES.items()))
    write_photo(tmp_path / "images" / "a.png")
    labels = label_map()
    labels[0, :4] = 255
    image = Image.fromarray(labels, mode="L").convert("P")
    image.putpalette(COLOURS.ravel().tolist() + [0, 0, 0] * 252 + [224, 224, 192])
    (tmp_path / "masks").mkdir()
    image.save(tmp_path / "masks" / "a.png")
    with pytest.raises(ValueError, match=r"\(224, 224, 192\).*--mask-type index.*ignore_color"):
        get_dataset("folder", tmp_path, "all").load_raw(0)
    (tmp_path / "classes.yaml").write_text(
        "classes:\n" + "".join(f"  {k}: {list(v)}\n" for k, v in CLASSES.items()) + "ignore_color: [224, 224, 192]\n"
    )
    np.testing.assert_array_equal(get_dataset("folder", tmp_path, "all").load_raw(0)[1], labels)


# -- classes files ---------------------------------------------------------------------------------

SUPERVISELY_META = {
    "classes": [
        {"title": "background", "shape": "bitmap", "color": "#000000", "geometry_config": {}, "id": 1, "hotkey": ""},
        {"title": "Road", "shape": "bitmap", "color": "#6EC1E4", "geometry_config": {}, "id": 2, "hotkey": ""},
        {"title": "Car", "shape": "polygon", "color": "#E4A16E", "geometry_config": {}, "id": 3, "hotkey": ""},
    ],
    "tags": [],
    "projectType": "images",
    "projectSettings": {"multiView": {"enabled": False}},
}


def test_supervisely_classes_json_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "classes.json").write_text(json.dumps(SUPERVISELY_META))
    colours = np.array([[0, 0, 0], [0x6E, 0xC1, 0xE4], [0xE4, 0xA1, 0x6E]], np.uint8)
    write_photo(tmp_path / "images" / "a.png")
    (tmp_path / "masks").mkdir()
    labels = label_map()
    Image.fromarray(colours[labels]).save(tmp_path / "masks" / "a.png")
    ds = get_dataset("folder", tmp_path, "all")
    assert ds.info.class_names == ["background", "Road", "Car"]
    assert ds.info.palette == [tuple(c) for c in colours.tolist()]
    np.testing.assert_array_equal(ds.load_raw(0)[1], labels)


@pytest.mark.parametrize(
    "name, text",
    [
        ("classes.json", json.dumps({"classes": 5})),
        ("classes.json", json.dumps({"classes": {"road": [1, 2, 3]}, "colours": "x"})),
        ("classes.json", "{not json"),
        ("classes.yaml", "road: [1, 2\n  car: ]"),
        ("classes.json", json.dumps({"classes": [{"color": "#000000"}]})),
    ],
)
def test_an_unreadable_classes_file_lists_the_accepted_forms(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    write_photo(tmp_path / "images" / "a.png")
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match=rf"{name}: .*accepted forms.*Supervisely") as error:
        get_dataset("folder", tmp_path, "all")
    assert "title" in str(error.value) and "'classes' key" in str(error.value)


# -- photos beside their JSON: the balloon layout, Roboflow's COCO export -------------------------


def via_export(shapes: dict[str, tuple[list[int], list[int], str | None]]) -> dict:
    """A VIA 2 JSON export as the balloon tutorial ships it (keys: file name + size)."""
    export = {}
    for filename, (xs, ys, name) in shapes.items():
        attributes = {"name": name} if name else {}
        region = {"shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys},
                  "region_attributes": attributes}  # fmt: skip
        export[f"{filename}1234"] = {"filename": filename, "size": 1234, "regions": [region], "file_attributes": {}}
    return export


def make_balloon(root: Path) -> None:
    square = ([4, 20, 20, 4], [4, 4, 20, 20])
    write_photo(root / "train" / "a.jpg", seed=1)
    write_photo(root / "train" / "b.jpg", seed=2)
    write_photo(root / "val" / "c.jpg", seed=3)
    (root / "train" / "via_region_data.json").write_text(
        json.dumps(via_export({"a.jpg": (*square, "balloon"), "b.jpg": (*square, "balloon")}))
    )
    (root / "val" / "via_region_data.json").write_text(json.dumps(via_export({"c.jpg": (*square, "kite")})))


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_balloon_layout_loads_with_no_file_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "balloon"
    make_balloon(root)
    before = tree(root)
    assert detect_dataset(root) == "folder"
    train, val = get_dataset("folder", root, "train"), get_dataset("folder", root, "val")
    assert [p.name for p in train.images] == ["a.jpg", "b.jpg"] and [p.name for p in val.images] == ["c.jpg"]
    assert len(get_dataset("folder", root, "all")) == 3
    # One class list for every split, from every split's JSON (val alone has "kite").
    assert train.info.class_names == val.info.class_names == ["background", "balloon", "kite"]
    assert get_dataset_info("folder", root=root).class_names == train.info.class_names
    assert train.info.options == {}  # the folders are the split: no random split to record
    mask = val.load_raw(0)[1]
    assert mask[10, 10] == 2 and mask[22, 28] == 0
    assert train.load_raw(1)[1][10, 10] == 1
    with pytest.raises(ValueError, match="no test split"):
        get_dataset("folder", root, "test")
    assert segzoo_main(monkeypatch, "data", "check", str(root), "-q", "--workers", "0") == 0
    out = capsys.readouterr().out
    assert "folder train: 2 samples" in out and "folder val: 1 samples" in out and "no problems found" in out
    assert tree(root) == before


def test_roboflow_coco_folders_load_with_the_split_from_the_folders(tmp_path: Path) -> None:
    for folder, stems in (("train", ["p", "q"]), ("valid", ["r"]), ("test", ["s"])):
        images = []
        for i, stem in enumerate(stems):
            write_photo(tmp_path / folder / f"{stem}.jpg", seed=i)
            images.append({"id": i, "file_name": f"{stem}.jpg", "height": 24, "width": 32})
        coco = {
            "images": images,
            "categories": [{"id": 0, "name": "cells"}, {"id": 1, "name": "cell"}],
            "annotations": [
                {
                    "id": 1,
                    "image_id": 0,
                    "category_id": 1,
                    "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]],
                    "area": 100,
                    "iscrowd": 0,
                }
            ],  # fmt: skip
        }
        (tmp_path / folder / "_annotations.coco.json").write_text(json.dumps(coco))
    val = get_dataset("folder", tmp_path, "val")
    assert [p.name for p in val.images] == ["r.jpg"] and len(get_dataset("folder", tmp_path, "test")) == 1
    assert val.info.class_names == ["background", "cells", "cell"]
    assert val.load_raw(0)[1][6, 6] == 2


def test_images_beside_their_json_in_one_folder(tmp_path: Path) -> None:
    write_photo(tmp_path / "a.jpg")
    (tmp_path / "via_region_data.json").write_text(json.dumps(via_export({"a.jpg": ([2, 9, 9], [2, 2, 9], None)})))
    assert detect_dataset(tmp_path) == "folder"
    ds = get_dataset("folder", tmp_path, "all")
    assert ds.info.class_names == ["background", "object"] and ds.load_raw(0)[1][3, 7] == 1


# -- messages on the command line ------------------------------------------------------------------


def test_command_line_messages_name_flags_not_python_keywords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    write_photo(tmp_path / "images" / "a.jpg")
    for name in ("one.json", "two.json"):
        (tmp_path / name).write_text(json.dumps(via_export({"a.jpg": ([2, 9, 9], [2, 2, 9], None)})))
    assert segzoo_main(monkeypatch, "data", "check", str(tmp_path), "-q") == 1
    err = capsys.readouterr().err
    assert "--annotations FILE" in err and "annotations=<file>" not in err
    assert segzoo_main(monkeypatch, "data", "check", str(tmp_path), "-q", "--workers", "0",
                       "--annotations", "one.json") == 0  # fmt: skip
    (tmp_path / "two.json").unlink()
    regions = via_export({"a.jpg": ([2, 9, 9], [2, 2, 9], None)})
    regions["a.jpg1234"]["regions"][0]["region_attributes"] = {"colour": "red", "size": "big"}
    (tmp_path / "one.json").write_text(json.dumps(regions))
    assert segzoo_main(monkeypatch, "data", "check", str(tmp_path), "-q") == 1
    err = capsys.readouterr().err
    assert "--via-attribute NAME" in err and "via_attribute=<name>" not in err
    assert segzoo_main(monkeypatch, "data", "check", str(tmp_path), "-q", "--workers", "0",
                       "--via-attribute", "colour") == 0  # fmt: skip


# -- one median-frequency definition ---------------------------------------------------------------


def test_data_check_and_class_weights_median_agree_including_an_absent_class(tmp_path: Path) -> None:
    from segzoo.training.loop import TrainConfig, class_weights_for

    # Four classes, the last one never drawn in the training masks.
    (tmp_path / "classes.yaml").write_text("background: [0, 0, 0]\nroad: [1, 1, 1]\ncar: [2, 2, 2]\nbus: [3, 3, 3]\n")
    (tmp_path / "masks").mkdir()
    for i in range(4):
        write_photo(tmp_path / "images" / f"im{i}.png", seed=i)
        Image.fromarray(label_map(seed=i)).save(tmp_path / "masks" / f"im{i}.png")
    (tmp_path / "train.txt").write_text("im0\nim1\nim2\n")
    (tmp_path / "val.txt").write_text("im3\n")
    train = get_dataset("folder", tmp_path, "train")
    report = check_dataset(train, progress=False)
    checked = report.stats.median_frequency_weights()
    config = TrainConfig(model="unet", dataset="folder", data_root=str(tmp_path), class_weights="median")
    trained = class_weights_for(config, train, progress=False)
    np.testing.assert_allclose(trained, checked, rtol=1e-6)
    assert trained[3] == 0.0 and checked[3] == 0.0  # absent: one agreed value
    assert all(w > 0 for w in trained[:3]) and len(set(trained[:3])) > 1  # real, different weights


def test_photos_with_an_exif_orientation_are_pointed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # Training reads data set images as stored (their masks are drawn on those pixels);
    # a photo that viewers show turned deserves a word.
    (tmp_path / "classes.yaml").write_text("background: [0, 0, 0]\nroad: [128, 64, 128]\n")
    (tmp_path / "masks").mkdir()
    (tmp_path / "images").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "images" / "phone.jpg", exif=exif)
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(tmp_path / "masks" / "phone.png")
    assert segzoo_main(monkeypatch, "data", "check", str(tmp_path), "-q", "--workers", "0") == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "phone.jpg has EXIF orientation 6" in out and "no problems found" in out
    # A mask drawn on the photo as shown (turned) does not fit the stored pixels: say why.
    Image.fromarray(np.zeros((32, 24), np.uint8)).save(tmp_path / "masks" / "phone.png")
    with pytest.raises(ValueError, match=r"size mismatch.*EXIF orientation 6.*save it upright"):
        get_dataset("folder", tmp_path, "all").load_raw(0)
