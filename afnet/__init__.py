"""afnet: AFNet (Ample and Focal Network) for efficient video recognition.

Public interface::

    import afnet
    model = afnet.create_model("af_resnet50", num_classes=174, num_frames=12, shift=True)
    out = model(video)            # video: float (B, T, 3, H, W)
    out.logits                    # (B, num_classes)
    out.masks                     # list of (B, T), one per navigation point
    afnet.count_flops(model, video)
    afnet.load_checkpoint(model, "AF-ResNet50.pth.tar")

    clf = afnet.pipeline("path/or/https/url/or/hf-hub:org/repo")   # a package (afnet convert)
    clf("v.mp4", top_k=5)         # Classification: top [{"label", "score"}], kept frames, gflops

Names are imported on first use: ``import afnet`` itself imports neither torch nor
Lightning nor matplotlib. ``afnet.data`` and the other subpackages import as usual.
"""
from afnet._imports import lazy_exports

_EXPORTS = {
    "VideoOutput": "afnet.models",
    "create_model": "afnet.models",
    "list_models": "afnet.models",
    "count_flops": "afnet.flops",
    "count_params": "afnet.flops",
    "load_checkpoint": "afnet.checkpoint",
    "save_checkpoint": "afnet.checkpoint",
    "pipeline": "afnet.inference.classifier",
    "VideoClassifier": "afnet.inference.classifier",
    "Classification": "afnet.inference.classifier",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__version__ = "0.1.0"   # the one place: pyproject.toml reads it (dynamic version), so do --version and packages
