"""The model zoo: AF-ResNet50/101, AF-MobileNetV3 and the TSN/TSM baselines.

``list_models`` needs no torch; building a model (``create_model``) imports it."""
from afnet._imports import lazy_exports
from afnet.models.registry import create_model, list_models, register_model

_EXPORTS = {"VideoModel": "afnet.models.base", "VideoOutput": "afnet.models.base"}
__all__ = ["VideoModel", "VideoOutput", "create_model", "list_models", "register_model"]
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
