"""The Gradio app: checkpoint catalogue, comparison logic, leaderboard/curves data, and the
running server driven through its API with gradio_client.

Every test makes its own tiny checkpoints (a 3-class "shapes" label set) in a temporary
folder, so none needs trained models or the shared data sets.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from segzoo.app.catalog import Catalog, LabelSet, ModelCache, ModelEntry
from segzoo.app.compare import (
    GROUP_DISAGREEMENT_COLOUR,
    compare_models,
    distinct_label_counts,
    majority_labels,
    read_ground_truth,
    working_image,
)
from segzoo.app.context import AppContext
from segzoo.app.store import comparison_bytes
from segzoo.app.tabs.compare import (
    CompareHandlers,
    class_iou_figure,
    slider_choice,
    slider_choices,
    slider_images,
)
from segzoo.checkpoint import save_checkpoint, write_json
from segzoo.devices import ComputeRecipe

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # from gradio's internals

CLASSES = ["background", "square", "disk"]
PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75]]
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


# ---------------------------------------------------------------------------- tiny checkpoints


def shapes_config(model: str, **extra: object) -> dict:
    return {
        "model": model,
        "model_kwargs": extra.pop("model_kwargs", {}),
        "task": "semantic",
        "num_classes": len(CLASSES),
        "class_names": CLASSES,
        "palette": PALETTE,
        "ignore_index": 255,
        **IMAGENET,
        "input_size": [64, 64],
        "dataset": "shapes",
        "dataset_options": {},
        "training": {"epochs": 3},
        "interim": False,
        **extra,
    }


def write_history(directory: Path, epochs: int = 3) -> None:
    with open(directory / "history.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "train_loss", "val_loss", "val_miou", "lr", "seconds", "epochs_per_min"])
        for epoch in range(1, epochs + 1):
            writer.writerow([epoch, 1.0 / epoch, 1.2 / epoch, 0.2 * epoch, 1e-3, 2.0, 30.0])


def write_metrics(directory: Path, miou: float) -> None:
    write_json(
        directory / "metrics.json",
        {
            "miou": miou,
            "mdice": miou + 0.05,
            "pixel_accuracy": 0.9,
            "mean_class_accuracy": miou + 0.02,
            "fw_iou": 0.8,
            "latency_ms": 12.5,
            "per_class": {name: {"iou": miou, "dice": miou} for name in CLASSES},
        },
    )


def make_tiny_checkpoints(root: Path) -> Path:
    """shapes/unet (finished, evaluated) and shapes/unet_efficientnet_b0 (interim, no metrics)."""
    torch.manual_seed(0)
    from segzoo.registry import create_model

    unet = create_model("unet", num_classes=3, base_channels=4)
    save_checkpoint(root / "shapes" / "unet", unet, shapes_config("unet", model_kwargs={"base_channels": 4}))
    write_history(root / "shapes" / "unet")
    write_metrics(root / "shapes" / "unet", 0.5)
    effnet = create_model("unet_efficientnet_b0", num_classes=3)
    effnet_config = shapes_config("unet_efficientnet_b0", interim=True)
    save_checkpoint(root / "shapes" / "unet_efficientnet_b0", effnet, effnet_config)
    write_history(root / "shapes" / "unet_efficientnet_b0", epochs=2)
    return root


def write_photo(path: Path, width: int = 96, height: int = 72) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_args(checkpoints: Path, tmp: Path, **overrides: object) -> argparse.Namespace:
    from segzoo.app import parse_args

    args = parse_args(
        [
            "--checkpoints",
            str(checkpoints),
            "--leaderboard",
            str(tmp / "absent.json"),
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--cache-size",
            "4",
        ],
        root=Path(__file__).resolve().parents[1],
    )
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def launch(args: argparse.Namespace):  # noqa: ANN201 - (demo, url)
    """Start the app in this process (background thread); returns (demo, url)."""
    from segzoo.app import create_app
    from segzoo.app import launch as serve

    demo = create_app(args)
    serve(demo, args, prevent_thread_lock=True, quiet=True)
    return demo, f"http://{args.host}:{args.port}/"


# ---------------------------------------------------------------------------- fake models


class LabelModel(nn.Module):
    """Predicts ``labels_for(h, w)`` whatever the input; records the input sizes it saw."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule
        self.seen: list[tuple[int, int]] = []
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        self.seen.append((h, w))
        labels = torch.zeros(h, w, dtype=torch.long)
        if self.rule == "left-square":
            labels[:, : w // 2] = 1
        return nn.functional.one_hot(labels, 3).permute(2, 0, 1)[None].float().expand(n, -1, -1, -1)


def fake_entries(
    tmp_path: Path, rules: dict[str, str], classics: set[str] | None = None, **config: object
) -> tuple[LabelSet, list[ModelEntry], ModelCache]:
    """Entries of models that draw ``rules``; those named in ``classics`` count as classics
    (all of them by default, as ``unet`` is)."""
    models = {name: LabelModel(rule) for name, rule in rules.items()}
    entries = [
        ModelEntry(
            "shapes",
            name,
            tmp_path / name,
            shapes_config("unet", **config),
            family="UNet",
            classic=classics is None or name in classics,
        )
        for name in rules
    ]
    label_set = LabelSet("shapes", CLASSES, [tuple(c) for c in PALETTE], 255, entries)
    cache = ModelCache(device="cpu", loader=lambda directory, device: (models[directory.name], {}))
    return label_set, entries, cache


# ---------------------------------------------------------------------------- catalogue


def test_catalog_with_zero_checkpoints(tmp_path: Path) -> None:
    assert len(Catalog.scan(tmp_path / "missing")) == 0
    catalog = Catalog.scan(tmp_path)
    assert catalog.datasets == [] and catalog.problems == []


def test_catalog_finds_checkpoints_and_skips_broken_ones(tmp_path: Path) -> None:
    make_tiny_checkpoints(tmp_path)
    (tmp_path / "shapes" / "broken").mkdir()
    (tmp_path / "shapes" / "broken" / "config.json").write_text("{ not json")
    (tmp_path / "shapes" / "no_weights").mkdir()
    write_json(tmp_path / "shapes" / "no_weights" / "config.json", shapes_config("segnet"))
    (tmp_path / "shapes" / "unknown").mkdir()
    write_json(tmp_path / "shapes" / "unknown" / "config.json", shapes_config("no_such_net"))
    other = shapes_config("unet", class_names=["a", "b", "c"])
    save_checkpoint(tmp_path / "shapes" / "other_classes", nn.Linear(1, 1), other)

    catalog = Catalog.scan(tmp_path)
    label_set = catalog.label_set("shapes")
    assert [e.key for e in label_set.entries] == ["unet", "unet_efficientnet_b0"]
    assert [e.label for e in label_set.entries] == ["unet", "unet_efficientnet_b0 (interim)"]
    assert label_set.class_names == CLASSES and label_set.palette[1] == (230, 25, 75)
    problems = "\n".join(catalog.problems)
    assert "broken" in problems and "not valid JSON" in problems
    assert "no_weights" in problems and "no_such_net" in problems and "other_classes" in problems
    untrained = catalog.untrained("shapes")
    assert "segnet" in untrained and "unet" not in untrained and "maskrcnn_r50_fpn" not in untrained
    with pytest.raises(ValueError, match="no trained models for data set 'cats'"):
        catalog.label_set("cats")
    with pytest.raises(ValueError, match="trained: unet, unet_efficientnet_b0"):
        label_set.entry("segnet")


def test_model_cache_is_lazy_lru_and_reloads_rewritten_weights(tmp_path: Path) -> None:
    make_tiny_checkpoints(tmp_path)
    entries = Catalog.scan(tmp_path).entries()
    loads = []

    def loader(directory: Path, device: torch.device):  # noqa: ANN202
        loads.append(directory.name)
        return LabelModel("zeros"), {}

    cache = ModelCache(device="cpu", capacity=1, loader=loader)
    assert loads == []  # nothing loads before it is asked for
    first = cache.get(entries[0])
    assert cache.get(entries[0]) is first and loads == ["unet"]
    cache.get(entries[1])  # evicts the first (capacity 1)
    cache.get(entries[0])
    assert loads == ["unet", "unet_efficientnet_b0", "unet"]
    time.sleep(0.01)
    save_checkpoint(entries[0].directory, LabelModel("zeros"), entries[0].config)  # retrained
    cache.get(entries[0])
    assert loads[-1] == "unet" and len(loads) == 4


def test_reduced_precision_cache_gives_the_same_labels(tmp_path: Path) -> None:
    """The fast path (bf16 autocast, channels-last) is forced on, whatever this CPU has:
    the model keeps float32 weights, autocast computes in bf16, the labels are unchanged."""
    label_set, entries, cache = fake_entries(tmp_path, {"a": "left-square"})
    cache.recipe = ComputeRecipe(torch.device("cpu"), "bf16-mixed", channels_last=True)
    comparison = compare_models(np.zeros((20, 30, 3), np.uint8), label_set, entries, cache)
    assert next(cache.get(entries[0]).parameters()).dtype == torch.float32
    assert comparison.outputs[0].error is None and comparison.outputs[0].labels[0, 0] == 1


def test_model_cache_loads_real_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tiny_checkpoints(tmp_path)
    monkeypatch.setenv("SEGZOO_CPU_BF16", "0")  # a CPU without native bf16: float32, as before
    cache = ModelCache(device="cpu")
    assert cache.recipe.precision == "32-true" and not cache.recipe.channels_last and cache.capacity is None
    model = cache.get(Catalog.scan(tmp_path).label_set("shapes").entry("unet"))
    assert not model.training and next(model.parameters()).dtype == torch.float32
    assert ModelCache(device="cpu", precision="bf16-mixed").recipe.channels_last


# ---------------------------------------------------------------------------- comparison


def test_compare_runs_each_model_once_on_a_downscaled_photo(tmp_path: Path) -> None:
    label_set, entries, cache = fake_entries(tmp_path, {"a": "left-square", "b": "zeros"})
    photo = np.zeros((100, 200, 3), dtype=np.uint8)
    comparison = compare_models(photo, label_set, entries, cache, max_side=64)
    for entry in entries:
        assert cache.get(entry).seen == [(64, 64), (32, 64)]  # warm-up at load, then the photo at longer side 64
    assert [o.entry.key for o in comparison.outputs] == ["a", "b"]
    for output in comparison.outputs:
        assert output.seconds > 0 and output.error is None
        rendered = comparison.rendered(output, alpha=1.0)
        assert rendered.shape == (100, 200, 3)  # shown at the uploaded size
    left = comparison.rendered(comparison.outputs[0], alpha=1.0)
    assert tuple(left[50, 10]) == tuple(PALETTE[1]) and tuple(left[50, 190]) == tuple(PALETTE[0])
    half = comparison.rendered(comparison.outputs[0], alpha=0.5)
    assert tuple(half[50, 10]) == (115, 12, 38)  # 0.5 * black photo + 0.5 * square colour, rounded
    image, share = comparison.disagreement()
    assert share == pytest.approx(0.5)
    assert image.shape == (100, 200, 3) and tuple(image[50, 10]) != tuple(image[50, 190])
    table = comparison.table()
    assert list(table["Model"]) == ["a", "b"] and table["Time (ms)"].notna().all()
    assert table["mIoU, your mask (%)"].isna().all()
    per_class = comparison.class_iou_table()  # no ground truth: the classes, no rows
    assert per_class.empty and list(per_class.columns) == ["Model", *CLASSES]
    assert not class_iou_figure(comparison).data  # an explanation instead of an empty heatmap


def test_compare_uses_the_training_scale_when_recorded(tmp_path: Path) -> None:
    label_set, entries, cache = fake_entries(tmp_path, {"a": "zeros"}, short_side=50)
    compare_models(np.zeros((100, 200, 3), np.uint8), label_set, entries, cache, max_side=1024)
    assert cache.get(entries[0]).seen[1:] == [(50, 100)]
    label_set, entries, cache = fake_entries(tmp_path, {"a": "zeros"}, short_side=50)
    compare_models(np.zeros((100, 200, 3), np.uint8), label_set, entries, cache, max_side=80)
    assert cache.get(entries[0]).seen[1:] == [(40, 80)]  # max_side still wins


def test_scores_against_an_uploaded_ground_truth(tmp_path: Path) -> None:
    label_set, entries, cache = fake_entries(tmp_path, {"right": "left-square", "wrong": "zeros"})
    truth = np.zeros((40, 60), dtype=np.int64)
    truth[:, :30] = 1
    truth[0, :] = 255  # ignored row
    comparison = compare_models(np.zeros((40, 60, 3), np.uint8), label_set, entries, cache, ground_truth=truth)
    right, wrong = (o.image_scores for o in comparison.outputs)
    assert right == {"miou": pytest.approx(1.0), "pixel_accuracy": pytest.approx(1.0)}
    # "wrong" predicts background everywhere: background IoU 1/2, square IoU 0, disk absent.
    assert wrong["pixel_accuracy"] == pytest.approx(0.5) and wrong["miou"] == pytest.approx(0.25)
    table = comparison.table()
    assert list(table["mIoU, your mask (%)"]) == [100.0, 25.0]
    # Per class: "wrong" misses every square pixel (IoU 0, not blank); disk is in neither the
    # mask nor any prediction, so it has no IoU at all (blank, not 0).
    assert comparison.outputs[1].class_iou["square"] == 0.0 and math.isnan(comparison.outputs[1].class_iou["disk"])
    per_class = comparison.class_iou_table()
    assert list(per_class.columns) == ["Model", *CLASSES] and list(per_class["Model"]) == ["right", "wrong"]
    assert per_class[["background", "square"]].values.tolist() == [[100.0, 100.0], [50.0, 0.0]]
    assert per_class["disk"].isna().all()
    heat = class_iou_figure(comparison)
    assert list(heat.data[0].y) == ["right", "wrong"] and list(heat.data[0].x) == CLASSES
    assert [list(row) for row in heat.data[0].z] == [[100.0, 100.0, None], [50.0, 0.0, None]]


def test_before_after_slider_shows_the_photo_and_the_chosen_models_result(tmp_path: Path) -> None:
    label_set, entries, cache = fake_entries(tmp_path, {"a": "left-square", "b": "zeros"})
    photo = np.full((20, 30, 3), 40, np.uint8)
    comparison = compare_models(photo, label_set, entries, cache)
    assert slider_choices(comparison) == [("a", "a"), ("b", "b")]
    before, after = slider_images(comparison, "b", 1.0)
    assert (before == photo).all() and after.shape == (20, 30, 3) and tuple(after[5, 2]) == tuple(PALETTE[0])
    _, after = slider_images(comparison, "a", 1.0)
    assert tuple(after[5, 2]) == tuple(PALETTE[1]) and tuple(after[5, 28]) == tuple(PALETTE[0])
    _, faint = slider_images(comparison, "a", 0.0)  # the opacity applies: 0 is the photo itself
    assert (faint == photo).all()
    assert slider_choice(comparison, "gone") == "a"  # a pick from an earlier comparison: the first model
    comparison.outputs[0].error = "failed: broken"  # a failed model has no result to show
    assert slider_choices(comparison) == [("b", "b")] and slider_choice(comparison, "a") == "b"
    assert tuple(slider_images(comparison, "a", 1.0)[1][5, 2]) == tuple(PALETTE[0])
    comparison.outputs[1].error = "failed: broken"
    assert slider_images(comparison, "b", 1.0) is None


def test_a_model_that_fails_to_load_is_reported_not_fatal(tmp_path: Path) -> None:
    make_tiny_checkpoints(tmp_path)
    label_set = Catalog.scan(tmp_path).label_set("shapes")
    weights = label_set.entry("unet").weights_path
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    comparison = compare_models(np.zeros((32, 48, 3), np.uint8), label_set, label_set.entries, ModelCache("cpu"))
    broken, fine = comparison.outputs
    assert "corrupt or truncated" in broken.error and fine.error is None and fine.labels is not None
    assert comparison.rendered(broken, 0.5).shape == (32, 48, 3)
    assert comparison.disagreement() is None  # one working model: nothing to compare
    assert "failed" in comparison.table()["Notes"][0]


class FakeMaskRCNN(nn.Module):
    """torchvision's detection output: one confident box and one weak one."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        _, h, w = images[0].shape
        masks = torch.zeros(2, 1, h, w)
        masks[0, 0, : h // 2, : w // 2] = 1
        masks[1, 0, h // 2 :, w // 2 :] = 1
        return [
            {
                "boxes": torch.tensor([[0, 0, w / 2, h / 2], [w / 2, h / 2, w - 1, h - 1]]),
                "labels": torch.tensor([1, 2]),  # 1-based: background is 0
                "scores": torch.tensor([0.9, 0.3]),
                "masks": masks,
            }
        ]


def test_instance_models_are_drawn_as_instances(tmp_path: Path) -> None:
    pytest.importorskip("segzoo.instance.predict")
    config = {**shapes_config("maskrcnn_r50_fpn"), "task": "instance"}
    entry = ModelEntry("fruits", "maskrcnn", tmp_path / "maskrcnn", config)
    label_set = LabelSet("fruits", CLASSES, [tuple(c) for c in PALETTE], None, [entry])
    cache = ModelCache(device="cpu", loader=lambda directory, device: (FakeMaskRCNN(), {}))
    photo = np.full((80, 120, 3), 128, np.uint8)
    comparison = compare_models(photo, label_set, [entry], cache, max_side=60, score_threshold=0.2)
    (output,) = comparison.outputs
    assert output.error is None and output.labels is None and output.work_size == (40, 60)
    assert "2 instances" in comparison.table()["Notes"][0]
    assert comparison_bytes(comparison) > output.instances.masks.nbytes > 0  # the store counts the masks
    drawn = comparison.rendered(output, alpha=1.0, score_threshold=0.5)
    assert drawn.shape == (80, 120, 3)
    assert (drawn[10:30, 10:50] != 128).any() and (drawn[50:70, 70:110] == 128).all()  # the weak one is hidden
    assert (comparison.rendered(output, alpha=1.0, score_threshold=0.2)[50:70, 70:110] != 128).any()
    assert comparison.disagreement() is None


def save_thing_model(directory: Path, class_names: list[str], metrics: dict | None = None) -> None:
    """A Mask R-CNN checkpoint folder (the catalogue reads its config, not its weights)."""
    config = {**shapes_config("maskrcnn_r50_fpn"), "task": "instance", "num_classes": len(class_names)}
    config.update(class_names=class_names, palette=None, dataset="shapes_things")
    save_checkpoint(directory, nn.Linear(1, 1), config)
    if metrics is not None:
        write_json(directory / "metrics.json", metrics)


def test_an_instance_model_of_some_of_the_classes_joins_the_label_set(tmp_path: Path) -> None:
    pytest.importorskip("segzoo.instance.predict")
    make_tiny_checkpoints(tmp_path)
    save_thing_model(tmp_path / "shapes" / "maskrcnn", ["disk", "square"])  # CamVid's things in camvid/
    save_thing_model(tmp_path / "shapes" / "maskrcnn_cats", ["disk", "cat"])  # a class the others lack
    catalog = Catalog.scan(tmp_path)
    label_set = catalog.label_set("shapes")
    assert label_set.class_names == CLASSES  # the semantic models decide, even if outnumbered
    assert [e.key for e in label_set.entries] == ["maskrcnn", "unet", "unet_efficientnet_b0"]
    maskrcnn = label_set.entry("maskrcnn")
    assert maskrcnn.label_set_indices == [2, 1]
    assert label_set.classes_of(maskrcnn) == (["disk", "square"], [(60, 180, 75), (230, 25, 75)])
    assert label_set.classes_of(label_set.entry("unet"))[0] == CLASSES
    assert any("maskrcnn_cats" in p and "differ" in p for p in catalog.problems)


def test_an_instance_model_is_scored_on_its_classes_of_an_uploaded_mask(tmp_path: Path) -> None:
    pytest.importorskip("segzoo.instance.predict")
    config = {**shapes_config("maskrcnn_r50_fpn"), "task": "instance", "num_classes": 2}
    entry = ModelEntry("shapes", "maskrcnn", tmp_path / "maskrcnn", {**config, "class_names": ["disk", "square"]})
    entry.label_set_indices = [2, 1]
    label_set = LabelSet("shapes", CLASSES, [tuple(c) for c in PALETTE], 255, [entry])
    cache = ModelCache(device="cpu", loader=lambda directory, device: (FakeMaskRCNN(), {}))
    photo = np.full((80, 120, 3), 128, np.uint8)
    # FakeMaskRCNN at the 40x60 working size: its class 0 (disk) top left, class 1 (square,
    # score 0.3) bottom right; at the upload's size each is a 40x60 quadrant.
    truth = np.zeros((80, 120), np.uint8)
    truth[:40, :60] = 2  # the disk, exactly
    truth[40:, 60:90] = 1  # half the square's quadrant
    truth[:5, 100:] = 255  # ignored
    comparison = compare_models(photo, label_set, [entry], cache, max_side=60, score_threshold=0.2, ground_truth=truth)
    (output,) = comparison.outputs
    assert output.error is None
    assert output.class_iou == {"disk": 1.0, "square": 0.5}  # background is not its class: left out
    assert output.image_scores["miou"] == 0.75
    notes = comparison.table()["Notes"][0]
    assert "2 instances" in notes and "scored on its classes (disk, square)" in notes
    assert comparison.class_iou_table().set_index("Model").loc["maskrcnn", "background"] is None  # blank
    drawn = comparison.rendered(output, alpha=1.0, score_threshold=0.2)
    assert (drawn[10:30, 10:50] != 128).any()


def test_the_leaderboard_shows_an_instance_models_mask_ap_and_class_ious_not_its_miou(tmp_path: Path) -> None:
    pytest.importorskip("segzoo.instance.predict")
    leaderboard = pytest.importorskip("segzoo.leaderboard")
    from segzoo.app.tables import display_table, leaderboard_frame

    make_tiny_checkpoints(tmp_path / "checkpoints")
    metrics = {"task": "instance", "mask_AP": 0.3, "thing_miou": 0.6, "thing_iou": {"disk": 0.7, "square": 0.5}}
    save_thing_model(tmp_path / "checkpoints" / "shapes" / "maskrcnn", ["disk", "square"], metrics)
    catalog = Catalog.scan(tmp_path / "checkpoints")
    frame = leaderboard_frame(catalog).set_index("model")
    assert math.isnan(frame.loc["maskrcnn", "miou"])  # over 2 of the 3 classes: not comparable
    assert frame.loc["maskrcnn", "mask_ap"] == 0.3 and frame.loc["maskrcnn", "iou"] == {"disk": 0.7, "square": 0.5}
    assert frame.loc["maskrcnn", "dataset"] == "shapes"
    shown = display_table(frame.reset_index())
    assert list(shown.set_index("Model")["Mask AP (%)"].dropna()) == [30.0]
    assert "Mask AP (%)" not in display_table(frame.drop(index="maskrcnn").reset_index())
    # A leaderboard file lists it under its training data set with mIoU over its own classes.
    row = {"dataset": "shapes_things", "model": "maskrcnn_r50_fpn", "miou": 0.6, "mask_ap": 0.3,
           "checkpoint": "checkpoints/shapes/maskrcnn"}  # fmt: skip
    path = tmp_path / "leaderboard.json"
    path.write_text(json.dumps({"rows": [{c: row.get(c) for c in leaderboard.COLUMNS}]}))
    listed = leaderboard_frame(catalog, path).set_index("model")
    assert math.isnan(listed.loc["maskrcnn", "miou"]) and listed.loc["maskrcnn", "dataset"] == "shapes"
    assert listed.loc["maskrcnn", "iou"]["disk"] == 0.7


def test_distinct_label_counts() -> None:
    a = np.array([[0, 1, 2]])
    b = np.array([[0, 1, 1]])
    c = np.array([[0, 2, 0]])
    assert distinct_label_counts([a, b, c]).tolist() == [[1, 2, 3]]


def test_majority_labels_ties_go_to_the_earliest_map() -> None:
    a = np.array([[0, 1, 2, 2]])
    b = np.array([[0, 1, 1, 2]])
    c = np.array([[3, 2, 0, 1]])
    assert majority_labels([a, b, c]).tolist() == [[0, 1, 2, 2]]  # 2 and 1 tie at [0, 2]: a's 2
    assert majority_labels([c, a, b]).tolist() == [[0, 1, 0, 2]]  # c first: its 0 wins that tie
    assert majority_labels([c, a]).tolist() == c.tolist()  # every pixel a tie or agreement


def test_classics_against_encoder_models_map(tmp_path: Path) -> None:
    """Each group votes per pixel; the map marks where the votes differ and names the pairs."""
    rules = {"unet": "left-square", "segnet": "left-square", "effb0": "left-square", "r34": "zeros"}
    label_set, entries, cache = fake_entries(tmp_path, rules, classics={"unet", "segnet"})
    for entry, miou in zip(entries, [0.5, 0.6, 0.4, 0.7]):
        write_metrics(entry.directory, miou)
    photo = np.zeros((20, 40, 3), dtype=np.uint8)
    comparison = compare_models(photo, label_set, entries, cache, max_side=64)
    groups = comparison.group_disagreement()
    # On the left half the encoders tie (square, background): r34, the better one, says background.
    assert groups.classics == ["segnet", "unet"] and groups.encoders == ["r34", "effb0"]
    assert groups.share == pytest.approx(0.5)
    assert groups.top_pairs == [("square", "background", pytest.approx(0.5))]
    assert groups.image.shape == (20, 40, 3)
    left, right = groups.image[10, 5].astype(int), groups.image[10, 35].astype(int)
    assert np.abs(left - np.array(GROUP_DISAGREEMENT_COLOUR)).max() < 30 and len(set(right.tolist())) == 1
    write_metrics(entries[2].directory, 0.8)  # now effb0 is the better encoder model: it says square
    groups = comparison.group_disagreement()
    assert groups.encoders == ["effb0", "r34"] and groups.share == 0 and groups.top_pairs == []

    # One group alone has nothing to be compared with.
    label_set, entries, cache = fake_entries(tmp_path, {"unet": "left-square", "segnet": "zeros"})
    assert compare_models(photo, label_set, entries, cache, max_side=64).group_disagreement() is None


def test_working_image_downscales_to_the_training_scale_or_max_side() -> None:
    image = np.zeros((30, 40, 3), np.uint8)
    assert working_image(image, 1024).shape == (30, 40, 3)
    assert working_image(image, 20).shape == (15, 20, 3)
    assert working_image(image, 1024, {"short_side": 60}).shape == (30, 40, 3)  # small photos stay small
    assert working_image(image, 1024, {"short_side": 15}).shape == (15, 20, 3)


@pytest.fixture()
def shapes_set() -> LabelSet:
    return LabelSet("shapes", CLASSES, [tuple(c) for c in PALETTE], 255)


def test_ground_truth_as_index_png_palette_png_and_colour_png(tmp_path: Path, shapes_set: LabelSet) -> None:
    labels = np.zeros((8, 10), np.uint8)
    labels[2:5, 3:7] = 1
    labels[6:, :] = 2
    labels[0, 0] = 255
    Image.fromarray(labels).save(tmp_path / "index.png")
    palette_image = Image.new("P", (10, 8))
    palette_image.putdata(labels.flatten().tolist())
    palette_image.putpalette(sum(PALETTE, []) + [224, 224, 192] * 253)  # a full palette, as VOC's masks
    palette_image.save(tmp_path / "palette.png")
    colours = np.zeros((8, 10, 3), np.uint8)
    for i, colour in enumerate(PALETTE):
        colours[labels == i] = colour
    Image.fromarray(colours).save(tmp_path / "colour.png")
    expected = labels.astype(np.int64)
    for name in ("index.png", "palette.png"):
        assert (read_ground_truth(tmp_path / name, shapes_set, (8, 10)) == expected).all(), name
    from_colours = read_ground_truth(tmp_path / "colour.png", shapes_set, (8, 10))
    assert (from_colours == np.where(labels == 255, 0, expected)).all()  # black is background here


def test_ground_truth_errors_are_readable(tmp_path: Path, shapes_set: LabelSet) -> None:
    Image.fromarray(np.full((8, 10), 7, np.uint8)).save(tmp_path / "labels.png")
    with pytest.raises(ValueError, match=r"labels.png holds labels \[7\] unknown to shapes"):
        read_ground_truth(tmp_path / "labels.png", shapes_set, (8, 10))
    with pytest.raises(ValueError, match="labels.png is 10x8 but the photo is 20x16"):
        read_ground_truth(tmp_path / "labels.png", shapes_set, (16, 20))
    Image.fromarray(np.full((8, 10, 3), (1, 2, 3), np.uint8)).save(tmp_path / "colours.png")
    with pytest.raises(ValueError, match=r"colours not in the shapes palette: \(1, 2, 3\)"):
        read_ground_truth(tmp_path / "colours.png", shapes_set, (8, 10))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="junk.png: not a readable image"):
        read_ground_truth(tmp_path / "junk.png", shapes_set, (8, 10))


# ---------------------------------------------------------------------------- leaderboard and curves


def test_leaderboard_from_checkpoints_reads_metrics_defensively(tmp_path: Path) -> None:
    from segzoo.app import figures
    from segzoo.app.tables import display_table, leaderboard_frame

    make_tiny_checkpoints(tmp_path)
    # The other metrics.json layout: per-class dicts at the top level.
    write_json(
        tmp_path / "shapes" / "unet_efficientnet_b0" / "metrics.json",
        {"miou": 0.7, "iou": {"square": 0.6, "disk": None}},
    )
    frame = leaderboard_frame(Catalog.scan(tmp_path), tmp_path / "absent.json")
    assert list(frame["model"]) == ["unet_efficientnet_b0", "unet"]  # best mIoU first
    effnet, unet = frame.iloc[0], frame.iloc[1]
    assert effnet["interim"] and effnet["miou"] == 0.7 and math.isnan(effnet["mdice"])
    assert effnet["iou"]["square"] == 0.6 and math.isnan(effnet["iou"]["disk"])
    assert unet["latency_ms"] == 12.5 and unet["iou"]["disk"] == 0.5
    from segzoo.registry import create_model

    expected = sum(p.numel() for p in create_model("unet", num_classes=3, base_channels=4).parameters())
    assert unet["params"] == expected  # counted from the safetensors header
    shown = display_table(frame)
    assert list(shown["Model"]) == ["unet_efficientnet_b0 (interim)", "unet"]
    assert list(shown["mIoU (%)"]) == [70.0, 50.0]
    bars = figures.miou_bars(frame)
    assert sorted(v for trace in bars.data for v in trace.x) == [50.0, 70.0]
    assert len(figures.speed_quality(frame).data) == 1  # only unet has a latency
    heat = figures.class_iou_heatmap(frame, CLASSES)
    assert list(heat.data[0].z[0]) == [None, 60.0, None]


def test_leaderboard_file_rows_come_first_and_are_completed_from_checkpoints(tmp_path: Path) -> None:
    leaderboard = pytest.importorskip("segzoo.leaderboard")
    from segzoo.app.tables import leaderboard_frame

    make_tiny_checkpoints(tmp_path / "checkpoints")
    rows = [
        {
            "dataset": "shapes",
            "model": "unet",
            "family": "UNet",
            "interim": False,
            "miou": 0.55,
            "latency_ms": 7.0,
            "gflops": 0.3,
            "params": 1234,
            "latency_device": "cpu",
            "checkpoint": "checkpoints/shapes/unet",
        },
        {"dataset": "shapes", "model": "segnet", "family": "SegNet", "interim": False, "miou": 0.6},  # not shipped
    ]
    path = tmp_path / "leaderboard.json"
    path.write_text(json.dumps({"rows": [{c: r.get(c) for c in leaderboard.COLUMNS} for r in rows]}))
    frame = leaderboard_frame(Catalog.scan(tmp_path / "checkpoints"), path).set_index("model")
    assert sorted(frame.index) == ["segnet", "unet", "unet_efficientnet_b0"]
    assert frame.loc["unet", "miou"] == 0.55 and frame.loc["unet", "latency_ms"] == 7.0  # the file wins
    assert frame.loc["unet", "iou"]["disk"] == 0.5  # per-class IoU from metrics.json
    assert frame.loc["unet_efficientnet_b0", "interim"] and frame.loc["segnet", "iou"] == {}


def test_leaderboard_and_figures_with_no_checkpoints(tmp_path: Path) -> None:
    from segzoo.app import figures
    from segzoo.app.tables import display_table, leaderboard_frame

    frame = leaderboard_frame(Catalog.scan(tmp_path), None)
    assert frame.empty and display_table(frame).empty
    for fig in (figures.miou_bars(frame), figures.speed_quality(frame), figures.class_iou_heatmap(frame)):
        assert not fig.data and fig.layout.annotations  # an explanation, not an error
    loss, miou = figures.training_curves({})
    assert not loss.data and loss.layout.annotations


def test_training_curves_overlay_models(tmp_path: Path) -> None:
    from segzoo.app.figures import training_curves
    from segzoo.app.tables import read_history

    make_tiny_checkpoints(tmp_path)
    histories = {e.label: read_history(e.history_path) for e in Catalog.scan(tmp_path).entries()}
    loss, miou = training_curves(histories)
    assert len(loss.data) == 4 and len(miou.data) == 2  # train + val per model; one mIoU line each
    assert list(miou.data[0].y) == pytest.approx([20.0, 40.0, 60.0])
    (tmp_path / "bad.csv").write_text("no,epoch,column\n")
    assert read_history(tmp_path / "bad.csv") is None and read_history(tmp_path / "absent.csv") is None
    assert "mask AP" not in miou.layout.title.text


def test_training_curves_show_mask_rcnns_mask_ap(tmp_path: Path) -> None:
    from segzoo.app.figures import training_curves
    from segzoo.app.tables import read_history
    from segzoo.training.history import write_history

    make_tiny_checkpoints(tmp_path)
    rows = [{"epoch": e, "train_loss": 2.0 / e, "val_mask_ap": 0.1 * e, "lr": 0.01, "seconds": 9.0} for e in (1, 2)]
    write_history(tmp_path / "mrcnn", rows, ["epoch", "train_loss", "val_mask_ap", "lr", "seconds"])
    histories = {"unet": read_history(tmp_path / "shapes" / "unet" / "history.csv")}
    histories["maskrcnn"] = read_history(tmp_path / "mrcnn" / "history.csv")
    loss, score = training_curves(histories)
    assert [t.name for t in loss.data] == ["unet train", "unet val", "maskrcnn train"]
    assert [t.name for t in score.data] == ["unet", "maskrcnn mask AP"]
    assert list(score.data[1].y) == pytest.approx([10.0, 20.0]) and score.data[1].line.dash == "dot"
    assert "mask AP" in score.layout.title.text and "mask AP" in score.layout.yaxis.title.text


def test_page_leaderboard_and_curves_handlers_read_the_rescanned_catalogue(tmp_path: Path) -> None:
    from segzoo.app.tabs.curves import CurvesHandlers
    from segzoo.app.tabs.leaderboard import LeaderboardHandlers
    from segzoo.app.ui import PageHandlers

    context = AppContext(checkpoints=tmp_path / "checkpoints", cache=ModelCache(device="cpu"))
    page = PageHandlers(context, CompareHandlers(context), CurvesHandlers(context))
    *_, empty_note, curves_dataset, _ = page.on_load()
    assert empty_note["visible"] is True and curves_dataset["choices"] == []
    make_tiny_checkpoints(tmp_path / "checkpoints")  # trained while the app runs: a fresh page sees them
    dataset, models, *_, empty_note, curves_dataset, curves_models = page.on_load()
    assert dataset["value"] == curves_dataset["value"] == "shapes" and empty_note["visible"] is False
    assert models["value"] == curves_models["value"] == ["unet", "unet_efficientnet_b0"]
    choices, table, *_ = LeaderboardHandlers(context).leaderboard_views("not a data set")
    assert choices["value"] == "shapes" and list(table["Model"]) == ["unet", "unet_efficientnet_b0 (interim)"]
    loss, miou = page.curves.curves("shapes", ["unet"])
    assert len(loss.data) == 2 and len(miou.data) == 1  # train + val loss; one mIoU line


# ---------------------------------------------------------------------------- command line, Spaces


def test_server_address_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from segzoo.app.server import server_address

    assert server_address(None, None, {}) == ("127.0.0.1", 7860)
    assert server_address(None, None, {"SPACE_ID": "me/segzoo", "PORT": "7861"}) == ("0.0.0.0", 7861)
    assert server_address(None, None, {"GRADIO_SERVER_PORT": "9000"}) == ("127.0.0.1", 9000)
    assert server_address("10.0.0.1", 80, {"SPACE_ID": "x"}) == ("10.0.0.1", 80)


def test_gpu_decorator_only_on_zero_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from segzoo.app.server import gpu_decorator

    def fn() -> int:
        return 1

    assert gpu_decorator({})(fn) is fn
    assert gpu_decorator({"SPACE_ID": "me/segzoo"})(fn) is fn  # a CPU Space: nothing special
    spaces = types.ModuleType("spaces")
    spaces.GPU = lambda f: ("on gpu", f)
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    assert gpu_decorator({"SPACES_ZERO_GPU": "true"})(fn) == ("on gpu", fn)


def test_app_builds_with_zero_checkpoints(tmp_path: Path) -> None:
    import gradio as gr

    from segzoo.app import create_app

    demo = create_app(app_args(tmp_path / "empty", tmp_path))
    assert isinstance(demo, gr.Blocks)
    # Through the app's own wiring: the event behind the /compare endpoint.
    compare = next(f for f in demo.fns.values() if f.api_name == "compare")
    with pytest.raises(gr.Error, match="No trained model found"):
        compare.fn(str(write_photo(tmp_path / "p.png")), None, [], 0.5, None, 0.5)


def test_slider_and_per_class_handlers_reuse_the_comparison(tmp_path: Path) -> None:
    """After Compare, the slider (its model and opacity) and the per-class IoU come from the
    stored comparison: no model runs again."""
    import gradio as gr

    models = {"a": LabelModel("left-square"), "b": LabelModel("zeros")}
    for name, model in models.items():
        save_checkpoint(tmp_path / "checkpoints" / "shapes" / name, model, shapes_config("unet"))
    cache = ModelCache(device="cpu", loader=lambda directory, device: (models[directory.name], {}))
    handlers = CompareHandlers(AppContext(checkpoints=tmp_path / "checkpoints", cache=cache, max_side=None))
    compare, views = handlers.compare, handlers.comparison_views
    show_slider, class_iou = handlers.show_slider, handlers.class_iou
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "photo.png")
    truth = np.zeros((40, 60), np.uint8)
    truth[:, :30] = 1  # "a" is right; "b" (all background) misses every square pixel
    Image.fromarray(truth).save(tmp_path / "truth.png")

    *_, key = compare(str(tmp_path / "photo.png"), "shapes", ["a", "b"], 0.5, str(tmp_path / "truth.png"), 0.5)
    runs = {name: len(model.seen) for name, model in models.items()}
    choice, (before, after), class_box, plot, groups_box, _, _ = views(key, None, 1.0, 0.5)
    assert choice["choices"] == [("a", "a"), ("b", "b")] and choice["value"] == "a"
    assert before.shape == after.shape == (40, 60, 3) and tuple(after[20, 10]) == tuple(PALETTE[1])
    assert class_box["visible"] is True
    assert groups_box["visible"] is False  # both are classics (unet): no second group
    assert [list(row) for row in plot.data[0].z] == [[100.0, 100.0, None], [50.0, 0.0, None]]
    assert tuple(show_slider(key, "b", 1.0, 0.5)[1][20, 10]) == tuple(PALETTE[0])  # another model
    assert (show_slider(key, "b", 0.0, 0.5)[1] == 0).all()  # another opacity: the black photo
    table = class_iou(key)
    assert list(table["Model"]) == ["a", "b"] and list(table["square"]) == [100.0, 0.0]
    assert table["disk"].isna().all()
    assert {name: len(model.seen) for name, model in models.items()} == runs  # no model ran again
    assert isinstance(show_slider("gone", "a", 1.0, 0.5), type(gr.skip()))
    assert all(isinstance(v, type(gr.skip())) for v in views("gone", "a", 1.0, 0.5))
    with pytest.raises(gr.Error, match="run /compare with a ground-truth mask first"):
        class_iou("gone")

    # Without a ground truth the per-class view stays hidden; the user's pick is kept if it ran.
    *_, key = compare(str(tmp_path / "photo.png"), "shapes", ["b"], 0.5, None, 0.5)
    choice, _, class_box, *_ = views(key, "a", 0.5, 0.5)
    assert choice["value"] == "b" and class_box["visible"] is False
    assert views(key, "b", 0.5, 0.5)[0]["value"] == "b"
    assert class_iou(key).empty


def test_compare_tab_shows_the_classics_against_the_encoder_models(tmp_path: Path) -> None:
    """With a classic (unet) and an encoder model (unet_resnet34) the tab shows the map and says
    where they differ, from the stored comparison."""
    models = {"unet": LabelModel("left-square"), "unet_resnet34": LabelModel("zeros")}
    for name in models:
        save_checkpoint(tmp_path / "checkpoints" / "shapes" / name, models[name], shapes_config(name))
    cache = ModelCache(device="cpu", loader=lambda directory, device: (models[directory.name], {}))
    handlers = CompareHandlers(AppContext(checkpoints=tmp_path / "checkpoints", cache=cache, max_side=None))
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "photo.png")
    *_, key = handlers.compare(str(tmp_path / "photo.png"), "shapes", ["unet", "unet_resnet34"], 0.5, None, 0.5)
    *_, groups_box, image, text = handlers.comparison_views(key, None, 1.0, 0.5)
    assert groups_box["visible"] is True and image.shape == (40, 60, 3)
    assert "The classics (unet) and the encoder models (unet_resnet34)" in text
    assert "differ on **50.0%** of the pixels" in text
    assert "*square* where the encoder models say *background* (50.0%)" in text


# ---------------------------------------------------------------------------- the running server


@pytest.fixture(scope="module")
def served_app(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("app")
    demo, url = launch(app_args(make_tiny_checkpoints(tmp / "checkpoints"), tmp, max_side=64))
    from gradio_client import Client

    yield Client(url, verbose=False), tmp
    demo.close()


def _compare(client, photo: Path, models: list[str] | None = None, truth: Path | None = None):  # noqa: ANN001, ANN202
    from gradio_client import handle_file

    return client.predict(
        image=handle_file(str(photo)),
        dataset="shapes",
        models=models or ["unet", "unet_efficientnet_b0"],
        opacity=0.6,
        ground_truth=handle_file(str(truth)) if truth else None,
        score_threshold=0.5,
        api_name="/compare",
    )


@pytest.mark.slow
def test_api_compare_returns_one_full_size_result_per_model(served_app) -> None:  # noqa: ANN001
    client, tmp = served_app
    photo = write_photo(tmp / "photo.png", width=150, height=100)  # larger than max_side=64
    gallery, table, disagreement, status = _compare(client, photo)
    assert len(gallery) == 2
    for item in gallery:
        assert Image.open(item["image"]).size == (150, 100)
    assert [item["caption"].split(" · ")[0] for item in gallery] == ["unet", "unet_efficientnet_b0 (interim)"]
    assert table["headers"][:3] == ["Model", "Family", "Time (ms)"] and len(table["data"]) == 2
    assert Image.open(disagreement).size == (150, 100)
    assert "2 models" in status and "run at 64×43" in status
    one = _compare(client, photo, models=["unet"])
    assert len(one[0]) == 1 and one[2] is None  # no disagreement map for a single model


@pytest.mark.slow
def test_api_compares_the_models_of_any_data_set(tmp_path: Path) -> None:
    """An API client names a data set and its models in one call, without the browser's
    change of the Models choices: a second data set's models are accepted, and a model the
    data set lacks gets a message naming the ones it has."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    root = make_tiny_checkpoints(tmp_path / "checkpoints")
    shutil.copytree(root / "shapes" / "unet", root / "tiles" / "small_unet")  # "shapes" is the first
    demo, url = launch(app_args(root, tmp_path, max_side=64))
    try:
        client = Client(url, verbose=False)
        photo = handle_file(str(write_photo(tmp_path / "photo.png")))

        def compare(dataset: str, models: list[str]) -> tuple:
            return client.predict(
                image=photo, dataset=dataset, models=models, opacity=0.5, ground_truth=None, score_threshold=0.5,
                api_name="/compare",
            )  # fmt: skip

        gallery, *_ = compare("tiles", ["small_unet"])
        assert [item["caption"].split(" · ")[0] for item in gallery] == ["small_unet"]
        with pytest.raises(AppError, match="no trained model 'unet_efficientnet_b0'.*small_unet"):
            compare("tiles", ["unet_efficientnet_b0"])
        with pytest.raises(AppError, match="list of model names"):
            compare("tiles", [3])
        gallery, *_ = compare("shapes", ["unet"])  # and it keeps serving
        assert len(gallery) == 1
    finally:
        demo.close()


@pytest.mark.slow
def test_api_corrupt_upload_is_a_readable_error_and_the_app_keeps_serving(served_app) -> None:  # noqa: ANN001
    from gradio_client.exceptions import AppError

    client, tmp = served_app
    junk = tmp / "holiday.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(AppError, match="holiday.jpg.*not a readable image"):
        _compare(client, junk)
    truncated = tmp / "truncated.png"
    truncated.write_bytes(write_photo(tmp / "whole.png").read_bytes()[:200])
    with pytest.raises(AppError, match="truncated.png.*not a readable image"):
        _compare(client, truncated)
    gallery, *_ = _compare(client, write_photo(tmp / "good.png"))
    assert len(gallery) == 2


@pytest.mark.slow
def test_api_scores_an_uploaded_ground_truth(served_app) -> None:  # noqa: ANN001
    client, tmp = served_app
    photo = write_photo(tmp / "scored.png", width=40, height=30)
    truth = np.zeros((30, 40), np.uint8)
    truth[5:20, 5:20] = 1
    Image.fromarray(truth).save(tmp / "scored_mask.png")
    _, table, _, status = _compare(client, photo, truth=tmp / "scored_mask.png")
    miou = [row[table["headers"].index("mIoU, your mask (%)")] for row in table["data"]]
    assert all(isinstance(v, (int, float)) and 0 <= v <= 100 for v in miou)
    per_class = client.predict(api_name="/class_iou")  # of this client's last /compare
    assert per_class["headers"] == ["Model", *CLASSES]
    assert [row[0] for row in per_class["data"]] == ["unet", "unet_efficientnet_b0 (interim)"]
    for row, model_miou in zip(per_class["data"], miou, strict=True):
        ious = dict(zip(CLASSES, row[1:], strict=True))
        assert all(isinstance(ious[c], (int, float)) for c in ("background", "square"))  # in the mask: defined
        defined = [v for v in ious.values() if v is not None]  # disk: None (blank) unless predicted
        assert all(0 <= v <= 100 for v in defined)
        assert sum(defined) / len(defined) == pytest.approx(model_miou, abs=0.1)  # mIoU: their mean
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp / "small_mask.png")
    gallery, table, _, status = _compare(client, photo, truth=tmp / "small_mask.png")
    assert len(gallery) == 2 and "Ground truth not used" in status and "is 10x10 but the photo is 40x30" in status
    assert client.predict(api_name="/class_iou")["data"] == []  # no ground truth used: nothing per class


@pytest.mark.slow
def test_api_documents_the_compare_endpoint(served_app) -> None:  # noqa: ANN001
    client, _ = served_app
    info = client.view_api(print_info=False, return_format="dict")
    endpoint = info["named_endpoints"]["/compare"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == [
        "image",
        "dataset",
        "models",
        "opacity",
        "ground_truth",
        "score_threshold",
    ]
    assert len(endpoint["returns"]) == 4  # the session state is not part of the API
    class_iou = info["named_endpoints"]["/class_iou"]
    assert class_iou["parameters"] == [] and len(class_iou["returns"]) == 1  # reads the session's comparison
    assert not any(name.startswith("/on_") for name in info["named_endpoints"])
    assert not {"/comparison_views", "/show_slider", "/rerender"} & set(info["named_endpoints"])


@pytest.mark.slow
def test_app_serves_a_page_with_zero_checkpoints(tmp_path: Path) -> None:
    import urllib.request

    from gradio_client import Client
    from gradio_client.exceptions import AppError

    demo, url = launch(app_args(tmp_path / "empty", tmp_path))
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200
        with pytest.raises(AppError, match="No trained model found"):
            Client(url, verbose=False).predict(
                image=None,
                dataset=None,
                models=[],
                opacity=0.5,
                ground_truth=None,
                score_threshold=0.5,
                api_name="/compare",
            )
    finally:
        demo.close()


# ---------------------------------------------------------------------------- onnxruntime serving


def random_unet_checkpoint(root: Path, seed: int = 0) -> ModelEntry:
    """A tiny UNet whose random weights predict varied labels (so agreement means something)."""
    from segzoo.export import random_weights
    from segzoo.registry import create_model

    model = random_weights(create_model("unet", num_classes=3, base_channels=4), seed=seed)
    save_checkpoint(root / "shapes" / "unet", model, shapes_config("unet", model_kwargs={"base_channels": 4}))
    return Catalog.scan(root).label_set("shapes").entry("unet")


def test_onnxruntime_serves_a_model_once_its_verified_export_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segzoo import export
    from segzoo.export import OnnxModule

    entry = random_unet_checkpoint(tmp_path / "checkpoints")
    photo = np.random.default_rng(1).integers(0, 256, (72, 96, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    cache = ModelCache(device="cpu", precision="32-true", runtime="onnxruntime", onnx_dir=tmp_path / "onnx")
    assert cache.runtime == "onnxruntime"
    handlers = CompareHandlers(AppContext(checkpoints=tmp_path / "checkpoints", cache=cache, max_side=None))
    *_, status, comparison = handlers.run_models(str(tmp_path / "photo.png"), "shapes", ["unet"])
    by_torch = comparison.outputs[0]  # PyTorch while it exports, and the page says so
    assert by_torch.runtime == "torch" and "being prepared in the background" in status
    assert cache.wait_for_exports(timeout=600)
    *_, status, comparison = handlers.run_models(str(tmp_path / "photo.png"), "shapes", ["unet"])
    by_onnx = comparison.outputs[0]
    assert isinstance(cache.get(entry), OnnxModule) and by_onnx.error is None and by_onnx.runtime == "onnxruntime"
    assert "background" not in status
    assert len(np.unique(by_torch.labels)) > 1  # varied labels: the agreement below is not trivial
    assert (by_onnx.labels == by_torch.labels).mean() >= 0.999
    [exported] = (tmp_path / "onnx").glob("*.onnx")  # named by the weights' hash, no partial file left
    assert exported.name.startswith("unet-") and not list((tmp_path / "onnx").glob(".*"))

    # The app restarted: the export in the cache serves at once, nothing is exported again.
    monkeypatch.setattr(export, "export_checkpoint", lambda *a, **k: pytest.fail("exported again"))
    restarted = ModelCache(device="cpu", precision="32-true", runtime="onnxruntime", onnx_dir=tmp_path / "onnx")
    assert isinstance(restarted.get(entry), OnnxModule)


def test_a_failed_export_leaves_the_model_on_pytorch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segzoo import export

    calls = []

    def failing_export(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise export.ExportError("labels differ")

    monkeypatch.setattr(export, "export_checkpoint", failing_export)
    entry = random_unet_checkpoint(tmp_path / "checkpoints")
    label_set = Catalog.scan(tmp_path / "checkpoints").label_set("shapes")
    cache = ModelCache(device="cpu", precision="32-true", runtime="onnxruntime", onnx_dir=tmp_path / "onnx")
    cache.prepare([entry])
    assert cache.wait_for_exports(timeout=60)
    photo = np.zeros((40, 40, 3), np.uint8)
    for _ in range(2):
        output = compare_models(photo, label_set, [entry], cache).outputs[0]
        assert output.error is None and not isinstance(cache.get(entry), export.OnnxModule)
    assert len(calls) == 1 and not list((tmp_path / "onnx").glob("*.onnx"))  # tried once, nothing kept


def test_a_corrupt_onnx_file_is_a_reported_failure_not_a_crash(tmp_path: Path) -> None:
    from segzoo.export import OnnxModule

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(RuntimeError, match="onnxruntime cannot load it"):
        OnnxModule(broken)
