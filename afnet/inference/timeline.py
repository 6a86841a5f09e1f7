"""Long and untrimmed videos: a prediction per time window, a timeline, video-level aggregates.

::

    video ──open_reader──> frame times (presentation timestamps; a frame folder or --fps: i / fps)
          ──window_bounds(duration, window, stride)──> [start, end) per window, in seconds
          ──window_indices: the frames inside each window, sampled by the evaluation path
                            (clip_indices over them: T segment centres, as for a clip)
          ──stream: get_frames of the frames not yet decoded, a chunk of windows at a time, into a
                    buffer shared by overlapping windows; a frame leaves it once no later window
                    needs it (each frame decoded once; memory independent of the video's length)
          ──eval_views ──predict_sample (run_model)──> one VideoPrediction per window
    windows ──mean of the window scores (ActivityNet's video-level score)──> top-k
            ──top-1 per window (smooth="majority:K": the most frequent of K windows' top-1;
              "mean:K": top-1 of the mean of K windows' scores; off by default)
            ──runs of windows with the same class──> segments (bounds midway between window centres)
            ──min_segment=S (off by default): a segment shorter than S seconds joins the neighbour
              whose class scores higher on its windows, shortest first──> segments

:func:`draw_timeline` draws it: the class scores over time, segments shaded, and per navigation
point the share of frames kept per window and the sampled frames (filled: kept by the focal
branch, hollow: skipped), and GFLOPs per window. matplotlib on a Figure of its own (Agg canvas), never pyplot.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from afnet._imports import require
from afnet.data.dataset import clip_indices, eval_views
from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT, DecodeError, PyAVReader, open_reader
from afnet.data.limits import DEFAULT_LIMITS, DecodeLimits
from afnet.errors import OptionError
from afnet.inference.model import InferenceModel
from afnet.inference.predict import Sample, VideoPrediction, failure, predict_sample, top_classes

_EPS = 1e-6   # seconds: window arithmetic tolerance (float steps of the stride)


def window_bounds(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """``[start, end)`` of each window, in seconds: starts at ``0, stride, 2 * stride, ...``
    while the window fits, then one last window ending at ``duration`` if the stride left the
    end uncovered; every window is ``window`` long, except a video shorter than ``window``,
    which is one window ``[0, duration)``."""
    if not (window > 0 and math.isfinite(window)):
        raise OptionError(f"{{window}} must be a positive number of seconds, got {window}", "window")
    if not (stride > 0 and math.isfinite(stride)):
        raise OptionError(f"{{stride}} must be a positive number of seconds, got {stride}", "stride")
    if duration <= window + _EPS:
        return [(0.0, float(duration))]
    count = int(math.floor((duration - window) / stride + _EPS)) + 1
    bounds = [(k * stride, k * stride + window) for k in range(count)]
    if bounds[-1][1] < duration - _EPS:
        bounds.append((duration - window, float(duration)))
    return bounds


def window_frames(times: np.ndarray, start: float, end: float) -> tuple[int, int]:
    """``[lo, hi)``: the frames whose time lies in ``[start, end)``; a window shorter than a
    frame interval takes the frame nearest its centre."""
    lo = int(np.searchsorted(times, start - _EPS, side="left"))
    hi = int(np.searchsorted(times, end - _EPS, side="left"))
    if hi <= lo:
        nearest = int(np.argmin(np.abs(times - (start + end) / 2)))
        return nearest, nearest + 1
    return lo, hi


def window_indices(times: np.ndarray, bounds, config) -> list[torch.Tensor]:
    """Per window, the frames the evaluation path samples from it: ``(num_clips, T)`` indices
    into the video, :func:`clip_indices` over the window's frames."""
    out = []
    for start, end in bounds:
        lo, hi = window_frames(times, start, end)
        out.append(lo + clip_indices(hi - lo, config, train=False))
    return out


@dataclass
class WindowPrediction:
    """One window ``[start, end)`` (seconds) and its prediction (``afnet predict``'s, on the
    window's frames; ``frame_indices`` are frames of the whole video)."""

    start: float
    end: float
    prediction: VideoPrediction

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2


@dataclass
class Segment:
    """A run of windows with the same class (their top-1, or the smoothed class); ``score``: the
    mean of its windows' scores for that class."""

    start: float
    end: float
    label: int
    name: str | None
    score: float


@dataclass
class Timeline:
    """The windows of one video and what they add up to. ``top``: the mean of the window
    scores, best first ``{"class", "name", "score"}`` (as ``VideoPrediction.top``);
    ``decoded_frames``: frames decoded (each once, however many windows share it); ``gflops``:
    summed over windows."""

    path: str
    ok: bool
    window: float
    stride: float
    duration: float = 0.0
    num_frames: int = 0
    windows: list[WindowPrediction] = field(default_factory=list)
    top: list[dict] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    points: list[str] = field(default_factory=list)
    decoded_frames: int = 0
    smooth: str | None = None          # as given to predict_timeline: "majority:K", "mean:K" or None (off)
    min_segment: float | None = None   # seconds, or None (off)
    frame_times: np.ndarray | None = field(default=None, repr=False)   # seconds, per frame of the video
    error: str | None = None

    @property
    def gflops(self) -> float | None:
        values = [w.prediction.gflops for w in self.windows]
        return None if not values or None in values else float(sum(values))


def mean_scores(probs: torch.Tensor) -> torch.Tensor:
    """``(W, K)`` window probabilities -> ``(K,)`` video score: their mean (ActivityNet's
    untrimmed classification averages the scores of the clips it samples)."""
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"expected (windows, classes) scores, got {tuple(probs.shape)}")
    return probs.mean(dim=0)


SMOOTHERS = ("majority", "mean")


def parse_smooth(smooth: str | None) -> tuple[str, int] | None:
    """``"majority:K"`` or ``"mean:K"`` (K odd, >= 1) -> ``(method, K)``; ``None`` or ``"none"`` ->
    ``None`` (off). ``majority``: the most frequent top-1 among the K windows centred on each window
    (a median filter for classes); ``mean``: the top-1 of their mean scores (a moving average)."""
    if smooth is None or smooth == "none":
        return None
    method, _, size = str(smooth).partition(":")
    k = int(size) if size.isdigit() else 0
    if method not in SMOOTHERS or k < 1 or k % 2 == 0:
        raise OptionError(f"{{smooth}} must be none, majority:K or mean:K with K an odd number of windows "
                          f"(e.g. majority:5), got {smooth!r}", "smooth")
    return method, k


def check_min_segment(min_segment: float | None) -> float | None:
    """``None`` (off) or a positive number of seconds."""
    if min_segment is not None and not (min_segment > 0 and math.isfinite(min_segment)):
        raise OptionError(f"{{min_segment}} must be a positive number of seconds, got {min_segment}", "min_segment")
    return min_segment


def window_classes(probs: torch.Tensor, top1: list[int], smooth: str | None = None) -> list[int]:
    """``(W, K)`` window scores and their top-1 -> the class of each window: its top-1, or
    smoothed over the ``k`` windows centred on it (fewer at the ends: those that exist).
    ``majority`` ties go to the window's own top-1 if tied, else to the tied class with the
    highest summed score; ``mean`` ties to the lower class (as the top-1)."""
    spec = parse_smooth(smooth)
    if spec is None:
        return list(top1)
    method, k = spec
    half = k // 2
    out = []
    for i in range(len(top1)):
        lo, hi = max(0, i - half), min(len(top1), i + half + 1)
        if method == "mean":
            out.append(int(_argmax(probs[lo:hi].mean(dim=0, keepdim=True))[0]))
            continue
        counts: dict[int, int] = {}
        for c in top1[lo:hi]:
            counts[c] = counts.get(c, 0) + 1
        best = max(counts.values())
        tied = [c for c, n in counts.items() if n == best]
        out.append(top1[i] if top1[i] in tied else max(tied, key=lambda c: (float(probs[lo:hi, c].sum()), -c)))
    return out


def _argmax(probs: torch.Tensor) -> torch.Tensor:
    """Top-1 per row, ties to the lower class (as ``top_classes``, which sorts stably)."""
    return probs.argsort(dim=-1, descending=True, stable=True)[..., 0]


def _runs(classes: list[int]) -> list[tuple[int, int]]:
    """``[lo, hi)`` window ranges of equal class."""
    runs = []
    for i, c in enumerate(classes):
        if runs and classes[runs[-1][0]] == c:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _run_bounds(runs, centres, duration) -> list[tuple[float, float]]:
    """Seconds ``[start, end)`` of each run: midway between the centres of the windows on
    either side; the first starts at 0, the last ends at ``duration``."""
    return [(0.0 if k == 0 else (centres[runs[k - 1][1] - 1] + centres[lo]) / 2,
             duration if k == len(runs) - 1 else (centres[hi - 1] + centres[runs[k + 1][0]]) / 2)
            for k, (lo, hi) in enumerate(runs)]


def merge_short(classes: list[int], probs: torch.Tensor, centres, duration: float, min_segment: float) -> list[int]:
    """Relabel the windows of every run shorter than ``min_segment`` seconds: the shortest first
    (the earliest of equals), each joins the neighbour whose class has the higher mean score over
    its windows (the neighbour before on a tie); a run between two of the same class joins them
    into one. Stops when every run is long enough or one is left."""
    classes = list(classes)
    while True:
        runs = _runs(classes)
        if len(runs) < 2:
            return classes
        lengths = [end - start for start, end in _run_bounds(runs, centres, duration)]
        k = min(range(len(runs)), key=lambda j: (lengths[j], j))
        if lengths[k] >= min_segment:
            return classes
        lo, hi = runs[k]
        neighbours = [classes[runs[j][0]] for j in (k - 1, k + 1) if 0 <= j < len(runs)]
        into = max(neighbours, key=lambda c: float(probs[lo:hi, c].mean()))   # max keeps the first of equals
        classes[lo:hi] = [into] * (hi - lo)


def segments_of(windows: list[WindowPrediction], duration: float, class_name, *, smooth: str | None = None,
                min_segment: float | None = None) -> list[Segment]:
    """Runs of consecutive windows with the same class: the top-1, or smoothed (``smooth``:
    :func:`window_classes`); runs shorter than ``min_segment`` seconds merged into a neighbour
    (:func:`merge_short`). A bound between two runs lies midway between the centres of the
    windows on either side; the first run starts at 0, the last ends at ``duration``. Off (the
    defaults): the runs of the windows' top-1."""
    check_min_segment(min_segment)
    if not windows:
        return []
    probs = torch.stack([w.prediction.probs for w in windows])
    centres = [w.centre for w in windows]
    classes = window_classes(probs, [w.prediction.top[0]["class"] for w in windows], smooth)
    if min_segment is not None:
        classes = merge_short(classes, probs, centres, duration, min_segment)
    runs = _runs(classes)
    segments = []
    for (lo, hi), (start, end) in zip(runs, _run_bounds(runs, centres, duration)):
        label = classes[lo]
        segments.append(Segment(start, end, label, class_name(label), float(probs[lo:hi, label].mean())))
    return segments


def _times(reader, path: str, fps: float | None) -> np.ndarray:
    if fps is not None:
        return np.arange(len(reader), dtype=np.float64) / fps
    times = reader.frame_times() if isinstance(reader, PyAVReader) else None
    if times is None:
        raise DecodeError(f"{path}: frame times unknown (a frame folder, a stream without timestamps or "
                          f"another backend); give the frame rate (--fps)")
    return times


def _duration(times: np.ndarray) -> float:
    """Time of the last frame plus one mean frame interval (0 for a single frame)."""
    n = len(times)
    return float(times[-1] + (times[-1] - times[0]) / (n - 1)) if n > 1 else 0.0


def predict_timeline(path, im: InferenceModel, *, window: float, stride: float, top_k: int = 5,
                     flops: bool = True, fps: float | None = None, backend: str = "pyav",
                     timeout: float | None = DEFAULT_DECODE_TIMEOUT, chunk: int = 64,
                     limits: DecodeLimits = DEFAULT_LIMITS, smooth: str | None = None,
                     min_segment: float | None = None) -> Timeline:
    """Predict every window of ``path`` (see the module docstring). ``fps``: frame rate to
    place frames in time (needed for frame folders; overrides the timestamps). ``chunk``:
    about how many new frames one decoding call fetches. ``smooth`` (``"majority:K"``,
    ``"mean:K"``) and ``min_segment`` (seconds) smooth the segments (:func:`segments_of`; the
    windows and the video's top-k are not changed); off by default. A video that cannot be
    read gives ``ok=False`` and the reason, as in ``afnet predict``."""
    path = str(path)
    window_bounds(1.0, window, stride)   # the arguments' errors first, whatever the video
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise OptionError(f"{{fps}} must be a positive frame rate, got {fps}", "fps")
    smooth = None if parse_smooth(smooth) is None else smooth
    check_min_segment(min_segment)
    try:
        with open_reader(path, template=im.config.frame_template, backend=backend, timeout=timeout,
                         limits=limits) as reader:
            timeline = _stream_windows(reader, path, im, window, stride, top_k, flops, fps, chunk, smooth,
                                       min_segment)
    except (DecodeError, OSError) as exc:   # this file's failure; the next video goes on
        timeline = Timeline(path, ok=False, window=window, stride=stride, error=failure(path, exc).error)
    timeline.smooth, timeline.min_segment = smooth, min_segment
    return timeline


def _stream_windows(reader, path, im, window, stride, top_k, flops, fps, chunk, smooth, min_segment) -> Timeline:
    config = im.config
    times = _times(reader, path, fps)
    duration = _duration(times)
    bounds = window_bounds(duration, window, stride)
    indices = window_indices(times, bounds, config)
    needed = [sorted(set(ix.flatten().tolist())) for ix in indices]
    # the lowest frame any window from w on needs: frames below it are never needed again
    floor = [math.inf] * (len(needed) + 1)
    for w in range(len(needed) - 1, -1, -1):
        floor[w] = min(needed[w][0], floor[w + 1])
    buffer: dict[int, torch.Tensor] = {}
    decoded = 0
    windows = []
    for w, ((start, end), ix) in enumerate(zip(bounds, indices)):
        began = time.perf_counter()
        if any(i not in buffer for i in needed[w]):
            want: set[int] = set()
            for j in range(w, len(needed)):   # this window's missing frames, and the next ones' up to ``chunk``
                new = {i for i in needed[j] if i not in buffer}
                if j > w and len(want | new) > chunk:
                    break
                want |= new
            want_sorted = sorted(want)
            for i, frame in zip(want_sorted, reader.get_frames(want_sorted)):
                buffer[i] = frame
            decoded += len(want_sorted)
        frames = torch.stack([buffer[i] for i in ix.flatten().tolist()])
        sample = Sample(ix, frames, eval_views(frames, config), (time.perf_counter() - began) * 1e3)
        windows.append(WindowPrediction(start, end, predict_sample(path, sample, im, top_k=top_k, flops=flops)))
        for i in [i for i in buffer if i < floor[w + 1]]:
            del buffer[i]
    top = top_classes(mean_scores(torch.stack([w.prediction.probs for w in windows])), im, top_k)
    return Timeline(path, ok=True, window=window, stride=stride, duration=duration, num_frames=len(times),
                    windows=windows, top=top,
                    segments=segments_of(windows, duration, im.class_name, smooth=smooth, min_segment=min_segment),
                    points=windows[0].prediction.points, decoded_frames=decoded, frame_times=times)


# ------------------------------------------------------------------ figure
def draw_timeline(timeline: Timeline, out, *, classes: int = 5, dpi: int = 100, width_inches: float = 12.0) -> dict:
    """Draw ``timeline`` to ``out`` (format from the extension): the scores of its top
    ``classes`` classes over time (one point per window, at its centre) over the segments,
    shaded by class; per navigation point, each window's share of frames kept (shaded green)
    and, when there are few enough to tell apart (600), every window's sampled frames at their
    time (filled: computed by the focal branch, hollow: skipped); GFLOPs per window. Returns
    what was drawn: ``path``, ``classes`` (drawn, best first), ``rows`` (panel titles), ``size_px``."""
    require("matplotlib", "drawing a timeline")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not timeline.ok:
        raise ValueError(f"{timeline.path}: no timeline to draw ({timeline.error})")
    t = timeline
    centres = np.array([w.centre for w in t.windows])
    shown = [c["class"] for c in t.top[:classes]]
    label = {c["class"]: (c["name"] if c["name"] is not None else f"class {c['class']}") for c in t.top}
    for s in t.segments:
        label.setdefault(s.label, s.name if s.name is not None else f"class {s.label}")
    colours = {}
    palette = [f"C{i}" for i in range(10)]
    for c in shown + [s.label for s in t.segments]:
        colours.setdefault(c, palette[len(colours) % len(palette)])
    points = t.points
    has_flops = t.gflops is not None
    ratios = [3.0] + ([0.35 * len(points) + 0.3] if points else []) + ([0.8] if has_flops else [])
    fig = Figure(figsize=(width_inches, sum(ratios) * 1.1 + 0.8), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ratios), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": ratios})[:, 0]
    rows = ["class scores"]
    ax = axes[0]
    for s in t.segments:
        ax.axvspan(s.start, s.end, color=colours[s.label], alpha=0.12, linewidth=0)
        if s.end - s.start >= 0.04 * t.duration:   # named where there is room
            ax.text((s.start + s.end) / 2, 1.02, label[s.label], ha="center", va="bottom", fontsize=7,
                    color=colours[s.label], clip_on=True)
    for c in shown:
        ax.plot(centres, [float(w.prediction.probs[c]) for w in t.windows], color=colours[c], linewidth=1.2,
                marker="." if len(centres) < 200 else None, label=label[c])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score")
    # beside the axes: the segments stay visible
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
    if points:
        ax = axes[1]
        rows.append("frames kept")
        # behind: each window's share of frames kept, from midway to its neighbours' centres
        edges = np.concatenate([[0.0], (centres[1:] + centres[:-1]) / 2, [t.duration]])
        shares = np.array([[sum(w.prediction.masks[p]) / len(w.prediction.masks[p]) for w in t.windows]
                           for p in reversed(range(len(points)))])
        ax.pcolormesh(edges, np.arange(len(points) + 1) - 0.5, shares, cmap="Greens", vmin=0, vmax=1.5)
        sampled = sum(len(w.prediction.frame_indices) for w in t.windows)
        if sampled <= 600:   # few enough to tell apart: every sampled frame at its time
            times = t.frame_times
            for p in range(len(points)):
                kept_x, skipped_x = [], []
                for w in t.windows:
                    for i, keep in zip(w.prediction.frame_indices, w.prediction.masks[p]):
                        (kept_x if keep else skipped_x).append(times[i])
                y = len(points) - 1 - p
                ax.scatter(skipped_x, [y] * len(skipped_x), s=9, facecolors="white", edgecolors="0.5", linewidths=0.6)
                ax.scatter(kept_x, [y] * len(kept_x), s=9, color="darkgreen")
        ax.set_yticks(range(len(points)), list(reversed(points)), fontsize=7)
        ax.set_ylim(-0.5, len(points) - 0.5)
        ax.set_ylabel("frames kept\n(shade: share)" if sampled <= 600 else "share of frames kept\n(darker: more)",
                      fontsize=7)
    if has_flops:
        ax = axes[-1]
        rows.append("GFLOPs per window")
        ax.step(centres, [w.prediction.gflops for w in t.windows], where="mid", color="0.3", linewidth=1)
        ax.set_ylabel("GFLOPs", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0, max(t.duration, 1e-3))
    c, score = t.top[0]["class"], t.top[0]["score"]
    fig.suptitle(f"{os.path.basename(t.path)}: {len(t.windows)} windows of {t.window:g} s every {t.stride:g} s; "
                 f"video: {label[c]} ({score:.1%}, mean of window scores)"
                 + ("" if t.gflops is None else f"; {t.gflops:.3f} GFLOPs")
                 + "".join(f"; {how}" for how in (t.smooth and f"segments smoothed {t.smooth}",
                                                  t.min_segment and f"segments >= {t.min_segment:g} s") if how),
                 fontsize=9)
    fig.tight_layout()
    if isinstance(out, (str, os.PathLike)):   # a file, not a buffer: --out new_dir/x.png makes new_dir
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    size = tuple(int(round(v)) for v in fig.get_size_inches() * dpi)
    return {"path": str(out), "classes": [label[c] for c in shown], "rows": rows, "size_px": size}
