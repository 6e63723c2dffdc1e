"""Photos as phones and tools make them (issue 14): EXIF orientation, 16-bit and float
images, animations, upload names in messages, one-line logs for user errors, and the
app's clean-up of uploads and per-session results.

The photos are made here; a tiny deterministic model turns them into labels, so "same
labels as the upright 8-bit twin" is checked end to end, not only on decoded pixels.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from segzoo.app.catalog import LabelSet
from segzoo.app.compare import read_ground_truth
from segzoo.inference import orient, predict_mask, read_image, read_photo

CONFIG = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
# The stored pixels that EXIF orientation o turns upright are the upright photo turned by
# the inverse operation: orientations 6 and 8 undo each other, the others themselves.
INVERSE = {2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


class ColourModel(nn.Module):
    """Three classes by colour (a fixed 1x1 convolution): labels depend on where each colour
    is, so a photo read sideways or washed out gives other labels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.5]])[..., None, None])
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def upright_photo(h: int = 48, w: int = 64) -> np.ndarray:
    """Blocks of colour, 8-pixel aligned (so JPEG keeps them), none symmetric."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((8, 8, 1), np.uint8))


def save_with_orientation(path: Path, upright: np.ndarray, orientation: int, **save: object) -> Path:
    image = Image.fromarray(orient(upright, INVERSE[orientation]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, **save)
    return path


def labels_of(image: np.ndarray) -> np.ndarray:
    return predict_mask(ColourModel().eval(), image, CONFIG, max_side=None)


# -- EXIF orientation ------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_rotated_photo_gives_the_labels_of_its_upright_twin(tmp_path: Path, orientation: int) -> None:
    upright = upright_photo()
    path = save_with_orientation(tmp_path / "phone.png", upright, orientation)
    assert np.asarray(Image.open(path)).shape[:2] != upright.shape[:2] or orientation < 5  # stored turned
    photo = read_photo(path)
    assert photo.orientation == orientation
    np.testing.assert_array_equal(photo.pixels, upright)
    np.testing.assert_array_equal(labels_of(read_image(path)), labels_of(upright))


def test_exif_rotated_jpeg_as_a_phone_writes_it(tmp_path: Path) -> None:
    upright = upright_photo()
    Image.fromarray(upright).save(tmp_path / "upright.jpg", quality=95)
    rotated = save_with_orientation(tmp_path / "phone.jpg", upright, 6, quality=95)
    pixels = read_image(rotated)
    assert pixels.shape == upright.shape
    agreement = (labels_of(pixels) == labels_of(read_image(tmp_path / "upright.jpg"))).mean()
    assert agreement > 0.98, agreement
    assert (labels_of(np.asarray(Image.open(rotated).convert("RGB"))).shape) != labels_of(upright).shape


# -- 16-bit and float images -----------------------------------------------------------------------


def test_16_bit_png_gives_the_labels_of_its_8_bit_twin(tmp_path: Path) -> None:
    upright = upright_photo()
    # Colour 16-bit PNG (Pillow cannot write one; OpenCV can, in BGR order).
    ok, encoded = cv2.imencode(".png", (upright.astype(np.uint16) * 257)[..., ::-1])
    assert ok
    (tmp_path / "colour16.png").write_bytes(encoded.tobytes())
    np.testing.assert_array_equal(read_image(tmp_path / "colour16.png"), upright)
    # Grey 16-bit PNG: Pillow's own RGB conversion turns it pure white.
    grey = upright[..., 0]
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    assert np.asarray(Image.open(tmp_path / "grey16.png").convert("RGB")).min() == 255  # the bug being fixed
    decoded = read_image(tmp_path / "grey16.png")
    np.testing.assert_array_equal(decoded, np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(labels_of(decoded), labels_of(np.repeat(grey[..., None], 3, axis=2)))
    assert len(np.unique(labels_of(decoded))) > 1


def test_float_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    grey = upright_photo()[..., 1]
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "unit.tiff")
    photo = read_photo(tmp_path / "unit.tiff")
    np.testing.assert_array_equal(photo.pixels[..., 0], grey)
    assert photo.notes == []
    Image.fromarray(grey.astype(np.float32) * 4 - 100).save(tmp_path / "wide.tiff")
    photo = read_photo(tmp_path / "wide.tiff", name="wide.tiff")
    assert photo.pixels.min() == 0 and photo.pixels.max() == 255
    assert "wide.tiff: floating-point pixels" in photo.notes[0] and "stretched" in photo.notes[0]


# -- animations and names --------------------------------------------------------------------------


def test_animated_image_uses_its_first_frame_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = np.zeros((16, 24, 3), np.uint8)
    first[:, :12] = (255, 0, 0)
    second = np.full((16, 24, 3), (0, 0, 255), np.uint8)
    frames = [Image.fromarray(first), Image.fromarray(second)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    photo = read_photo(tmp_path / "anim.gif", name="anim.gif")
    np.testing.assert_array_equal(photo.pixels, first)
    assert photo.notes == ["anim.gif is animated (2 frames): the first frame was used"]
    with caplog.at_level(logging.WARNING, logger="segzoo.inference"):
        read_image(tmp_path / "anim.gif")
    assert "animated (2 frames)" in caplog.text


def test_errors_name_the_upload_not_the_server_path(tmp_path: Path) -> None:
    upload = tmp_path / "gradio" / "0a1b2c3d4e" / "truncated.jpg"
    upload.parent.mkdir(parents=True)
    buffer = io.BytesIO()
    Image.fromarray(upright_photo()).save(buffer, format="JPEG")
    upload.write_bytes(buffer.getvalue()[:300])
    with pytest.raises(ValueError) as error:
        read_photo(upload, name=upload.name)
    assert str(error.value).startswith("truncated.jpg: not a readable image")
    assert "0a1b2c3d4e" not in str(error.value) and str(tmp_path) not in str(error.value)


# -- ground truth uploaded with a rotated photo ----------------------------------------------------

SHAPES = LabelSet("shapes", ["background", "square", "disk"], [(0, 0, 0), (230, 25, 75), (60, 180, 75)], 255)


def test_ground_truth_is_turned_like_the_photo(tmp_path: Path) -> None:
    labels = np.zeros((30, 40), np.uint8)
    labels[2:10, 5:30] = 1
    labels[20:, :8] = 2
    # A mask with its own EXIF orientation (saved by a phone app): turned by it.
    save_with_orientation(tmp_path / "own.png", labels, 6)
    np.testing.assert_array_equal(read_ground_truth(tmp_path / "own.png", SHAPES, (30, 40)), labels)
    # A mask drawn on the photo's stored pixels, for a photo with orientation 6: turned alike.
    Image.fromarray(orient(labels, INVERSE[6])).save(tmp_path / "stored.png")
    notes: list[str] = []
    np.testing.assert_array_equal(read_ground_truth(tmp_path / "stored.png", SHAPES, (30, 40), 6, notes), labels)
    assert "turned by the photo's EXIF orientation 6" in notes[0]
    # Already upright: used as it is.
    Image.fromarray(labels).save(tmp_path / "upright.png")
    np.testing.assert_array_equal(read_ground_truth(tmp_path / "upright.png", SHAPES, (30, 40), 6), labels)
    with pytest.raises(ValueError, match=r"^ground-truth mask upright\.png is 40x30 but the photo is 30x30"):
        read_ground_truth(tmp_path / "upright.png", SHAPES, (30, 30), 6)


# -- the app: uploads reach the decoder untouched, user errors are one log line --------------------


def make_context(tmp_path: Path):  # noqa: ANN201 - AppContext
    """The app's context over one "shapes" checkpoint, served by :class:`ColourModel`
    (content-sensitive, deterministic) instead of the checkpoint's random weights."""
    from segzoo.app.catalog import ModelCache
    from segzoo.app.context import AppContext
    from segzoo.checkpoint import save_checkpoint

    config = {
        "model": "unet", "model_kwargs": {"base_channels": 4}, "task": "semantic", "num_classes": 3,
        "class_names": SHAPES.class_names, "palette": [list(c) for c in SHAPES.palette], "ignore_index": 255,
        **CONFIG, "dataset": "shapes", "dataset_options": {},
    }  # fmt: skip
    save_checkpoint(tmp_path / "checkpoints" / "shapes" / "unet", ColourModel(), config)
    cache = ModelCache(device="cpu", loader=lambda directory, device: (ColourModel().eval(), config))
    return AppContext(checkpoints=tmp_path / "checkpoints", cache=cache, max_side=None)


def compare_handlers(tmp_path: Path):  # noqa: ANN201 - CompareHandlers
    from segzoo.app.tabs.compare import CompareHandlers

    return CompareHandlers(make_context(tmp_path))


def test_app_segments_rotated_and_16_bit_uploads_like_their_twins(tmp_path: Path) -> None:
    compare = compare_handlers(tmp_path).compare
    upright = upright_photo()
    Image.fromarray(upright).save(tmp_path / "upright.png")
    save_with_orientation(tmp_path / "rotated.png", upright, 8)
    grey = upright[..., 2]
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(tmp_path / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")

    def masks(path: Path) -> list[np.ndarray]:
        gallery, *_ = compare(str(path), "shapes", ["unet"], 1.0, None, 0.5)  # opacity 1: the colour masks
        return [np.asarray(image) for image, _ in gallery]

    for twin, photo in (("upright.png", "rotated.png"), ("grey8.png", "grey16.png")):
        expected, got = masks(tmp_path / twin), masks(tmp_path / photo)
        assert got[0].shape == expected[0].shape == (48, 64, 3)
        assert len(np.unique(expected[0].reshape(-1, 3), axis=0)) > 1  # labels that depend on the photo
        np.testing.assert_array_equal(got[0], expected[0])


def test_upload_component_hands_over_the_original_file(tmp_path: Path) -> None:
    from gradio.data_classes import FileData

    from segzoo.app.tabs.compare import photo_input

    Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(tmp_path / "deep.png")
    component = photo_input(label="Photo")
    # Untouched: with an image mode Gradio would re-encode it via convert(), clipping to white.
    assert component.preprocess(FileData(path=str(tmp_path / "deep.png"), orig_name="deep.png")) == str(
        tmp_path / "deep.png"
    )
    assert read_image(tmp_path / "deep.png").max() == round(30000 / 257)


def test_user_errors_are_one_log_line_and_name_the_upload(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import gradio as gr

    compare = compare_handlers(tmp_path).compare
    upload = tmp_path / "gradio" / "5f9e8d7c6b" / "truncated.jpg"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        with pytest.raises(gr.Error) as error:
            compare(str(upload), "shapes", ["unet"], 0.5, None, 0.5)
    message = str(error.value.message)
    assert message.startswith("truncated.jpg: not a readable image") and "5f9e8d7c6b" not in message
    assert error.value.print_exception is False  # Gradio prints no traceback for it
    records = [r for r in caplog.records if "truncated.jpg" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING and records[0].exc_info is None
    assert "\n" not in records[0].getMessage() and "5f9e8d7c6b" not in records[0].getMessage()


def test_app_cleans_up_uploads_and_expires_per_session_results(tmp_path: Path) -> None:
    import gradio as gr

    from segzoo.app.store import COMPARISON_TTL_SECONDS
    from segzoo.app.ui import DELETE_CACHE, build_app

    demo = build_app(make_context(tmp_path))
    frequency, age = demo.delete_cache
    assert (frequency, age) == DELETE_CACHE and 0 < frequency <= age <= 24 * 3600
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State)]
    assert states and all(s.time_to_live == COMPARISON_TTL_SECONDS < float("inf") for s in states)


def test_comparisons_are_kept_in_one_bounded_store_not_per_session(tmp_path: Path) -> None:
    import gradio as gr

    from segzoo.app.compare import Comparison
    from segzoo.app.store import ComparisonStore

    handlers = compare_handlers(tmp_path)
    Image.fromarray(upright_photo()).save(tmp_path / "p.png")
    *_, key = handlers.compare(str(tmp_path / "p.png"), "shapes", ["unet"], 0.5, None, 0.5)
    assert isinstance(key, str) and len(key) == 32  # the session keeps a key, not the arrays
    rerender = handlers.rerender
    gallery = rerender(key, 1.0, 0.5)
    assert len(gallery) == 1 and np.asarray(gallery[0][0]).shape == (48, 64, 3)
    assert isinstance(rerender("gone", 1.0, 0.5), type(gr.skip()))

    photo = np.zeros((100, 100, 3), np.uint8)  # 30 kB each
    store = ComparisonStore(max_bytes=10**9, max_items=4)
    keys = [store.put(Comparison(image=photo, label_set=SHAPES)) for _ in range(10)]
    assert len(store) == 4 and store.get(keys[0]) is None and store.get(keys[-1]) is not None
    store = ComparisonStore(max_bytes=100_000, max_items=100)
    keys = [store.put(Comparison(image=photo, label_set=SHAPES)) for _ in range(10)]
    assert len(store) == 3 and store.nbytes <= 100_000
    big = ComparisonStore(max_bytes=1, max_items=100)
    assert big.get(big.put(Comparison(image=photo, label_set=SHAPES))) is not None  # the newest always stays


def test_served_app_returns_freed_memory_to_the_system() -> None:
    import ctypes
    import sys

    from segzoo.app.server import SESSION_CAPACITY
    from segzoo.devices import return_freed_memory_to_the_system

    try:
        has_mallopt = hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        has_mallopt = False
    if not has_mallopt:
        pytest.skip("not glibc: its allocator has no mmap threshold to fix")
    assert sys.platform.startswith("linux") and return_freed_memory_to_the_system() is True
    assert 0 < SESSION_CAPACITY < 10000  # below Gradio's default, which holds ~800 MB of sessions
