"""Which frames the focal branch computed, drawn as in the paper's Fig. 6.

:func:`explain_video` runs one video (same path as ``afnet predict``) and keeps the raw
sampled frames; :func:`draw_explanation` draws a grid of ``1 + P`` rows by ``T`` columns:
row 0 the sampled frames (titled by frame index), then one row per navigation point
(labelled e.g. ``layer1.0``) where skipped frames are greyed out and crossed, kept ones
framed in green. With spatial navigation (paper §3.3, Fig. 7) the frames are drawn as the
model saw them (the first view's crop, on which the region grid lies) and a kept frame
shows the point's ``g x g`` grid with its unselected regions greyed out and hatched. The
title gives the top-1 prediction. Where the video's evidence frames are known (``evidence``,
e.g. from the ``evidence.json`` of ``afnet make-synthetic --task evidence``), their columns
are titled ``evidence`` and each point's row label gives its navigation precision: the share
of the frames it kept that carry evidence. matplotlib draws on a Figure of its own (Agg
canvas), never through pyplot: the user's backend is left alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from afnet._imports import require
from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT
from afnet.data.limits import DEFAULT_LIMITS, DecodeLimits
from afnet.inference.model import InferenceModel
from afnet.inference.predict import VideoPrediction, predict_video, read_sample


@dataclass
class Explanation:
    """``prediction`` as ``afnet predict`` reports it, plus ``frames``: the sampled frames
    of the first clip as uint8 ``(T, H, W, 3)``, in the order of ``prediction.masks``
    (spatial models: the first view, the crop the model saw, as uint8)."""

    prediction: VideoPrediction
    frames: np.ndarray
    evidence: list | None = None    # per sampled frame: carries the class evidence (where known)

    def precision(self) -> list | None:
        """Per navigation point: the share of its kept frames that carry evidence (None
        where the evidence is not known; 0 where a point keeps nothing)."""
        if self.evidence is None:
            return None
        ev = np.asarray(self.evidence, dtype=bool)
        return [float(ev[np.asarray(m, dtype=bool)].mean()) if any(m) else 0.0 for m in self.prediction.masks]


@dataclass
class FigureLayout:
    """What :func:`draw_explanation` drew: a ``rows`` x ``cols`` grid of axes."""

    path: str
    rows: int
    cols: int
    row_labels: list[str]
    col_labels: list[str]
    title: str
    size_px: tuple[int, int]  # (width, height) of the PNG


def explain_video(path, im: InferenceModel, *, top_k: int = 5, backend: str = "pyav",
                  threads: int = 1, timeout: float | None = DEFAULT_DECODE_TIMEOUT, evidence=None,
                  limits: DecodeLimits = DEFAULT_LIMITS) -> Explanation:
    """Predict ``path`` and keep its sampled frames. ``evidence``: the video's evidence
    frames (0-based indices), if known. Raises :class:`DecodeError` (naming the file) when it
    cannot be read (in ``timeout`` seconds, within ``limits``)."""
    sample = read_sample(str(path), im, backend=backend, threads=threads, timeout=timeout, limits=limits)
    prediction = predict_video(path, im, top_k=top_k, sample=sample)
    frames = sample.frames[:im.num_frames]
    if prediction.regions:  # the region grid lies on the model's input: undo the normalisation
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (im.config.mean, im.config.std))
        frames = ((sample.clip[0] * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    marks = None if evidence is None else [int(i) in set(evidence) for i in prediction.frame_indices]
    return Explanation(prediction, frames.permute(0, 2, 3, 1).contiguous().numpy(), marks)


def region_pixels(grid: list[list[int]], h: int, w: int) -> np.ndarray:
    """``g x g`` region mask -> ``(h, w)`` bool mask of the pixels of the selected regions."""
    g = np.asarray(grid, dtype=bool)
    return g[np.arange(h) * g.shape[0] // h][:, np.arange(w) * g.shape[1] // w]


def draw_explanation(explanation: Explanation, out, *, dpi: int = 100, thumb_inches: float = 1.2) -> FigureLayout:
    """Write the figure to ``out`` (format from the extension, e.g. ``.png``)."""
    require("matplotlib", "drawing an explanation")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    p = explanation.prediction
    frames = explanation.frames
    t, h, w = frames.shape[:3]
    rows = 1 + len(p.masks)
    precision = explanation.precision()
    row_labels = ["frames"] + (list(p.points) if precision is None else
                               [f"{n}\nprecision {q:.2f}" for n, q in zip(p.points, precision)])
    col_labels = [f"#{i}" + (" evidence" if explanation.evidence and explanation.evidence[k] else "")
                  for k, i in enumerate(p.frame_indices)]
    best = p.top[0]
    name = best["name"] if best["name"] is not None else f"class {best['class']}"
    title = f"{os.path.basename(p.path)}: {name} ({best['score']:.1%})"
    if p.gflops is not None:
        title += f", {p.gflops:.3f} GFLOPs"

    aspect = h / w
    # a Figure of its own on the Agg canvas: pyplot and the user's backend are left alone
    fig = Figure(figsize=(thumb_inches * t + 0.9, thumb_inches * aspect * rows + 0.7), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, t, squeeze=False)
    grey = (frames.astype(np.float32) * 0.25 + 255 * 0.75).astype(np.uint8)
    for r in range(rows):
        for j in range(t):
            ax = axes[r][j]
            kept = r == 0 or bool(p.masks[r - 1][j])
            grid = p.regions[r - 1][j] if r > 0 and kept and p.regions else None
            image = frames[j] if kept else grey[j]
            if grid is not None:  # unselected regions greyed out and hatched, the grid drawn over
                image = np.where(region_pixels(grid, h, w)[..., None], frames[j], grey[j])
            ax.imshow(image, interpolation="nearest")
            if grid is not None:
                g = len(grid)
                for k in range(1, g):
                    ax.axhline(k * h / g - 0.5, color="black", alpha=0.6, linewidth=0.5)
                    ax.axvline(k * w / g - 0.5, color="black", alpha=0.6, linewidth=0.5)
                for y, x in zip(*np.nonzero(~np.asarray(grid, dtype=bool))):
                    ax.add_patch(Rectangle((x * w / g - 0.5, y * h / g - 0.5), w / g, h / g, fill=False,
                                           hatch="////", edgecolor=(0, 0, 0, 0.3), linewidth=0))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_labels[j], fontsize=8)
            elif kept:
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:green")
                    spine.set_linewidth(2)
            else:
                for xs, ys in (((0, 1), (0, 1)), ((0, 1), (1, 0))):
                    ax.add_line(Line2D(xs, ys, transform=ax.transAxes, color="tab:red", linewidth=1.5))
            if j == 0:
                ax.set_ylabel(row_labels[r], fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if isinstance(out, (str, os.PathLike)):   # a file, not a buffer: --out new_dir/x.png makes new_dir
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    size = tuple(int(round(v)) for v in fig.get_size_inches() * dpi)
    return FigureLayout(str(out), rows, t, row_labels, col_labels, title, size)
