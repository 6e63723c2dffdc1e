from segzoo.models.segnet.model import SegNet

__all__ = ["SegNet"]
