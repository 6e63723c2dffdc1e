from segzoo.models.fcn.model import FCN8s

__all__ = ["FCN8s"]
