"""Rendering a :class:`VideoPrediction`: human-readable text, or one JSON object per video.

JSON Lines schema (``afnet predict --json``), one object per video, every key always present::

    path          str          the video file or frame folder, as found
    ok            bool         false when the video could not be read
    error         str | null   why it failed (the path is in "path")
    top           list         best first: {"class": int, "name": str | null, "score": float}
                               (score = softmax probability, averaged over views)
    frame_indices list[int]    the T sampled frames (0-based, presentation order; first clip)
    points        list[str]    navigation point names, e.g. "layer1.0" (empty for baselines)
    masks         list[list]   per point, T flags: 1 = focal branch computed that frame
    kept_ratio    list[float]  per point, share of frames kept
    regions       list         spatial models: per point, T grids g x g (1 = region selected;
                               computed only on kept frames); empty otherwise
    region_ratio  list         spatial models: per point, share of regions computed on the
                               kept frames (null where none is kept); empty otherwise
    gflops        float | null multiply-accumulates (GFLOPs) executed for this video
    latency_ms    float | null wall-clock of the model call (decoding excluded; the first call
                               at an input shape is preceded by an untimed warm-up call)
    decode_ms     float | null decoding + sampling + transforms
    views         int          clips x crops fed to the model (0 on failure)
    execution     str | null   "sparse" or "masked": what the focal branch ran for this call
                               (execution "auto" resolved by device, batch and frame policy)
    precision     str | null   "fp32" or "bf16" (--precision; "auto" resolved by the device)
    device        str | null   where the model computed: "cpu", "cuda:0" ... (--device)
    compile       str | null   the torch.compile mode of the model call (--compile); null: eager

A failed video has ``ok: false``, its ``error``, empty lists and nulls.

Timeline schema (``afnet predict --window W --stride S --json``), one object per video,
every key always present (:data:`TIMELINE_FIELDS`)::

    path, ok, error   as above
    duration      float        seconds (last frame's time plus one frame interval)
    frames        int          frames in the video
    window        float        window length, seconds
    stride        float        seconds between window starts
    top           list         the video: mean of the window scores, best first (as above)
    segments      list         runs of windows with the same top-1 (or smoothed class):
                               {"start": s, "end": s, "class": int, "name": str | null, "score": float}
    smooth        str | null   the segments' smoothing over windows: "majority:K", "mean:K"; null: off
    min_segment   float | null seconds: shorter segments were merged into a neighbour; null: off
    points        list[str]    navigation point names
    gflops        float | null summed over the windows
    decoded_frames int         frames decoded (each once, however many windows share it)
    windows       list         per window: {"start": s, "end": s} and, from the predict object,
                               top, frame_indices (frames of the whole video), masks, kept_ratio,
                               regions, region_ratio, gflops, latency_ms, decode_ms, device
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from afnet.inference.predict import VideoPrediction

if TYPE_CHECKING:
    from afnet.inference.timeline import Timeline

JSON_FIELDS = ("path", "ok", "error", "top", "frame_indices", "points", "masks", "kept_ratio",
               "regions", "region_ratio", "gflops", "latency_ms", "decode_ms", "views", "execution", "precision",
               "device", "compile")


TIMELINE_FIELDS = ("path", "ok", "error", "duration", "frames", "window", "stride", "top", "segments", "smooth",
                   "min_segment", "points", "gflops", "decoded_frames", "windows")
WINDOW_FIELDS = ("top", "frame_indices", "masks", "kept_ratio", "regions", "region_ratio", "gflops",
                 "latency_ms", "decode_ms", "device")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def prediction_to_json(p: VideoPrediction) -> dict:
    """The JSON object of one video (keys :data:`JSON_FIELDS`)."""
    return {
        "path": p.path,
        "ok": p.ok,
        "error": p.error,
        "top": _top(p.top),
        "frame_indices": p.frame_indices,
        "points": p.points,
        "masks": p.masks,
        "kept_ratio": [round(r, 4) for r in p.kept_ratio],
        "regions": p.regions,
        "region_ratio": [_round(r, 4) for r in p.region_ratio],
        "gflops": _round(p.gflops, 5),
        "latency_ms": _round(p.latency_ms, 3),
        "decode_ms": _round(p.decode_ms, 3),
        "views": p.views,
        "execution": p.execution,
        "precision": p.precision,
        "device": p.device,
        "compile": p.compile,
    }


def _top(top) -> list[dict]:
    return [{**t, "score": round(t["score"], 6)} for t in top]


def timeline_to_json(t: Timeline) -> dict:
    """The JSON object of one video's timeline (keys :data:`TIMELINE_FIELDS`)."""
    windows = []
    for w in t.windows:
        row = prediction_to_json(w.prediction)
        windows.append({"start": round(w.start, 4), "end": round(w.end, 4)} | {k: row[k] for k in WINDOW_FIELDS})
    return {
        "path": t.path, "ok": t.ok, "error": t.error, "duration": round(t.duration, 4), "frames": t.num_frames,
        "window": t.window, "stride": t.stride, "top": _top(t.top),
        "segments": [{"start": round(s.start, 4), "end": round(s.end, 4), "class": s.label, "name": s.name,
                      "score": round(s.score, 6)} for s in t.segments],
        "smooth": t.smooth, "min_segment": t.min_segment,
        "points": t.points, "gflops": _round(t.gflops, 5), "decoded_frames": t.decoded_frames,
        "windows": windows,
    }


def to_json_line(p: VideoPrediction | Timeline) -> str:
    """One line of JSON: :func:`prediction_to_json` or :func:`timeline_to_json`."""
    row = prediction_to_json(p) if isinstance(p, VideoPrediction) else timeline_to_json(p)
    return json.dumps(row, ensure_ascii=False)


def mask_string(mask: list[int]) -> str:
    """``[1, 0, 0, 1]`` -> ``"#..#"`` (``#`` = focal branch computed the frame)."""
    return "".join("#" if v else "." for v in mask)


def _label(c: int, name: str | None) -> str:
    return f"{name} ({c})" if name is not None else f"class {c}"


def format_prediction(p: VideoPrediction) -> str:
    """Several lines of text for one video (or one line naming the failure)."""
    if not p.ok:
        return f"{p.path}: FAILED: {p.error}"
    lines = [p.path]
    for rank, t in enumerate(p.top, 1):
        lines.append(f"  {rank}. {t['score']:6.1%}  {_label(t['class'], t['name'])}")
    if p.masks:
        t = len(p.masks[0])
        regions = "; regions: share of the g x g regions computed on kept frames" if p.regions else ""
        lines.append(f"  frames computed by the focal branch (# kept, . skipped; {t} frames "
                     f"{p.frame_indices}{regions}):")
        width = max(len(n) for n in p.points)
        for i, (name, mask) in enumerate(zip(p.points, p.masks)):
            line = f"    {name:<{width}}  {mask_string(mask)}  {sum(mask)}/{len(mask)}"
            if p.regions:
                g, ratio = len(p.regions[i][0]), p.region_ratio[i]
                line += f"  regions {'-' if ratio is None else f'{ratio:4.0%}'} of {g}x{g}"
            lines.append(line)
    flops = "n/a" if p.gflops is None else f"{p.gflops:.3f}"
    views = "" if p.views == 1 else f", {p.views} views"
    lines.append(f"  {flops} GFLOPs, {p.latency_ms:.1f} ms model call ({p.execution}, {p.precision}) "
                 f"(+{p.decode_ms:.1f} ms decode and transforms){views}")
    return "\n".join(lines)


def format_timeline(t: Timeline) -> str:
    """Lines of text for one video's timeline: the video's top-k (mean of window scores), its
    segments, then one line per window (top-1 and, per navigation point, the frames kept)."""
    if not t.ok:
        return f"{t.path}: FAILED: {t.error}"
    flops = "" if t.gflops is None else f", {t.gflops:.3f} GFLOPs"
    lines = [f"{t.path}: {t.duration:.1f} s, {t.num_frames} frames, {len(t.windows)} windows of {t.window:g} s "
             f"every {t.stride:g} s ({t.decoded_frames} frames decoded{flops})",
             "  video (mean of window scores):"]
    lines += [f"  {rank}. {c['score']:6.1%}  {_label(c['class'], c['name'])}" for rank, c in enumerate(t.top, 1)]
    how = [f"smoothed {t.smooth}"] if t.smooth else []
    how += [f"at least {t.min_segment:g} s"] if t.min_segment else []
    lines.append(f"  segments ({', '.join(how)}):" if how else "  segments:")
    lines += [f"    {s.start:8.2f} - {s.end:8.2f} s  {_label(s.label, s.name)}  {s.score:.1%}" for s in t.segments]
    points = " ".join(t.points)
    lines.append(f"  windows (top-1; frames kept per point{': ' + points if points else ''}):")
    for w in t.windows:
        best = w.prediction.top[0]
        masks = " ".join(mask_string(m) for m in w.prediction.masks)
        label = _label(best["class"], best["name"])
        lines.append(f"    {w.start:8.2f} - {w.end:8.2f} s  {best['score']:6.1%}  {label}  {masks}".rstrip())
    return "\n".join(lines)
