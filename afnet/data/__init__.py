"""Video data pipeline: annotation file -> frame indices -> decoded frames -> transforms -> model.

::

    annotations.py   list files / Kinetics CSV / SthV2 JSON / class names -> VideoRecord
    sampling.py      TSN segments, dense, multi-clip          -> frame indices
    decoding.py      frame folders (JPEG), PyAV / decord / torchcodec -> uint8 (N, 3, H, W)
    transforms.py    multi-scale crop, flip, resize, crops, normalise (pure tensor functions)
    dataset.py       VideoDataset, build_dataset, build_dataloader, load_video, average_views
    presets.py       sthv1, sthv2, jester, minikinetics, activitynet, kinetics, synthetic
    check.py         check_dataset (``afnet check-data``)
    synthetic.py     make_synthetic (``afnet make-synthetic``)

Importing this package does no I/O. It never imports ``afnet.models``.
"""
from afnet.data.annotations import (
    VIDEO_EXTENSIONS,
    AnnotationError,
    Problem,
    VideoRecord,
    load_annotations,
    load_class_names,
    parse_annotations,
)
from afnet.data.check import check_dataset
from afnet.data.dataset import (
    Batch,
    SampleKey,
    SkippedSample,
    VideoDataset,
    VideoLoader,
    average_views,
    build_dataloader,
    build_dataset,
    collate_clips,
    load_video,
)
from afnet.data.decoding import (
    DEFAULT_DECODE_TIMEOUT,
    DecodeError,
    DecodeTimeout,
    available_backends,
    open_reader,
    open_video,
)
from afnet.data.presets import PRESETS, DatasetConfig, get_preset
from afnet.data.sampling import multi_clip_indices, sample_generator, sample_indices
from afnet.data.synthetic import make_synthetic, synthetic_dataset

__all__ = [
    "VIDEO_EXTENSIONS", "AnnotationError", "Problem", "VideoRecord", "load_annotations",
    "load_class_names", "parse_annotations", "check_dataset", "Batch", "SampleKey",
    "SkippedSample", "VideoDataset", "VideoLoader", "average_views", "build_dataloader",
    "build_dataset", "collate_clips", "load_video", "DEFAULT_DECODE_TIMEOUT", "DecodeError",
    "DecodeTimeout", "available_backends", "open_reader", "open_video", "PRESETS",
    "DatasetConfig", "get_preset", "multi_clip_indices", "sample_generator", "sample_indices",
    "make_synthetic", "synthetic_dataset",
]
