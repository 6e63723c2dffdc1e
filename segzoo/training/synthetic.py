"""A tiny synthetic data set in the ``folder`` layout, for smoke tests and demos.

Images show ellipses and rectangles of three classes on a textured background; each class
has its own colour (with noise), so a small network can learn it in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {"background": [0, 0, 0], "disc": [220, 20, 60], "box": [30, 144, 255], "bar": [255, 200, 0]}
_COLOURS = np.array([[90, 110, 90], [200, 60, 60], [60, 90, 200], [220, 200, 60]], dtype=np.float32)


def make_synthetic_folder(
    root: str | Path, num_train: int = 8, num_val: int = 4, size: tuple[int, int] = (64, 64), seed: int = 0
) -> Path:
    """Write ``images/``, ``masks/`` (index PNGs), ``classes.yaml``, ``train.txt`` and
    ``val.txt`` under ``root``; returns ``root``."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    stems = [f"img{i:03d}" for i in range(num_train + num_val)]
    for stem in stems:
        mask = np.zeros(size, dtype=np.uint8)
        for label in rng.permutation([1, 2, 3]):
            cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
            ry, rx = rng.uniform(0.1, 0.25) * height, rng.uniform(0.1, 0.25) * width
            if label == 1:
                inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            elif label == 2:
                inside = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
            else:
                inside = (abs(yy - cy) <= ry / 3) & (abs(xx - cx) <= rx * 1.5)
            mask[inside] = label
        image = _COLOURS[mask] + rng.normal(0, 12, (*size, 3))
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{stem}.png")
        Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    lines = [f"{name}: [{r}, {g}, {b}]" for name, (r, g, b) in CLASSES.items()]
    (root / "classes.yaml").write_text("\n".join(lines) + "\n")
    (root / "train.txt").write_text("\n".join(stems[:num_train]) + "\n")
    (root / "val.txt").write_text("\n".join(stems[num_train:]) + "\n")
    return root
