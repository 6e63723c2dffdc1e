"""Fast unit tests of the training pieces: augmentation, batching, schedule, resume state, history."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from segzoo.training.augment import (
    AugmentConfig,
    AugmentParams,
    augment_geometry,
    finish_batch,
    normalize,
    prepare_image,
    prepare_mask,
    sample_params,
    short_side_size,
)
from segzoo.training.data import EpochBatches, shard
from segzoo.training.history import COLUMNS, TIMING_COLUMNS, read_history, write_history
from segzoo.training.loop import TrainConfig, lr_factor
from segzoo.training.run import format_duration
from segzoo.training.state import load_resume_state, restore_rng, resumed_epochs, save_resume_state


def _coded_image(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An image whose red channel encodes the row and green the column, and a mask with
    the same code (row // 8 * 4 + column // 8) so alignment can be checked after warping."""
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    cols = torch.arange(width).view(1, -1).expand(height, width)
    image = torch.stack([rows * 4, cols * 4, torch.full_like(rows, 128)]).to(torch.uint8)
    mask = ((rows // 8) * 4 + cols // 8).to(torch.uint8)
    return image, mask


def test_crop_keeps_image_and_mask_aligned() -> None:
    image, mask = _coded_image(64, 64)
    params = AugmentParams(scale=1.0, offset_y=0.3, offset_x=0.9, flip=True, jitter=(1.0, 1.0, 1.0))
    out_image, out_mask = augment_geometry(image, mask, params, (32, 32), fill=(0, 0, 0), pad_label=255)
    assert out_image.shape == (3, 32, 32) and out_mask.shape == (32, 32)
    rows, cols = out_image[0].long() // 4, out_image[1].long() // 4
    assert torch.equal(out_mask.long(), (rows // 8) * 4 + cols // 8)
    assert torch.all(cols[:, :-1] > cols[:, 1:])  # flipped: columns decrease left to right


def test_padding_uses_fill_colour_and_pad_label() -> None:
    image, mask = _coded_image(16, 16)
    params = AugmentParams(scale=1.0, offset_y=0.5, offset_x=0.0, flip=False, jitter=(1.0, 1.0, 1.0))
    out_image, out_mask = augment_geometry(image, mask, params, (32, 24), fill=(1, 2, 3), pad_label=255)
    padded = out_mask == 255
    assert padded.sum() == 32 * 24 - 16 * 16
    assert torch.equal(
        out_image[:, padded], torch.tensor([[1], [2], [3]], dtype=torch.uint8).expand(3, int(padded.sum()))
    )
    assert set(out_mask[~padded].unique().tolist()) <= set(mask.unique().tolist())


def test_scaling_never_invents_labels() -> None:
    image, mask = _coded_image(40, 56)
    for scale in (0.5, 0.73, 1.6):
        params = AugmentParams(scale=scale, offset_y=0.2, offset_x=0.7, flip=False, jitter=(1.0, 1.0, 1.0))
        _, out_mask = augment_geometry(image, mask, params, (32, 32), fill=(0, 0, 0), pad_label=255)
        assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist()) | {255}


def test_sample_params_depend_only_on_seed_epoch_index() -> None:
    config = AugmentConfig(size=(32, 32), scale=(0.5, 2.0))
    a = sample_params(config, seed=3, epoch=2, index=7)
    assert a == sample_params(config, seed=3, epoch=2, index=7)
    assert a != sample_params(config, seed=3, epoch=3, index=7)
    assert a != sample_params(config, seed=4, epoch=2, index=7)
    assert 0.5 <= a.scale <= 2.0 and all(0.8 <= j <= 1.2 for j in a.jitter)
    off = sample_params(AugmentConfig(size=(32, 32), enabled=False), 0, 0, 0)
    assert off.scale == 1.0 and not off.flip and off.jitter == (1.0, 1.0, 1.0)


def test_prepare_resizes_to_short_side_and_masks_by_nearest() -> None:
    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    mask = np.random.default_rng(1).integers(0, 4, (90, 120), dtype=np.uint8)
    prepared = prepare_image(image, short_side=45)
    assert prepared.shape == (3, 45, 60) and prepared.dtype == torch.uint8
    assert short_side_size(90, 120, None) == (90, 120)
    small_mask = prepare_mask(mask, (45, 60))
    assert set(small_mask.unique().tolist()) <= {0, 1, 2, 3}
    assert torch.equal(prepare_image(image, None), torch.from_numpy(image).permute(2, 0, 1))


def test_normalize_and_identity_jitter() -> None:
    images = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(normalize(images, mean, std), expected)
    assert torch.equal(finish_batch(images, torch.ones(2, 3), mean, std), normalize(images, mean, std))
    jittered = finish_batch(images, torch.tensor([[1.2, 0.8, 1.1], [0.9, 1.0, 1.0]]), mean, std)
    assert jittered.shape == images.shape and not torch.equal(jittered, normalize(images, mean, std))


def test_epoch_batches_shard_without_overlap_and_reshuffle() -> None:
    ranks = [EpochBatches(21, batch_size=4, seed=0, rank=r, world_size=2) for r in range(2)]
    seen = []
    for sampler in ranks:
        sampler.set_epoch(1)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 2  # 10 samples per rank -> 2 full batches of 4
        assert all(len(b) == 4 and all(k.epoch == 1 for k in b) for b in batches)
        seen += [k.index for b in batches for k in b]
    assert len(seen) == len(set(seen)) == 16
    first = [k.index for b in EpochBatches(21, 4, seed=0) for k in b]
    sampler = EpochBatches(21, 4, seed=0)
    sampler.set_epoch(1)
    assert first != [k.index for b in sampler for k in b]
    assert len(EpochBatches(21, 4, seed=0, limit=2)) == 2
    with pytest.raises(ValueError, match="too few"):
        EpochBatches(3, 4, seed=0)


def test_validation_shards_cover_every_image_once() -> None:
    parts = [shard(range(11), r, 3) for r in range(3)]
    assert sorted(i for p in parts for i in p) == list(range(11))


def test_lr_schedule() -> None:
    assert lr_factor(0, 100, 10, "poly") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "poly") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "poly") == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, "poly") == pytest.approx(0.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(80, 100, 10, "none") == 1.0
    values = [lr_factor(s, 100, 10, "poly") for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_config_defaults_per_dataset() -> None:
    camvid = TrainConfig(model="unet", dataset="camvid", data_root="x").resolved()
    assert camvid.size == (360, 480) and camvid.short_side == 360 and camvid.batch_size == 8
    assert camvid.out.endswith("camvid/unet") and camvid.lr == 1e-3
    interim = TrainConfig(model="unet", dataset="camvid", data_root="x", size=(180, 240)).resolved()
    assert interim.short_side == 180
    voc = TrainConfig(model="unet", dataset="voc2012", data_root="x").resolved()
    assert voc.size == (512, 512) and voc.short_side == 0
    with pytest.raises(ValueError, match="--size"):
        TrainConfig(model="unet", dataset="folder", data_root="x").resolved()
    with pytest.raises(ValueError, match="--scale"):
        TrainConfig(model="unet", dataset="camvid", data_root="x", scale=(2.0, 1.0)).resolved()


def test_resume_state_round_trip(tmp_path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    info = {"best_val_miou": 0.5, "best_epoch": 3, "train_seconds": 1.5, "options": {"seed": 0}}
    torch.manual_seed(123)
    np.random.seed(5)
    save_resume_state(tmp_path, 4, model.state_dict(), optimizer.state_dict(), {"step": 12}, info)
    expected_random = (torch.rand(3), np.random.rand(2))
    torch.manual_seed(999)
    np.random.seed(6)
    state = load_resume_state(tmp_path)
    restore_rng(state.rng["tensors"], state.rng["plain"])
    assert torch.equal(torch.rand(3), expected_random[0])
    assert np.array_equal(np.random.rand(2), expected_random[1])
    assert state.epoch == 4 and state.scheduler == {"step": 12} and state.info == info
    for k, v in model.state_dict().items():
        assert torch.equal(state.model[k], v)
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(state.optimizer)
    for a, b in zip(fresh.state_dict()["state"].values(), optimizer.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in b)
    assert fresh.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]


def test_resume_state_detects_tampering(tmp_path) -> None:
    from segzoo.checkpoint import CheckpointError

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = save_resume_state(tmp_path, 1, model.state_dict(), optimizer.state_dict(), {"step": 1}, {"x": 1})
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="state.safetensors"):
        load_resume_state(tmp_path)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="state.safetensors"):
        load_resume_state(tmp_path)


def test_resume_without_epochs_keeps_the_runs_own(tmp_path) -> None:
    """A run started for 7 epochs resumes for 7, not the data set's default: its learning-rate
    schedule was laid out for them. --epochs still extends it; a new run takes the default."""
    from segzoo.checkpoint import CheckpointError
    from segzoo.instance.train import InstanceTrainConfig

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    out = tmp_path / "run"
    assert resumed_epochs(out) is None
    info = {"options": {"epochs": 7, "seed": 0}}
    path = save_resume_state(out, 2, model.state_dict(), optimizer.state_dict(), {"step": 2}, info)
    assert resumed_epochs(out) == 7

    def semantic(**options):
        return TrainConfig(model="unet", dataset="camvid", data_root="x", out=str(out), **options).resolved()

    default = TrainConfig(model="unet", dataset="camvid", data_root="x").resolved().epochs
    assert default != 7
    assert semantic(resume=True).epochs == 7
    assert semantic(resume=True, epochs=9).epochs == 9
    assert semantic().epochs == default
    instance = InstanceTrainConfig(model="maskrcnn_r50_fpn", dataset="fruits_nuts", data_root="x", out=str(out))
    assert replace(instance, resume=True).resolved().epochs == 7
    assert instance.resolved().epochs != 7

    path.write_bytes(path.read_bytes()[:100])  # truncated: a clear error, not the default
    with pytest.raises(CheckpointError, match="truncated"):
        semantic(resume=True)


def test_history_round_trip(tmp_path) -> None:
    rows = [
        {
            "epoch": 1,
            "train_loss": 0.5,
            "val_loss": 0.4,
            "val_miou": 1 / 3,
            "lr": 1e-3,
            "seconds": 2.0,
            "epochs_per_min": 30.0,
        },  # fmt: skip
        {
            "epoch": 2,
            "train_loss": 0.25,
            "val_loss": math.nan,
            "val_miou": 0.5,
            "lr": 5e-4,
            "seconds": 1.0,
            "epochs_per_min": 60.0,
        },  # fmt: skip
    ]
    write_history(tmp_path, rows)
    header = (tmp_path / "history.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["epoch", "train_loss", "val_loss", "val_miou", "lr", "seconds", "epochs_per_min"]
    assert header == COLUMNS and TIMING_COLUMNS <= set(COLUMNS)
    back = read_history(tmp_path)
    assert back[0]["val_miou"] == 1 / 3 and back[1]["epoch"] == 2 and math.isnan(back[1]["val_loss"])


class _Masks:
    """The part of a data set that median-frequency weighting reads."""

    def __init__(self, masks: list[np.ndarray], num_classes: int) -> None:
        from segzoo.data import DatasetInfo

        self.masks = masks
        self.info = DatasetInfo("toy", [str(i) for i in range(num_classes)], [(0, 0, 0)] * num_classes, 255)

    def __len__(self) -> int:
        return len(self.masks)

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((*self.masks[index].shape, 3), np.uint8), self.masks[index]


def test_median_frequency_weights() -> None:
    from segzoo.training.loop import class_weights_for

    # Image 1: 6 pixels of class 0, 2 of class 1 (+ 2 ignored); image 2: 4 of class 0, 4 of class 2.
    first = np.array([[0, 0, 0, 0, 0], [0, 1, 1, 255, 255]], dtype=np.uint8)
    second = np.array([[0, 0, 0, 0], [2, 2, 2, 2]], dtype=np.uint8)
    config = TrainConfig(model="unet", dataset="folder", data_root="x", class_weights="median")
    weights = class_weights_for(config, _Masks([first, second], 4), progress=False)
    # f0 = 10 / 16, f1 = 2 / 8, f2 = 4 / 8; median 0.5; class 3 never occurs -> weight 0.
    assert weights == pytest.approx([0.5 / (10 / 16), 0.5 / 0.25, 1.0, 0.0])
    assert class_weights_for(TrainConfig(model="unet", dataset="folder", data_root="x"), None, False) is None


@pytest.mark.parametrize(
    "seconds, text",
    [(12.4, "12 s"), (29, "29 s"), (31, "1 min"), (59 * 60, "59 min"), (3600, "1 h 00 min"), (11_100, "3 h 05 min")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
