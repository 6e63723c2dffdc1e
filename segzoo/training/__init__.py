"""Training semantic-segmentation models: ``segzoo train`` and :func:`fit`.

>>> from segzoo.training import TrainConfig, fit
>>> fit(TrainConfig(model="unet_resnet34", dataset="camvid", data_root="data/camvid", epochs=5))  # doctest: +SKIP
"""

from segzoo.training.history import COLUMNS as HISTORY_COLUMNS
from segzoo.training.history import TIMING_COLUMNS, read_history
from segzoo.training.loop import TrainConfig, fit

__all__ = ["HISTORY_COLUMNS", "TIMING_COLUMNS", "TrainConfig", "fit", "read_history"]
