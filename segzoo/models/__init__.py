"""Every architecture in the zoo; importing this package registers them all."""

from segzoo.models import deeplabv3plus, fcn, maskrcnn, pspnet, segnet, unet  # noqa: F401
