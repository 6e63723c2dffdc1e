from segzoo.models.unet import smp_unets  # noqa: F401  (registers the encoder UNets)
from segzoo.models.unet.model import UNet

__all__ = ["UNet"]
