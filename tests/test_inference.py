from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segzoo
from segzoo.inference import colorize, overlay, predict_mask, read_image, resize_max_side


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_read_image_from_every_source(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (9, 13, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    path.write_bytes(_png_bytes(rgb))
    for source in (path, str(path), path.read_bytes(), Image.open(path), rgb):
        assert np.array_equal(read_image(source), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    assert np.array_equal(read_image(_png_bytes(rgba)), rgb)
    grey = rgb[..., 0]
    assert read_image(_png_bytes(grey)).shape == (9, 13, 3)


def test_corrupt_and_truncated_images_raise_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        read_image(b"this is not an image")
    truncated = tmp_path / "t.png"
    truncated.write_bytes(_png_bytes(np.zeros((64, 64, 3), np.uint8))[:60])
    with pytest.raises(ValueError, match="t.png"):
        read_image(truncated)
    with pytest.raises(ValueError, match="file not found"):
        read_image(tmp_path / "missing.jpg")


def test_huge_image_rejected_from_header_before_decoding() -> None:
    # A 20000 x 20000 PNG header; decoding it would need 1.2 GB.
    big = Image.new("1", (20000, 20000))
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    with pytest.raises(ValueError, match="too large"):
        read_image(buf.getvalue())
    # Under Pillow's own limit but over ours: our check, from the header.
    medium = io.BytesIO()
    Image.new("1", (9000, 9000)).save(medium, format="PNG")
    with pytest.raises(ValueError, match="9000x9000 is too large"):
        read_image(medium.getvalue(), max_pixels=50_000_000)


def test_resize_max_side_keeps_aspect() -> None:
    image = np.zeros((300, 1200, 3), np.uint8)
    assert resize_max_side(image, 600).shape == (150, 600, 3)
    assert resize_max_side(image, None) is image


def test_predict_mask_has_input_size() -> None:
    model = segzoo.create_model("unet", num_classes=4, base_channels=4, depth=2).eval()
    config = {"mean": [0.5] * 3, "std": [0.25] * 3}
    image = np.random.default_rng(0).integers(0, 255, (75, 103, 3), dtype=np.uint8)
    mask = predict_mask(model, image, config, max_side=40)
    assert mask.shape == (75, 103) and mask.dtype == np.uint8 and mask.max() < 4


def test_colorize_and_overlay() -> None:
    palette = [(0, 0, 0), (255, 0, 0)]
    mask = np.array([[0, 1], [1, 11]], np.uint8)  # 11 = ignored -> black
    colours = colorize(mask, palette)
    assert colours[0, 1].tolist() == [255, 0, 0] and colours[1, 1].tolist() == [0, 0, 0]
    image = np.full((2, 2, 3), 100, np.uint8)
    assert np.array_equal(overlay(image, mask, palette, alpha=0.0), image)
    assert overlay(image, mask, palette, alpha=0.5)[0, 1].tolist() == [178, 50, 50]
