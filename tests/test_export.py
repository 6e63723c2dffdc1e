"""`segzoo export`: ONNX models that onnxruntime runs with PyTorch's labels, for every
architecture family, with dynamic sizes and the pre-processing in their metadata.

Random weights with a fixed seed (:func:`segzoo.export.random_weights`, which keeps the
labels varied: every parity check also asserts that several classes are predicted, so a
model that predicts one class everywhere cannot pass by accident)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from PIL import Image

import segzoo
from segzoo.checkpoint import save_checkpoint
from segzoo.cli import main
from segzoo.export import (
    ExportError,
    OnnxSegmenter,
    adaptive_avg_pool2d,
    export_checkpoint,
    export_onnx,
    random_weights,
    read_metadata,
    verify_semantic,
)
from segzoo.inference import inference_scale, predict_mask, read_image
from segzoo.models.smp_factory import build_smp

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("camvid-*.jpg"))
CAMVID = {
    "task": "semantic",
    "num_classes": 11,
    "class_names": ["sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
                    "pedestrian", "bicyclist"],
    "palette": [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
                [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]],
    "ignore_index": 11,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "dataset": "camvid",
    # Frames are segmented at a short side of 96 (the training scale) and scored at 360x480.
    "short_side": 96,
}  # fmt: skip


def camvid_config(model: str, **kwargs: object) -> dict:
    return {**CAMVID, "model": model, "model_kwargs": kwargs}


# One small model per architecture family. PSPNet and DeepLabV3+ use ResNet-18 in place of the
# registry's ResNet-50: the same smp decoders (PSPNet's pooling is what needs the stand-in),
# a third of the export time.
FAMILIES = {
    "unet": lambda: segzoo.create_model("unet", num_classes=11, base_channels=8),
    "unet_resnet34": lambda: segzoo.create_model("unet_resnet34", num_classes=11),
    "segnet": lambda: segzoo.create_model("segnet", num_classes=11),
    "fcn8s": lambda: segzoo.create_model("fcn8s", num_classes=11, fc_channels=64),
    "pspnet": lambda: build_smp(smp.PSPNet, "resnet18", 11, output_stride=8, encoder_depth=5, upsampling=8),
    # The stride the CamVid zoo trains and serves PSPNet at (benchmarks/train_zoo.py).
    "pspnet_os16": lambda: build_smp(smp.PSPNet, "resnet18", 11, output_stride=16, encoder_depth=5, upsampling=16),
    "deeplabv3plus": lambda: build_smp(smp.DeepLabV3Plus, "resnet18", 11),
}


def example_frames() -> list[np.ndarray]:
    assert len(EXAMPLES) >= 2, "the shipped CamVid example frames are missing"
    return [read_image(p) for p in EXAMPLES]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_onnxruntime_labels_match_pytorch_on_the_example_frames(family, tmp_path) -> None:
    model = random_weights(FAMILIES[family](), seed=0).eval()
    reference = copy.deepcopy(model)  # export_onnx swaps modules in place
    config = camvid_config(family)
    path = export_onnx(model, config, tmp_path / f"{family}.onnx")

    frames = example_frames()
    labels = [predict_mask(reference, f, config, max_side=inference_scale(f, config)) for f in frames]
    assert all(len(np.unique(x)) >= 3 for x in labels), "degenerate random model: parity would prove nothing"
    agreement = verify_semantic(reference, path, frames, config)
    assert agreement >= 0.999, f"{family}: {100 * agreement:.3f}% of the pixels agree"

    # Another size and a batch of two, neither of them traced: logits match too.
    x = torch.randn(2, 3, 77, 109)
    with torch.no_grad():
        expected = reference(x).numpy()
    got = OnnxSegmenter(path).logits(x.numpy())
    assert got.shape == expected.shape == (2, 11, 77, 109)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.999


def test_adaptive_pooling_stand_in_equals_pytorch() -> None:
    x = torch.randn(2, 5, 45, 61)
    for bins in (1, 2, 3, 6):
        torch.testing.assert_close(adaptive_avg_pool2d(x, bins, bins), F.adaptive_avg_pool2d(x, bins))
    torch.testing.assert_close(adaptive_avg_pool2d(x, 4, 7), F.adaptive_avg_pool2d(x, (4, 7)))


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A tiny UNet checkpoint exported through the command line."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = random_weights(segzoo.create_model("unet", num_classes=11, base_channels=8), seed=1)
    checkpoint = save_checkpoint(root / "unet", model, camvid_config("unet", base_channels=8))
    out = root / "unet.onnx"
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    return checkpoint, out, camvid_config("unet", base_channels=8)


def test_metadata_records_normalisation_classes_and_palette(tiny_export) -> None:
    checkpoint, path, config = tiny_export
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    meta = read_metadata(path)
    assert meta["mean"] == config["mean"] and meta["std"] == config["std"]
    assert meta["class_names"] == config["class_names"] and meta["palette"] == config["palette"]
    assert meta["num_classes"] == 11 and meta["ignore_index"] == 11 and meta["input_multiple"] == 16
    assert meta["model"] == "unet" and meta["short_side"] == 96
    raw = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(raw["mean"]) == config["mean"]  # plain JSON strings, readable by any runtime
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert [proto.graph.input[0].name, proto.graph.output[0].name] == ["image", "logits"]
    assert dims == ["batch", "", "height", "width"]
    assert [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [
        "batch",
        11,
        "height",
        "width",
    ]


def test_segmenter_uses_the_metadata_like_segzoo_predict(tiny_export) -> None:
    checkpoint, path, config = tiny_export
    model, _ = segzoo.load(checkpoint)
    frame = example_frames()[0]
    expected = predict_mask(model, frame, config, max_side=inference_scale(frame, config))
    labels = OnnxSegmenter(path).predict_mask(frame)  # scale and normalisation from the metadata only
    assert labels.shape == frame.shape[:2] and labels.dtype == np.uint8
    assert (labels == expected).mean() >= 0.999


def test_a_wrong_export_is_refused(tiny_export, tmp_path, monkeypatch) -> None:
    checkpoint, _, _ = tiny_export
    # Labels shifted by one class stand in for a broken export: the check must catch it.
    original = OnnxSegmenter.predict_labels
    monkeypatch.setattr(
        OnnxSegmenter, "predict_labels", lambda self, x, out_size=None: (original(self, x, out_size) + 1) % 11
    )
    with pytest.raises(ExportError, match="agree with PyTorch's on only"):
        export_checkpoint(checkpoint, out=tmp_path / "bad.onnx")


def test_export_report_and_default_path(tiny_export, tmp_path) -> None:
    import shutil

    checkpoint, _, _ = tiny_export
    copy = shutil.copytree(checkpoint, tmp_path / "ckpt")
    report = export_checkpoint(copy)
    assert report["onnx"] == str(copy / "model.onnx") and (copy / "model.onnx").is_file()
    assert report["label_agreement"] >= 0.999 and report["megabytes"] > 0
    assert read_metadata(copy / "model.onnx")["weights_sha256"]


def test_unknown_format_is_a_clear_error(tiny_export, capsys) -> None:
    checkpoint, _, _ = tiny_export
    with pytest.raises(SystemExit):
        main(["export", str(checkpoint), "--format", "tflite"])
    assert "invalid choice" in capsys.readouterr().err


def test_detectron2_maskrcnn_export_says_what_is_supported(tmp_path) -> None:
    from segzoo.models.maskrcnn.model import MaskRCNN

    model = MaskRCNN(torch.nn.Identity(), backend="detectron2")
    config = {"model": "maskrcnn_r50_fpn", "task": "instance", "num_classes": 3, "class_names": ["a", "b", "c"]}
    with pytest.raises(ExportError, match="torchvision backend only"):
        export_onnx(model, config, tmp_path / "m.onnx")


@pytest.mark.slow
def test_maskrcnn_torchvision_exports_and_matches(tmp_path) -> None:
    torch.manual_seed(0)
    model = segzoo.create_model("maskrcnn_r50_fpn", num_classes=3, min_size=128, max_size=128).eval()
    config = {"model": "maskrcnn_r50_fpn", "model_kwargs": {"min_size": 128, "max_size": 128}, "task": "instance",
              "num_classes": 3, "class_names": ["a", "b", "c"], "dataset": "shapes"}  # fmt: skip
    checkpoint = save_checkpoint(tmp_path / "mrcnn", model, config, half=False)
    # 256x192 scales to exactly 128x96 inside the model. (At other sizes the ONNX graph resizes by
    # the scale factor and PyTorch to the rounded size: a sub-pixel shift, which a trained model
    # shrugs off but which reorders the near-tied boxes of a random one.)
    examples = tmp_path / "examples"
    examples.mkdir()
    photo = cv2.resize(np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8), (256, 192))
    Image.fromarray(photo).save(examples / "shapes-photo.png")
    report = export_checkpoint(checkpoint, out=tmp_path / "mrcnn.onnx", examples=examples)
    check = report["detections"]
    assert check["detections"] > 0 and check["same_count"] and check["labels_equal"]
    assert check["max_score_difference"] < 1e-3 and check["mask_agreement"] >= 0.999
    meta = read_metadata(tmp_path / "mrcnn.onnx")
    assert meta["task"] == "instance" and meta["class_names"] == ["a", "b", "c"]
