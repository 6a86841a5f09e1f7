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
            ──runs of windows with the same top-1──> segments (bounds midway between window centres)

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
    """A run of windows with the same top-1 class; ``score``: its mean window score."""

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


def segments_of(windows: list[WindowPrediction], duration: float, class_name) -> list[Segment]:
    """Runs of consecutive windows with the same top-1 class; a bound between two runs lies
    midway between the centres of the windows on either side; the first run starts at 0, the
    last ends at ``duration``."""
    runs: list[list[WindowPrediction]] = []
    for w in windows:
        if runs and runs[-1][-1].prediction.top[0]["class"] == w.prediction.top[0]["class"]:
            runs[-1].append(w)
        else:
            runs.append([w])
    segments = []
    for k, run in enumerate(runs):
        start = 0.0 if k == 0 else (runs[k - 1][-1].centre + run[0].centre) / 2
        end = duration if k == len(runs) - 1 else (run[-1].centre + runs[k + 1][0].centre) / 2
        label = run[0].prediction.top[0]["class"]
        score = float(torch.stack([w.prediction.probs[label] for w in run]).mean())
        segments.append(Segment(start, end, label, class_name(label), score))
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
                     limits: DecodeLimits = DEFAULT_LIMITS) -> Timeline:
    """Predict every window of ``path`` (see the module docstring). ``fps``: frame rate to
    place frames in time (needed for frame folders; overrides the timestamps). ``chunk``:
    about how many new frames one decoding call fetches. A video that cannot be read gives
    ``ok=False`` and the reason, as in ``afnet predict``."""
    path = str(path)
    window_bounds(1.0, window, stride)   # the arguments' errors first, whatever the video
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise OptionError(f"{{fps}} must be a positive frame rate, got {fps}", "fps")
    try:
        with open_reader(path, template=im.config.frame_template, backend=backend, timeout=timeout,
                         limits=limits) as reader:
            return _stream_windows(reader, path, im, window, stride, top_k, flops, fps, chunk)
    except (DecodeError, OSError) as exc:   # this file's failure; the next video goes on
        return Timeline(path, ok=False, window=window, stride=stride, error=failure(path, exc).error)


def _stream_windows(reader, path, im, window, stride, top_k, flops, fps, chunk) -> Timeline:
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
                    windows=windows, top=top, segments=segments_of(windows, duration, im.class_name),
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
                 + ("" if t.gflops is None else f"; {t.gflops:.3f} GFLOPs"), fontsize=9)
    fig.tight_layout()
    if isinstance(out, (str, os.PathLike)):   # a file, not a buffer: --out new_dir/x.png makes new_dir
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    size = tuple(int(round(v)) for v in fig.get_size_inches() * dpi)
    return {"path": str(out), "classes": [label[c] for c in shown], "rows": rows, "size_px": size}
