"""Inference: ``afnet predict``, ``explain``, ``timeline`` and ``batch-predict``.

Data flows one way, reusing the data pipeline and the zoo::

    source (path, package folder, URL, hf-hub:) ──afnet.weights.resolve──> local file or package
    checkpoint ──load_model_for_inference──> InferenceModel (prepared model, class names, preset)
               ──convert_checkpoint──> package (model.safetensors + config.json; ``afnet convert``)
    InferenceModel ──VideoClassifier (afnet.pipeline)──> Classification (top, kept frames, GFLOPs)
    path ──find_videos (files, folders, globs) | read_video_list──> video paths
    path ──open_reader ─ clip_indices ─ get_frames ─ eval_views──> Sample (indices, uint8 frames, clip)
    Sample ──run_model──> probabilities, keep-masks (and region masks) per navigation point, latency, GFLOPs
           ──predict_sample / predict_video──> VideoPrediction    (printed by ``afnet predict``)
           ──explain_video──> Explanation ──draw_explanation──> PNG (``afnet explain``)
    long video ──predict_timeline (windows; frames decoded once)──> Timeline ──draw_timeline──> PNG
    many videos ──predict_corpus (Lightning: shards, workers, resume)──> JSON Lines (``afnet batch-predict``)
    checkpoint ──export_onnx──> model.onnx + metadata ──load_onnx_for_inference──> InferenceModel (ONNX Runtime)
    InferenceModel ──create_app──> the web page of ``afnet serve`` (explain_video per request)

::

    classifier.py  pipeline, VideoClassifier, Classification: three-line inference
    model.py     InferenceModel, load_model_for_inference, rebuild_model, convert_checkpoint (packages)
    predict.py   find_videos, read_video_list, read_sample, run_model, predict_sample, predict_video,
                 predict_videos, VideoPrediction
    report.py    text and JSON Lines rendering of a VideoPrediction and of a Timeline
    explain.py   explain_video, draw_explanation (matplotlib, Agg backend)
    timeline.py  window_bounds, predict_timeline, segments_of (smoothing), Timeline, draw_timeline (long videos)
    shards.py    the batch job's files: shard paths, pending videos, merge (no Lightning)
    corpus.py    predict_corpus on Lightning (Trainer.predict, ShardBatches, ShardWriter)
    onnx.py      export_onnx, read_onnx_metadata, OnnxModel, load_onnx_for_inference (ONNX, ONNX Runtime)
    serve.py     create_app: the FastAPI page and JSON API of ``afnet serve`` (serve_page.html)
    cli.py       the ``predict``, ``explain``, ``timeline``, ``batch-predict``, ``export`` and ``serve`` subcommands

Names are imported on first use; importing this package imports neither torch nor matplotlib.
"""
from afnet._imports import lazy_exports

_EXPORTS = {
    "Classification": "afnet.inference.classifier",
    "VideoClassifier": "afnet.inference.classifier",
    "pipeline": "afnet.inference.classifier",
    "convert_checkpoint": "afnet.inference.model",
    "InferenceModel": "afnet.inference.model",
    "load_model_for_inference": "afnet.inference.model",
    "VIDEO_EXTENSIONS": "afnet.data.annotations",
    "Sample": "afnet.inference.predict",
    "VideoPrediction": "afnet.inference.predict",
    "find_videos": "afnet.inference.predict",
    "predict_video": "afnet.inference.predict",
    "predict_videos": "afnet.inference.predict",
    "read_sample": "afnet.inference.predict",
    "read_video_list": "afnet.inference.predict",
    "predict_sample": "afnet.inference.predict",
    "run_model": "afnet.inference.predict",
    "JSON_FIELDS": "afnet.inference.report",
    "format_prediction": "afnet.inference.report",
    "mask_string": "afnet.inference.report",
    "prediction_to_json": "afnet.inference.report",
    "TIMELINE_FIELDS": "afnet.inference.report",
    "timeline_to_json": "afnet.inference.report",
    "format_timeline": "afnet.inference.report",
    "Timeline": "afnet.inference.timeline",
    "window_bounds": "afnet.inference.timeline",
    "segments_of": "afnet.inference.timeline",
    "predict_timeline": "afnet.inference.timeline",
    "draw_timeline": "afnet.inference.timeline",
    "export_onnx": "afnet.inference.onnx",
    "read_onnx_metadata": "afnet.inference.onnx",
    "load_onnx_for_inference": "afnet.inference.onnx",
    "OnnxModel": "afnet.inference.onnx",
    "predict_corpus": "afnet.inference.corpus",
    "Explanation": "afnet.inference.explain",
    "FigureLayout": "afnet.inference.explain",
    "draw_explanation": "afnet.inference.explain",
    "explain_video": "afnet.inference.explain",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
