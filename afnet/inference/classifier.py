"""Three-line inference, as Hugging Face's ``pipeline("video-classification")``::

    import afnet
    clf = afnet.pipeline("https://host/models/af-resnet50-sthv2/")   # or a path, hf-hub:org/repo
    clf("v.mp4", top_k=5)   # Classification(top=[{"label": ..., "score": ...}, ...], kept={...}, gflops=...)

A :class:`VideoClassifier` wraps the :class:`~afnet.inference.model.InferenceModel` of any
weights source (:mod:`afnet.weights`: a checkpoint or package path, a URL, ``hf-hub:``) and
runs the inference path of ``afnet predict`` (:func:`~afnet.inference.predict.predict_sample`)
on a video file, a frame folder, a decoded tensor, or a list of them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from afnet.data.dataset import clip_indices, eval_views
from afnet.inference.model import InferenceModel, load_model_for_inference
from afnet.inference.predict import Sample, VideoPrediction, predict_sample, read_or_failure


@dataclass
class Classification:
    """One video's answer.

    ``top``: best first, ``{"label": class name (the index as text when the model has no
    names), "score": probability}``, as Hugging Face's pipeline answers. ``kept``: per
    navigation point (``afnet predict``'s ``points``), the frames of the video (0-based) whose
    focal branch was computed; empty for the baselines. ``gflops``: multiply-accumulates
    executed for this video. ``prediction``: everything else ``afnet predict --json`` reports
    (masks, regions, latency, ...)."""

    top: list[dict]
    kept: dict[str, list[int]]
    gflops: float | None
    path: str | None = None
    prediction: VideoPrediction | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"path": self.path, "top": self.top, "kept": self.kept, "gflops": self.gflops}


class VideoClassifier:
    """``clf(video, top_k=5)``: a :class:`Classification` per video (a list for a list).

    A video is a file path, a frame folder, or a decoded ``uint8 (N, 3, H, W)`` tensor of all
    its frames (the frames the preset samples are taken from it)."""

    def __init__(self, model: InferenceModel, *, device: str | torch.device = "cpu", top_k: int = 5):
        self.model, self.device, self.top_k = model, torch.device(device), top_k
        model.model.to(self.device)

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, *, device: str | torch.device = "cpu", top_k: int = 5,
                        **options) -> VideoClassifier:
        """The classifier of ``source`` (see :func:`load_model_for_inference`, whose keyword
        arguments ``options`` are: ``labels``, ``preset``, ``ratio``, ``precision`` ...)."""
        return cls(load_model_for_inference(source, **options), device=device, top_k=top_k)

    def __call__(self, videos, top_k: int | None = None):
        if isinstance(videos, (list, tuple)):
            return [self._classify(v, top_k or self.top_k) for v in videos]
        return self._classify(videos, top_k or self.top_k)

    def _classify(self, video, top_k: int) -> Classification:
        if isinstance(video, torch.Tensor):
            path, sample = None, self._sample(video)
        else:
            path, sample = str(video), read_or_failure(str(video), self.model)
            if isinstance(sample, VideoPrediction):
                raise ValueError(f"{path}: {sample.error}")
        sample.clip = sample.clip.to(self.device)
        p = predict_sample(path or "<tensor>", sample, self.model, top_k=top_k)
        top = [{"label": t["name"] if t["name"] is not None else str(t["class"]), "score": t["score"]} for t in p.top]
        kept = {point: [i for i, k in zip(p.frame_indices, mask) if k] for point, mask in zip(p.points, p.masks)}
        return Classification(top, kept, p.gflops, path, p)

    def _sample(self, video: torch.Tensor) -> Sample:
        if video.dtype != torch.uint8 or video.ndim != 4 or video.shape[1] != 3:
            raise ValueError(f"a decoded video is uint8 (N, 3, H, W), got {video.dtype} {tuple(video.shape)}")
        config = self.model.config
        indices = clip_indices(video.shape[0], config, train=False)
        frames = video[indices.flatten()]
        return Sample(indices, frames, eval_views(frames, config), 0.0)

    def __repr__(self) -> str:
        return f"VideoClassifier({self.model!r}, device={self.device})"


def pipeline(source: str | os.PathLike, *, device: str | torch.device = "cpu", **options) -> VideoClassifier:
    """A :class:`VideoClassifier` for ``source``: :meth:`VideoClassifier.from_pretrained`."""
    return VideoClassifier.from_pretrained(source, device=device, **options)
