"""afnet: AFNet (Ample and Focal Network) for efficient video recognition.

Public interface::

    import afnet
    model = afnet.create_model("af_resnet50", num_classes=174, num_frames=12, shift=True)
    out = model(video)            # video: float (B, T, 3, H, W)
    out.logits                    # (B, num_classes)
    out.masks                     # list of (B, T), one per navigation point
    afnet.count_flops(model, video)
    afnet.load_checkpoint(model, "AF-ResNet50.pth.tar")
"""
from afnet.models import VideoOutput, create_model, list_models
from afnet.flops import count_flops, count_params
from afnet.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "VideoOutput",
    "create_model",
    "list_models",
    "count_flops",
    "count_params",
    "load_checkpoint",
    "save_checkpoint",
]
__version__ = "0.1.0"
