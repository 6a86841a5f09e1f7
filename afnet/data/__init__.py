"""Video data pipeline: annotation file -> frame indices -> decoded frames -> transforms -> model.

::

    annotations.py   list files / Kinetics CSV / SthV2 JSON / class names -> VideoRecord
    sampling.py      TSN segments, dense, multi-clip          -> frame indices
    readers.py       the reader interface, its errors and time limits; decord / torchcodec readers
    decoding.py      frame folders (JPEG), PyAV -> uint8 (N, 3, H, W); open_reader / open_video
    transforms.py    multi-scale crop, flip, resize, crops, normalise (pure tensor functions)
    dataset.py       VideoDataset, build_dataset, build_dataloader, load_video, average_views
    presets.py       sthv1, sthv2, jester, minikinetics, activitynet, kinetics, synthetic, imagefolder
    images.py        the image-folder dataset of the ``imagefolder`` preset (T=1, ImageNet pre-training)
    check.py         check_dataset -> CheckResult (``afnet check-data``)
    prepare.py       prepare_dataset: official downloads -> frame folders, list files (``afnet prepare``)
    synthetic.py     make_synthetic (``afnet make-synthetic``)

Names are imported on first use; importing this package does no I/O and imports neither torch
nor ``afnet.models``.
"""
from afnet._imports import lazy_exports

_EXPORTS = {
    "VIDEO_EXTENSIONS": "afnet.data.annotations",
    "AnnotationError": "afnet.data.annotations",
    "Problem": "afnet.data.annotations",
    "VideoRecord": "afnet.data.annotations",
    "load_annotations": "afnet.data.annotations",
    "load_class_names": "afnet.data.annotations",
    "parse_annotations": "afnet.data.annotations",
    "CheckResult": "afnet.data.check",
    "check_dataset": "afnet.data.check",
    "PrepareReport": "afnet.data.prepare",
    "prepare_dataset": "afnet.data.prepare",
    "Batch": "afnet.data.dataset",
    "SampleKey": "afnet.data.dataset",
    "SkippedSample": "afnet.data.dataset",
    "VideoDataset": "afnet.data.dataset",
    "VideoLoader": "afnet.data.dataset",
    "average_views": "afnet.data.dataset",
    "build_dataloader": "afnet.data.dataset",
    "build_dataset": "afnet.data.dataset",
    "collate_clips": "afnet.data.dataset",
    "load_video": "afnet.data.dataset",
    "DEFAULT_DECODE_TIMEOUT": "afnet.data.readers",
    "DecodeError": "afnet.data.readers",
    "DecodeTimeout": "afnet.data.readers",
    "available_backends": "afnet.data.decoding",
    "open_reader": "afnet.data.decoding",
    "open_video": "afnet.data.decoding",
    "PRESETS": "afnet.data.presets",
    "DatasetConfig": "afnet.data.presets",
    "get_preset": "afnet.data.presets",
    "multi_clip_indices": "afnet.data.sampling",
    "sample_generator": "afnet.data.sampling",
    "sample_indices": "afnet.data.sampling",
    "make_synthetic": "afnet.data.synthetic",
    "synthetic_dataset": "afnet.data.synthetic",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
