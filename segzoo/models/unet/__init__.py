from segzoo.models.unet.model import UNet
from segzoo.models.unet import smp_unets  # noqa: F401  (registers the encoder UNets)

__all__ = ["UNet"]
