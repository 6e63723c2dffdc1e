"""Per-data-set training defaults: input size, resizing policy, augmentation, batch, schedule.

``short_side`` is the scale at which a data set is used: every image is first resized so
that its shorter side has that many pixels (``None``: images keep their own size), and
training then crops ``size`` windows at a random scale around it. Validation and
``segzoo evaluate`` resize the same way, so a model is scored at the scale it was trained at
(or the one ``segzoo tune-scale`` chose on the validation split);
the scores are always computed on the full-resolution label masks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetDefaults:
    size: tuple[int, int] | None  # training crop (height, width); None: --size is required
    resize: bool  # resize so the short side is min(size) before cropping (else keep image size)
    scale: tuple[float, float]  # random scale range of the training crops
    batch_size: int
    epochs: int
    lr: float


DATASET_DEFAULTS: dict[str, DatasetDefaults] = {
    # SegNet/FC-DenseNet protocol: full 360x480 frames, labels at full resolution.
    "camvid": DatasetDefaults(size=(360, 480), resize=True, scale=(0.5, 2.0), batch_size=8, epochs=200, lr=1e-3),
    # Pet photos vary in size (about 500x375): short side to 256, 256x256 crops.
    "oxford_pet": DatasetDefaults(size=(256, 256), resize=True, scale=(0.75, 1.5), batch_size=16, epochs=60, lr=1e-3),
    # VOC protocol (DeepLab): original size, random scale 0.5-2, 512x512 crops padded with ignore.
    "voc2012": DatasetDefaults(size=(512, 512), resize=False, scale=(0.5, 2.0), batch_size=8, epochs=100, lr=1e-3),
    # Your own data: give --size; images are resized to it (short side) like CamVid.
    "folder": DatasetDefaults(size=None, resize=True, scale=(0.5, 2.0), batch_size=8, epochs=100, lr=1e-3),
}

FALLBACK_DEFAULTS = DATASET_DEFAULTS["folder"]


def dataset_defaults(name: str) -> DatasetDefaults:
    return DATASET_DEFAULTS.get(name, FALLBACK_DEFAULTS)
