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
    latency_ms    float | null wall-clock of the model call (decoding excluded)
    decode_ms     float | null decoding + sampling + transforms
    views         int          clips x crops fed to the model (0 on failure)

A failed video has ``ok: false``, its ``error``, empty lists and nulls.
"""
from __future__ import annotations

import json

from afnet.inference.predict import VideoPrediction

JSON_FIELDS = ("path", "ok", "error", "top", "frame_indices", "points", "masks", "kept_ratio",
               "regions", "region_ratio", "gflops", "latency_ms", "decode_ms", "views")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def prediction_to_json(p: VideoPrediction) -> dict:
    """The JSON object of one video (keys :data:`JSON_FIELDS`)."""
    return {
        "path": p.path,
        "ok": p.ok,
        "error": p.error,
        "top": [{"class": c, "name": n, "score": round(s, 6)} for c, n, s in p.top],
        "frame_indices": p.frame_indices,
        "points": p.point_names,
        "masks": p.masks,
        "kept_ratio": [round(r, 4) for r in p.kept_ratio],
        "regions": p.regions,
        "region_ratio": [_round(r, 4) for r in p.region_ratio],
        "gflops": _round(p.gflops, 5),
        "latency_ms": _round(p.latency_ms, 3),
        "decode_ms": _round(p.decode_ms, 3),
        "views": p.num_views,
    }


def to_json_line(p: VideoPrediction) -> str:
    return json.dumps(prediction_to_json(p), ensure_ascii=False)


def mask_string(mask: list[int]) -> str:
    """``[1, 0, 0, 1]`` -> ``"#..#"`` (``#`` = focal branch computed the frame)."""
    return "".join("#" if v else "." for v in mask)


def format_prediction(p: VideoPrediction) -> str:
    """Several lines of text for one video (or one line naming the failure)."""
    if not p.ok:
        return f"{p.path}: FAILED: {p.error}"
    lines = [p.path]
    for rank, (c, name, score) in enumerate(p.top, 1):
        label = f"{name} ({c})" if name is not None else f"class {c}"
        lines.append(f"  {rank}. {score:6.1%}  {label}")
    if p.masks:
        t = len(p.masks[0])
        regions = "; regions: share of the g x g regions computed on kept frames" if p.regions else ""
        lines.append(f"  frames computed by the focal branch (# kept, . skipped; {t} frames "
                     f"{p.frame_indices}{regions}):")
        width = max(len(n) for n in p.point_names)
        for i, (name, mask) in enumerate(zip(p.point_names, p.masks)):
            line = f"    {name:<{width}}  {mask_string(mask)}  {sum(mask)}/{len(mask)}"
            if p.regions:
                g, ratio = len(p.regions[i][0]), p.region_ratio[i]
                line += f"  regions {'-' if ratio is None else f'{ratio:4.0%}'} of {g}x{g}"
            lines.append(line)
    flops = "n/a" if p.gflops is None else f"{p.gflops:.3f}"
    views = "" if p.num_views == 1 else f", {p.num_views} views"
    lines.append(f"  {flops} GFLOPs, {p.latency_ms:.1f} ms model call "
                 f"(+{p.decode_ms:.1f} ms decode and transforms){views}")
    return "\n".join(lines)
