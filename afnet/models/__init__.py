"""The model zoo: AF-ResNet50/101, AF-MobileNetV3 and the TSN/TSM baselines."""
from afnet.models.base import VideoModel, VideoOutput
from afnet.models.registry import create_model, list_models, register_model

__all__ = ["VideoModel", "VideoOutput", "create_model", "list_models", "register_model"]
