"""Inference: ``afnet predict`` and ``afnet explain``.

Data flows one way, reusing the data pipeline and the zoo::

    checkpoint ──load_model_for_inference──> InferenceModel (prepared model, class names, preset)
    path ──find_videos──> video paths
    path ──open_reader ─ clip_indices ─ get_frames ─ eval_views──> Sample (indices, uint8 frames, clip)
    Sample ──run_model──> probabilities, keep-masks (and region masks) per navigation point, latency, GFLOPs
           ──predict_video──> VideoPrediction    (printed by ``afnet predict``)
           ──explain_video──> Explanation ──draw_explanation──> PNG (``afnet explain``)

::

    model.py     InferenceModel, load_model_for_inference
    predict.py   find_videos, read_sample, run_model, predict_video, predict_videos, VideoPrediction
    report.py    text and JSON Lines rendering of a VideoPrediction
    explain.py   explain_video, draw_explanation (matplotlib, Agg backend)
    cli.py       the ``predict`` and ``explain`` subcommands

Importing this package does not import matplotlib.
"""
from afnet.inference.model import InferenceModel, load_model_for_inference
from afnet.inference.predict import (
    VIDEO_EXTENSIONS,
    Sample,
    VideoPrediction,
    find_videos,
    predict_video,
    predict_videos,
    read_sample,
    run_model,
)
from afnet.inference.report import JSON_FIELDS, format_prediction, mask_string, prediction_to_json
from afnet.inference.explain import Explanation, FigureLayout, draw_explanation, explain_video

__all__ = [
    "InferenceModel", "load_model_for_inference", "VIDEO_EXTENSIONS", "Sample", "VideoPrediction",
    "find_videos", "predict_video", "predict_videos", "read_sample", "run_model", "JSON_FIELDS",
    "format_prediction", "mask_string", "prediction_to_json", "Explanation", "FigureLayout",
    "draw_explanation", "explain_video",
]
