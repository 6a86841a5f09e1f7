"""Per-video inference: file -> frame indices -> frames -> transforms -> model -> prediction.

Sampling, decoding and transforms are the data pipeline's evaluation path
(:func:`afnet.data.dataset.clip_indices`, ``reader.get_frames``,
:func:`afnet.data.dataset.eval_views`); nothing is re-implemented here.

Latency is the wall-clock of the model call alone (``model(clip)`` under
``torch.no_grad`` on the already decoded and transformed clip, all views of one video in
one call, the device synchronised before and after: :func:`afnet.runtime.timed`); the clip's
copy to the model's device is not in it; decoding and transforms are reported apart
(``decode_ms``). The first call at a new input shape is preceded by an untimed warm-up call
(with ``--compile``: the compilation). GFLOPs (multiply-accumulates, as
in the paper) are counted by :func:`afnet.count_flops` on a second, untimed call on the
same clip: eval mode is deterministic, so it executes the same operations.
"""
from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field

import torch

from afnet.data.annotations import VIDEO_EXTENSIONS, list_lines
from afnet.data.dataset import average_views, clip_indices, eval_views
from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT, DecodeError, count_frames, open_reader
from afnet.data.limits import DEFAULT_LIMITS, DecodeLimits
from afnet.data.presets import DatasetConfig
from afnet.flops import count_flops
from afnet.inference.model import InferenceModel
from afnet.runtime import precision_of, synchronize, timed


@dataclass
class Sample:
    """One video read for evaluation: ``indices`` ``(num_clips, T)`` (0-based, presentation
    order), the decoded ``frames`` uint8 ``(num_clips * T, 3, H, W)`` and the model input
    ``clip`` float ``(V, T, 3, S, S)``."""

    indices: torch.Tensor
    frames: torch.Tensor
    clip: torch.Tensor
    decode_ms: float


@dataclass
class VideoPrediction:
    """What ``afnet predict`` reports for one video (see ``report.JSON_FIELDS``).

    The names are the JSON keys of ``afnet predict --json`` (``report.JSON_FIELDS``).
    ``top``: ``{"class": index, "name": class name or None, "score": probability}``, best first.
    ``points``: the navigation points' names (``InferenceModel.points``), in the order of ``masks``.
    ``masks``: per navigation point, the T keep flags of the first view (1 = focal branch
    computed that frame). ``regions`` (spatial models, else empty): per point, the T region
    masks ``g x g`` of the first view (1 = region selected); the focal block computes
    region (i, j) of frame t where ``masks[p][t] * regions[p][t][i][j]`` is 1, so a skipped
    frame's regions are not computed whatever they say. ``error``: why the video failed
    (``ok`` is then False). ``execution``: ``sparse`` or ``masked``, what the model call ran
    (``execution="auto"`` resolved for its device and batch); ``precision``: ``fp32`` or
    ``bf16``; ``device``: where the model computed (``cpu``, ``cuda:0`` ...); ``compile``: the
    ``torch.compile`` mode of the call, ``None`` eager. ``probs``: every class's probability (averaged over views), for
    aggregating windows of a long video; not reported.
    """

    path: str
    ok: bool
    top: list[dict] = field(default_factory=list)
    frame_indices: list[int] = field(default_factory=list)
    points: list[str] = field(default_factory=list)
    masks: list[list[int]] = field(default_factory=list)
    regions: list[list[list[list[int]]]] = field(default_factory=list)
    gflops: float | None = None
    latency_ms: float | None = None
    decode_ms: float | None = None
    views: int = 0
    execution: str | None = None
    precision: str | None = None
    device: str | None = None
    compile: str | None = None
    error: str | None = None
    probs: torch.Tensor | None = field(default=None, repr=False, compare=False)  # (K,), not in the JSON

    @property
    def kept_ratio(self) -> list[float]:
        return [sum(m) / len(m) for m in self.masks if m]

    @property
    def region_ratio(self) -> list[float | None]:
        """Per point, the share of regions computed on the kept frames (``None`` where no
        frame is kept); empty without spatial navigation."""
        ratios = []
        for mask, grids in zip(self.masks, self.regions):
            kept = [sum(map(sum, g)) / sum(map(len, g)) for k, g in zip(mask, grids) if k]
            ratios.append(sum(kept) / len(kept) if kept else None)
        return ratios


def _is_frame_folder(path: str, template: str) -> bool:
    return os.path.isdir(path) and count_frames(path, template) > 0


def find_videos(paths, template: str = "{:05d}.jpg") -> list[str]:
    """Expand ``paths`` into videos, in the order given (folders sorted by name).

    A file is taken as a video whatever its extension. A folder holding frames named
    like ``template`` (the preset's ``frame_template``) is one video (a frame folder);
    any other folder is searched recursively for files with :data:`VIDEO_EXTENSIONS`
    and for frame folders. A path that does not exist but holds a glob pattern
    (``clips/**/*.mp4``; ``**`` matches any depth) is replaced by its matches, sorted, each
    expanded as above. Paths that do not exist, and folders or patterns with nothing
    found, are kept as they are so that prediction reports them as failures.
    """
    found: list[str] = []
    for path in map(str, paths):
        if not os.path.exists(path) and glob.has_magic(path):
            matches = sorted(glob.glob(path, recursive=True))
            found += find_videos(matches, template) if matches else [path]
            continue
        if not os.path.isdir(path) or _is_frame_folder(path, template):
            found.append(path)
            continue
        inside = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for d in list(dirs):
                if _is_frame_folder(os.path.join(root, d), template):
                    inside.append(os.path.join(root, d))
                    dirs.remove(d)
            inside += [os.path.join(root, f) for f in sorted(files)
                       if f.lower().endswith(VIDEO_EXTENSIONS)]
        found += sorted(inside) if inside else [path]
    return found


def read_video_list(list_file, root: str | None = None) -> list[str]:
    """The videos named in a list file: per line, its first whitespace-separated field (so
    the training lists ``path [frames] label`` serve as they are), relative paths joined to
    ``root`` when given; blank lines and ``#`` comments are skipped. Raises
    FileNotFoundError naming the file."""
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"video list not found: {list_file}")
    firsts = [line.split()[0] for _, line in list_lines(list_file)]
    return firsts if root is None else [os.path.join(root, path) for path in firsts]


def read_sample(path: str, im: InferenceModel | DatasetConfig, *, backend: str = "pyav", threads: int = 1,
                timeout: float | None = DEFAULT_DECODE_TIMEOUT, limits: DecodeLimits = DEFAULT_LIMITS) -> Sample:
    """Sample, decode and transform ``path`` as in evaluation, with ``im``'s preset (or the
    evaluation config itself: a data-loading worker needs no model). Raises
    :class:`DecodeError` (also when opening or decoding takes longer than ``timeout`` seconds, when
    the file is not a video, or when its headers break ``limits``)."""
    config = im if isinstance(im, DatasetConfig) else im.config
    start = time.perf_counter()
    if os.path.isdir(path) and not _is_frame_folder(path, config.frame_template):
        raise DecodeError(f"{path}: folder holds no video files and no frames named like "
                          f"{config.frame_template!r}")
    with open_reader(path, template=config.frame_template, backend=backend, threads=threads,
                     timeout=timeout, limits=limits) as reader:
        indices = clip_indices(len(reader), config, train=False)
        frames = reader.get_frames(indices.flatten())
    clip = eval_views(frames, config)
    return Sample(indices, frames, clip, (time.perf_counter() - start) * 1e3)


def run_model(im: InferenceModel, clip: torch.Tensor, *, flops: bool = True):
    """One video (its ``V`` views as one batch) through the prepared model, on its device
    (the clip is moved there; what is returned is on the CPU).

    Returns ``(probabilities (K,), masks list of (V, T), regions list of (V, T, g, g) (empty
    without spatial navigation), latency_ms, gflops or None)``; probabilities are softmax
    outputs averaged over views.
    """
    device = im.device
    clip = clip.to(device, non_blocking=True)
    with torch.no_grad():
        if tuple(clip.shape) not in im.warmed:  # oneDNN primitives, focal-branch caches, compilation
            im(clip)
            im.warmed.add(tuple(clip.shape))
        synchronize(device)   # the clip's copy is not timed
        out, latency_ms = timed(im, clip, device=device)
        # to the host at once: a compiled CUDA graph's outputs are overwritten by its next replay
        logits = out.logits.float().cpu()
        masks = [m.detach().cpu() for m in out.masks]
        regions = [r.detach().cpu() for r in out.regions]
        gflops = video_gflops(im.model, clip) if flops else None
    probs = average_views(logits, clip.shape[0], softmax=True)[0]
    return probs, masks, regions, latency_ms, gflops


def video_gflops(model, clip: torch.Tensor) -> float:
    """GFLOPs of ``model(clip)`` for all ``V`` views: counted from the executed operations
    (:func:`afnet.count_flops`, on a call after the timed one), or, for an exported graph
    (:class:`afnet.inference.onnx.OnnxModel`), as recorded at export (static shapes: every
    call costs the same)."""
    recorded = getattr(model, "gflops_per_view", None)
    per_view = recorded if recorded is not None else count_flops(model, clip, warmup=False)
    return per_view * clip.shape[0]


def _reason(path: str, exc: Exception) -> str:
    message = str(exc)
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def failure(path: str, exc: Exception) -> VideoPrediction:
    """The prediction of a video that could not be read: ``ok=False`` and the reason (the
    exception's type too, unless it is a :class:`DecodeError`)."""
    reason = _reason(path, exc)
    return VideoPrediction(path, ok=False, error=reason if isinstance(exc, DecodeError) else
                           f"{type(exc).__name__}: {reason}")


def read_or_failure(path: str, im: InferenceModel | DatasetConfig, **kwargs) -> Sample | VideoPrediction:
    """:func:`read_sample`, or the :func:`failure` of a video that cannot be read: one file's
    failure never stops a batch."""
    try:
        return read_sample(path, im, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure to read one file is that file's failure
        return failure(path, exc)


def top_classes(probs: torch.Tensor, im: InferenceModel, top_k: int) -> list[dict]:
    """``{"class": index, "name": class name or None, "score": probability}`` of the ``top_k``
    best of ``probs`` ``(K,)`` (at least one, at most K), best first."""
    scores, classes = probs.topk(max(1, min(top_k, probs.numel())))
    return [{"class": int(c), "name": im.class_name(int(c)), "score": float(s)} for s, c in zip(scores, classes)]


def predict_sample(path: str, sample: Sample, im: InferenceModel, *, top_k: int = 5,
                   flops: bool = True) -> VideoPrediction:
    """The prediction of one read video: :func:`run_model` on its clip, top-k and masks."""
    probs, masks, regions, latency_ms, gflops = run_model(im, sample.clip, flops=flops)
    top = top_classes(probs, im, top_k)
    names = im.points if len(im.points) == len(masks) else [f"point{i}" for i in range(len(masks))]
    return VideoPrediction(
        path, ok=True, top=top, frame_indices=[int(i) for i in sample.indices[0]], points=names,
        masks=[[int(round(float(v))) for v in m[0]] for m in masks],
        regions=[r[0].round().int().tolist() for r in regions], gflops=gflops,
        latency_ms=latency_ms, decode_ms=sample.decode_ms, views=int(sample.clip.shape[0]), probs=probs,
        execution=im.model.resolved_execution(sample.clip.shape[0], im.device),
        precision=precision_of(im.model), device=str(im.device), compile=getattr(im, "compile_mode", None))


def predict_video(path, im: InferenceModel, *, top_k: int = 5, flops: bool = True,
                  backend: str = "pyav", threads: int = 1, sample: Sample | None = None,
                  timeout: float | None = DEFAULT_DECODE_TIMEOUT,
                  limits: DecodeLimits = DEFAULT_LIMITS) -> VideoPrediction:
    """Predict one video.

    Args:
        path: a video file or a frame folder.
        im: the model, from :func:`load_model_for_inference`.
        top_k: classes reported.
        flops: count the GFLOPs of this video's forward pass.
        backend: video decoder (``pyav``, ``decord``, ``torchcodec``).
        threads: decoder threads.
        sample: the clip already read (:func:`read_or_failure`), in place of reading ``path``.
        timeout: seconds to open and decode the video (``None``: no limit).
        limits: the most the video may decode (frame pixels, frames, seconds), from its headers.

    Returns:
        A :class:`VideoPrediction`; a file that cannot be decoded (in ``timeout`` seconds)
        gives ``ok=False`` and the reason.
    """
    path = str(path)
    if sample is None:
        sample = read_or_failure(path, im, backend=backend, threads=threads, timeout=timeout, limits=limits)
        if isinstance(sample, VideoPrediction):
            return sample
    return predict_sample(path, sample, im, top_k=top_k, flops=flops)


def predict_videos(paths, im: InferenceModel, **kwargs) -> list[VideoPrediction]:
    """:func:`predict_video` for every video of :func:`find_videos` ``(paths)``."""
    return [predict_video(p, im, **kwargs) for p in find_videos(paths, im.config.frame_template)]
