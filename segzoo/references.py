"""Published results to read the leaderboard against.

Only numbers on the same protocol as segzoo's evaluation are listed: CamVid in the SegNet
split (233 test frames at 360x480, 11 classes, label 11 ignored), test-set mIoU. They come
from papers, with networks that were trained on GPUs and, unless the note says otherwise,
with ImageNet-pretrained encoders, so they are context rather than a target.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    miou: float  # fraction, like the leaderboard's scores
    source: str
    note: str = ""


# (data set, registered model) -> the published figure for that architecture.
PUBLISHED: dict[tuple[str, str], Reference] = {
    ("camvid", "segnet"): Reference(
        0.464,
        "Badrinarayanan et al. 2015, SegNet (arXiv:1511.00561), as tabulated by Jégou et al. 2017 (arXiv:1611.09326), Table 2",  # noqa: E501
        "VGG16 encoder pretrained on ImageNet",
    ),
    ("camvid", "fcn8s"): Reference(
        0.570,
        "Long et al. 2015, FCN-8s, as tabulated by Jégou et al. 2017 (arXiv:1611.09326), Table 2",
        "VGG16 pretrained on ImageNet",
    ),
}

# Architectures outside the zoo that mark what training from scratch reaches on CamVid.
FROM_SCRATCH_CONTEXT: dict[str, Reference] = {
    "ENet": Reference(0.513, "Paszke et al. 2016, ENet (arXiv:1606.02147), Table 3", "trained from scratch"),
    "FC-DenseNet103": Reference(
        0.669, "Jégou et al. 2017, The One Hundred Layers Tiramisu (arXiv:1611.09326), Table 2", "trained from scratch"
    ),
}


def published(dataset: str, model: str) -> Reference | None:
    """The published result for ``model`` on ``dataset``, if one on the same protocol exists."""
    return PUBLISHED.get((dataset, model))
