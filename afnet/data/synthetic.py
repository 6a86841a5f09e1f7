"""Synthetic video dataset whose classes need temporal reasoning and frame selection.

::

    make_synthetic(out, seed) ─ per video: SeedSequence(seed, split, i) ─> render (T,H,W,3)
        ├─ frames/<split>/video_NNNNN/00001.jpg ...   + <split>_frames.txt (path T label)
        ├─ videos/<split>/video_NNNNN.mp4 (H.264)     + <split>_videos.txt (path label)
        └─ category.txt, synthetic.json (settings)

Classes (the first ``num_classes`` of :data:`CLASSES`, at most 8):

* ``moving left to right`` / ``moving right to left`` / ``moving top to bottom`` /
  ``moving bottom to top``: the target square travels across the frame;
* ``red flash then blue flash`` / ``blue flash then red flash``: two brief
  (1-2 frame) flashes at random times, the target square jitters in place;
* ``growing`` / ``shrinking``: the target square changes size in place.

Fairness: no single frame identifies a class. The target's position, size and
colour have the same per-frame distribution in every class (sizes and
positions are drawn over the same ranges); every video of the non-flash
classes has, with probability 1/2, one red or blue flash, so a flash frame
does not reveal the flash classes and its colour not their order; distractor
squares random-walk in every video; every frame has pixel noise. Telling the
classes apart needs at least two frames in the right order (direction, size
change, flash order) and, for flashes, picking the few salient frames.
``difficulty`` in [0, 1] raises noise, distractor count, and shortens
motion and flashes.

``task="evidence"`` (the demo's task) is per-frame recognition with the evidence in a few
frames: every frame shows a carrier square (random colour, slowly drifting) among
random-walking distractor squares on a textured background. In 2 or 3 frames (the
*evidence frames*, at random times) the carrier bears the glyph of the video's class (one
of :data:`EVIDENCE_CLASSES`, a 5x5 pattern of one-pixel strokes at 32 pixels); in every
other frame it is plain. A per-frame model can solve it (a frame with the glyph identifies
the class), and the frames without evidence are redundant. The evidence frames of each
video are written to ``evidence.json`` (``{listed path: [0-based frame indices]}``), so
that the share of the frames a model computes that carry evidence (navigation precision)
can be measured. :func:`make_glyph_images` writes single images of all 16 glyphs (the
classes' and :data:`OTHER_GLYPHS`) in the ImageNet folder layout: the pre-training set
shared by every model of the demo, as the paper pre-trains on ImageNet.

Deterministic: the same ``seed`` gives the same JPEG bytes and the same decoded
mp4 pixels.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from afnet._imports import require

av = require("av", "writing the synthetic videos")

CLASSES = (
    "moving left to right",
    "moving right to left",
    "red flash then blue flash",
    "blue flash then red flash",
    "moving top to bottom",
    "moving bottom to top",
    "growing",
    "shrinking",
)
RED = np.array([225.0, 30.0, 30.0])
BLUE = np.array([30.0, 40.0, 225.0])
# Target and distractor colours: neither red nor blue.
PALETTE = np.array([[230, 220, 40], [40, 210, 90], [40, 210, 210], [220, 60, 220],
                    [235, 235, 235], [240, 140, 30]], dtype=np.float64)
SPLITS = ("train", "val")
EVIDENCE_FILE = "evidence.json"   # the evidence task's {listed path: evidence frames}
TASKS = ("temporal", "evidence")

# 5x5 glyphs ('#' = stroke), drawn with cells of max(1, size // 32) pixels on the carrier.
GLYPHS = {
    "plus": ("..#..", "..#..", "#####", "..#..", "..#.."),
    "cross": ("#...#", ".#.#.", "..#..", ".#.#.", "#...#"),
    "ring": ("#####", "#...#", "#...#", "#...#", "#####"),
    "tee": ("#####", "..#..", "..#..", "..#..", "..#.."),
    "ell": ("#....", "#....", "#....", "#....", "#####"),
    "aitch": ("#...#", "#...#", "#####", "#...#", "#...#"),
    "checker": ("#.#.#", ".#.#.", "#.#.#", ".#.#.", "#.#.#"),
    "zed": ("#####", "...#.", "..#..", ".#...", "#####"),
    "ess": ("#####", "#....", "#####", "....#", "#####"),
    "bars": ("#####", ".....", "#####", ".....", "#####"),
    "columns": ("#.#.#", "#.#.#", "#.#.#", "#.#.#", "#.#.#"),
    "arrow": ("..#..", ".###.", "#.#.#", "..#..", "..#.."),
    "dots": ("#...#", ".....", "..#..", ".....", "#...#"),
    "hook": ("###..", "#....", "#....", "....#", "..###"),
    "diagonal": ("#....", ".#...", "..#..", "...#.", "....#"),
    "box": (".....", ".###.", ".#.#.", ".###.", "....."),
}
EVIDENCE_CLASSES = tuple(list(GLYPHS)[:8])   # the evidence task's classes
OTHER_GLYPHS = tuple(list(GLYPHS)[8:])       # in the pre-training images only


@dataclass(frozen=True)
class SyntheticDataset:
    """Paths written by :func:`make_synthetic`."""

    root: Path
    category_file: Path
    frame_lists: dict  # split -> list file (frame folders)
    video_lists: dict  # split -> list file (mp4)
    num_classes: int
    num_frames: int
    size: int


def _square(frame, cy, cx, side, colour, alpha=1.0):
    h, w = frame.shape[:2]
    half = side / 2
    y0, y1 = int(round(max(cy - half, 0))), int(round(min(cy + half, h)))
    x0, x1 = int(round(max(cx - half, 0))), int(round(min(cx + half, w)))
    if y1 > y0 and x1 > x0:
        frame[y0:y1, x0:x1] = (1 - alpha) * frame[y0:y1, x0:x1] + alpha * colour


def _scene(rng: np.random.Generator, size: int, num_frames: int, difficulty: float) -> np.ndarray:
    """Float ``(T, S, S, 3)``: a static smooth background texture with small distractor
    squares random-walking over it (palette colours; more with ``difficulty``)."""
    t_count, s = num_frames, size
    coarse = rng.uniform(50, 150, size=(4, 4, 3))
    ramp = np.linspace(0, 3, s)
    iy, ix = np.clip(ramp.astype(int), 0, 2), ramp - np.clip(ramp.astype(int), 0, 2)
    rows = coarse[iy] * (1 - ix)[:, None, None] + coarse[iy + 1] * ix[:, None, None]
    background = rows[:, iy] * (1 - ix)[None, :, None] + rows[:, iy + 1] * ix[None, :, None]
    frames = np.repeat(background[None], t_count, axis=0)
    for _ in range(1 + int(round(3 * difficulty))):
        pos = rng.uniform(0.1 * s, 0.9 * s, size=2)
        steps = rng.normal(0, 0.04 * s, size=(t_count, 2)).cumsum(axis=0)
        colour, side = PALETTE[rng.integers(len(PALETTE))], rng.uniform(0.06, 0.1) * s
        for t in range(t_count):
            y, x = np.clip(pos + steps[t], 0, s)
            _square(frames[t], y, x, side, colour)
    return frames


def _finish(frames: np.ndarray, rng: np.random.Generator, difficulty: float) -> np.ndarray:
    """Pixel noise (stronger with ``difficulty``), rounded to uint8."""
    noise = rng.normal(0, 3 + 12 * difficulty, size=frames.shape)
    return np.clip(np.rint(frames + noise), 0, 255).astype(np.uint8)


def render_video(label: int, rng: np.random.Generator, *, size: int = 64, num_frames: int = 16,
                 difficulty: float = 0.5) -> np.ndarray:
    """One video of class ``label`` (index into :data:`CLASSES`): uint8 ``(T, H, W, 3)``."""
    t_count, s = num_frames, size
    name = CLASSES[label]
    frames = _scene(rng, s, t_count, difficulty)

    # Target square: sizes in [lo, hi] for every class.
    lo, hi = 0.14 * s, 0.26 * s
    side = np.full(t_count, rng.uniform(lo, hi))
    colour = PALETTE[rng.integers(len(PALETTE))]
    jitter = rng.normal(0, 0.01 * s, size=(t_count, 2))
    margin = hi / 2 + 1
    travel = rng.uniform(0.45, 0.65 - 0.15 * difficulty) * s
    progress = np.linspace(0, 1, t_count)
    centre = rng.uniform(margin, s - margin, size=2)[None].repeat(t_count, axis=0)
    if name.startswith("moving"):
        axis = 1 if ("left" in name) else 0
        forward = name in ("moving left to right", "moving top to bottom")
        start = rng.uniform(margin, s - margin - travel)
        path = start + travel * (progress if forward else 1 - progress)
        centre[:, axis] = path
    elif name in ("growing", "shrinking"):
        grow = np.linspace(lo, hi, t_count)
        side = grow if name == "growing" else grow[::-1]
    centre = np.clip(centre + jitter, margin, s - margin)
    for t in range(t_count):
        _square(frames[t], centre[t, 0], centre[t, 1], side[t], colour)

    # Flashes: brief coloured squares at random places.
    flash_len = 1 if difficulty >= 0.5 else 2
    flash_side, alpha = 0.3 * s, 1.0 - 0.35 * difficulty
    if "flash" in name:
        first, second = (RED, BLUE) if name.startswith("red") else (BLUE, RED)
        t1 = int(rng.integers(0, t_count // 2 - flash_len + 1))
        t2 = int(rng.integers(t1 + flash_len + 1, t_count - flash_len + 1))
        events = [(t1, first), (t2, second)]
    elif rng.random() < 0.5:
        events = [(int(rng.integers(0, t_count - flash_len + 1)),
                   RED if rng.random() < 0.5 else BLUE)]
    else:
        events = []
    for t0, flash_colour in events:
        y, x = rng.uniform(flash_side / 2, s - flash_side / 2, size=2)
        for t in range(t0, t0 + flash_len):
            _square(frames[t], y, x, flash_side, flash_colour, alpha)
    return _finish(frames, rng, difficulty)


def _glyph_mask(name: str, cell: int) -> np.ndarray:
    rows = np.array([[c == "#" for c in row] for row in GLYPHS[name]])
    return np.kron(rows, np.ones((cell, cell), dtype=bool))


def carrier_side(size: int) -> int:
    """The carrier square's side at frame side ``size``: the 5x5 glyph with a one-pixel rim."""
    return 5 * max(1, size // 32) + 2


def render_glyph_frames(glyphs: list, rng: np.random.Generator, *, size: int = 32,
                        difficulty: float = 0.5, region: tuple[int, int, int] | None = None) -> np.ndarray:
    """uint8 ``(len(glyphs), S, S, 3)``: the evidence task's scene, the carrier square
    bearing ``glyphs[t]`` (a name of :data:`GLYPHS`, or None: plain) in frame ``t``.
    ``region`` ``(row, column, grid)``: the carrier stays wholly inside that cell of a
    ``grid x grid`` grid over the frame (None: anywhere in the frame)."""
    t_count, s = len(glyphs), size
    frames = _scene(rng, s, t_count, difficulty)
    cell = max(1, s // 32)
    side = carrier_side(s)
    colour = PALETTE[rng.integers(len(PALETTE))]
    lo, hi = np.full(2, side / 2 + 1), np.full(2, s - side / 2 - 1)
    if region is not None:
        row, column, grid = region
        start = np.array([row, column]) * s / grid
        lo, hi = start + side / 2 + 1, start + s / grid - side / 2 - 1
    drift = rng.normal(0, 0.03 * s, size=(t_count, 2)).cumsum(axis=0)
    centre = np.clip(rng.uniform(lo, hi, size=2) + drift, lo, hi)
    for t, name in enumerate(glyphs):
        y0, x0 = (int(round(c - side / 2)) for c in centre[t])
        frames[t, y0:y0 + side, x0:x0 + side] = colour
        if name is not None:
            inner = frames[t, y0 + 1:y0 + side - 1, x0 + 1:x0 + side - 1]
            inner[_glyph_mask(name, cell)] = 0.25 * colour
    return _finish(frames, rng, difficulty)


def render_evidence_video(label: int, rng: np.random.Generator, *, size: int = 32, num_frames: int = 8,
                          difficulty: float = 0.5, region_grid: int = 0) -> tuple[np.ndarray, dict]:
    """One video of the evidence task, class ``label`` (index into :data:`EVIDENCE_CLASSES`):
    uint8 ``(T, H, W, 3)`` and its evidence entry (:func:`~afnet.data.annotations.load_evidence`):
    ``{"frames": sorted 0-based evidence frames}``, and with ``region_grid`` G > 0 the carrier
    kept in one cell of a G x G grid (drawn per video), recorded per frame as ``"regions"``
    (raster index of the cell) with ``"grid": G``."""
    count = 2 + int(rng.integers(2))
    evidence = sorted(int(t) for t in rng.choice(num_frames, size=count, replace=False))
    glyphs = [EVIDENCE_CLASSES[label] if t in evidence else None for t in range(num_frames)]
    if not region_grid:
        return render_glyph_frames(glyphs, rng, size=size, difficulty=difficulty), {"frames": evidence}
    cell = int(rng.integers(region_grid * region_grid))
    video = render_glyph_frames(glyphs, rng, size=size, difficulty=difficulty,
                                region=(cell // region_grid, cell % region_grid, region_grid))
    return video, {"frames": evidence, "regions": [cell] * num_frames, "grid": region_grid}


def _jpeg_encoder(size: int):
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width = ctx.height = size
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"qmin": "2", "qmax": "3"}
    ctx.open()
    return ctx


def write_frames(folder: Path, video: np.ndarray, encoder) -> None:
    """``folder/00001.jpg ...`` (numbered from 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, rgb in enumerate(video, start=1):
        frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb, full_range=True), format="yuvj420p")
        packets = encoder.encode(frame)
        (folder / f"{t:05d}.jpg").write_bytes(b"".join(bytes(p) for p in packets))


def rgb_to_yuv420p(rgb: np.ndarray, full_range: bool = False) -> np.ndarray:
    """RGB ``(H, W, 3)`` -> planar yuv420p ``(H * 3 // 2, W)`` (BT.601; limited range, or
    full range for JPEG's yuvj420p), computed here rather than by swscale so that the
    encoder input is exactly reproducible."""
    x = rgb.astype(np.float64)
    if full_range:
        y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
        u = 128 - 0.168736 * x[..., 0] - 0.331264 * x[..., 1] + 0.5 * x[..., 2]
        v = 128 + 0.5 * x[..., 0] - 0.418688 * x[..., 1] - 0.081312 * x[..., 2]
    else:
        y = 16 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255
        u = 128 + (-37.797 * x[..., 0] - 74.203 * x[..., 1] + 112.0 * x[..., 2]) / 255
        v = 128 + (112.0 * x[..., 0] - 93.786 * x[..., 1] - 18.214 * x[..., 2]) / 255
    h, w = rgb.shape[:2]
    sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    planes = [y.reshape(-1), sub(u).reshape(-1), sub(v).reshape(-1)]
    out = np.concatenate([np.clip(np.rint(p), 0, 255) for p in planes]).astype(np.uint8)
    return out.reshape(h * 3 // 2, w)


def write_mp4(path: Path, video: np.ndarray, fps: int = 12) -> None:
    """H.264 (yuv420p) mp4, deterministic encoder settings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt = "yuv420p"
        # Lossless (qp 0): the decoded frames are exactly the YUV computed above, whatever
        # the encoder decides. (At crf 18 the bitstream differed in about 1 test-suite run in
        # 10 inside a long process, cause not found.) One thread, no B-frames.
        stream.thread_count = 1
        stream.options = {"qp": "0", "preset": "veryfast", "g": "8",
                          "x264-params": "threads=1:lookahead-threads=1:bframes=0"}
        for t, rgb in enumerate(video):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb), format="yuv420p")
            frame.pts = t
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_synthetic(out, *, num_train: int = 320, num_val: int = 96, num_classes: int = 8,
                   num_frames: int = 16, size: int = 64, difficulty: float = 0.5,
                   seed: int = 0, frames: bool = True, videos: bool = True,
                   task: str = "temporal", region_grid: int = 0) -> SyntheticDataset:
    """Write the synthetic dataset under ``out`` (see module docstring). ``task``:
    ``temporal`` (:data:`CLASSES`) or ``evidence`` (:data:`EVIDENCE_CLASSES`, with
    ``evidence.json``). ``region_grid`` G > 0 (evidence task): each video's carrier stays in
    one cell of a G x G grid, recorded per frame in ``evidence.json`` (region precision)."""
    if task not in TASKS:
        raise ValueError(f"task={task!r}; accepted: {', '.join(TASKS)}")
    if region_grid and task != "evidence":
        raise ValueError(f"region_grid={region_grid} needs task='evidence'")
    if region_grid < 0 or (region_grid and size / region_grid < carrier_side(size) + 4):
        raise ValueError(f"region_grid={region_grid}; accepted: 0 (none) or a grid whose cells ({size} / grid "
                         f"pixels) hold the {carrier_side(size)}-pixel carrier with room to drift")
    classes = CLASSES if task == "temporal" else EVIDENCE_CLASSES
    if not 2 <= num_classes <= len(classes):
        raise ValueError(f"num_classes={num_classes}; accepted: 2..{len(classes)}")
    least = 8 if task == "temporal" else 4
    if num_frames < least:
        raise ValueError(f"num_frames={num_frames}; accepted: >= {least} "
                         f"({'flashes need room' if task == 'temporal' else 'evidence in 2-3 frames of more'})")
    if size < 32 or size % 2:
        raise ValueError(f"size={size}; accepted: an even number of pixels >= 32")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty={difficulty}; accepted: 0..1")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "category.txt").write_text("\n".join(classes[:num_classes]) + "\n")
    encoder = _jpeg_encoder(size) if frames else None
    frame_lists, video_lists, evidence = {}, {}, {}
    for split_id, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
        frame_lines, video_lines = [], []
        for i in range(count):
            label = i % num_classes
            rng = np.random.default_rng(np.random.SeedSequence([seed, split_id, i]))
            if task == "temporal":
                video, frames_with_evidence = render_video(label, rng, size=size, num_frames=num_frames,
                                                           difficulty=difficulty), None
            else:
                video, frames_with_evidence = render_evidence_video(label, rng, size=size, num_frames=num_frames,
                                                                    difficulty=difficulty, region_grid=region_grid)
            name = f"video_{i:05d}"
            written = []
            if frames:
                write_frames(root / "frames" / split / name, video, encoder)
                frame_lines.append(f"frames/{split}/{name} {num_frames} {label}")
                written.append(f"frames/{split}/{name}")
            if videos:
                write_mp4(root / "videos" / split / f"{name}.mp4", video)
                video_lines.append(f"videos/{split}/{name}.mp4 {label}")
                written.append(f"videos/{split}/{name}.mp4")
            if frames_with_evidence is not None:   # frames only: the plain list of evidence frames
                entry = frames_with_evidence if region_grid else frames_with_evidence["frames"]
                evidence.update(dict.fromkeys(written, entry))
        if frames:
            frame_lists[split] = root / f"{split}_frames.txt"
            frame_lists[split].write_text("\n".join(frame_lines) + "\n")
        if videos:
            video_lists[split] = root / f"{split}_videos.txt"
            video_lists[split].write_text("\n".join(video_lines) + "\n")
    if task == "evidence":
        (root / EVIDENCE_FILE).write_text(json.dumps(evidence, indent=0) + "\n")
    settings = {"task": task, "num_classes": num_classes, "num_frames": num_frames, "size": size,
                "difficulty": difficulty, "seed": seed, "num_train": num_train,
                "num_val": num_val, **({"region_grid": region_grid} if region_grid else {})}
    (root / "synthetic.json").write_text(json.dumps(settings, indent=1) + "\n")
    return SyntheticDataset(root, root / "category.txt", frame_lists, video_lists,
                            num_classes, num_frames, size)


def make_glyph_images(out, *, num_train: int = 4000, num_val: int = 800, size: int = 32,
                      difficulty: float = 0.5, seed: int = 0) -> Path:
    """Single-frame images of all 16 :data:`GLYPHS` (the evidence task's class glyphs and its
    decoys) in the evidence task's scenes, in the ImageNet folder layout
    ``out/<split>/<glyph>/NNNNN.jpg`` (the ``imagefolder`` preset): the demo's pre-training
    set, as the paper pre-trains on ImageNet. Returns ``out``."""
    if size < 32 or size % 2:
        raise ValueError(f"size={size}; accepted: an even number of pixels >= 32")
    root = Path(out)
    encoder = _jpeg_encoder(size)
    names = list(GLYPHS)
    for split_id, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
        for name in names:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            name = names[i % len(names)]
            # streams apart from make_synthetic's: [seed, 2 + split, i]
            rng = np.random.default_rng(np.random.SeedSequence([seed, 2 + split_id, i]))
            image = render_glyph_frames([name], rng, size=size, difficulty=difficulty)[0]
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(image, full_range=True), format="yuvj420p")
            (root / split / name / f"{i:05d}.jpg").write_bytes(b"".join(bytes(p) for p in encoder.encode(frame)))
    return root


def synthetic_config(root, **overrides):
    """The ``synthetic`` preset adapted to the dataset written under ``root``."""
    from afnet.data.presets import get_preset

    settings = json.loads((Path(root) / "synthetic.json").read_text())
    size = settings["size"]
    defaults = {"num_classes": settings["num_classes"], "scale_size": size,
                "input_size": size * 7 // 8}
    defaults.update(overrides)
    return get_preset("synthetic", **defaults)


def synthetic_dataset(root, split: str = "train", *, source: str = "frames",
                      train: bool | None = None, **kwargs):
    """Build a :class:`~afnet.data.dataset.VideoDataset` from :func:`make_synthetic`
    output in one call. ``source`` is ``"frames"`` or ``"videos"``; ``kwargs``
    go to :func:`~afnet.data.dataset.build_dataset` (``seed``, ``backend``,
    ``on_error``) or override preset fields."""
    from afnet.data.dataset import build_dataset

    if split not in SPLITS:
        raise ValueError(f"split={split!r}; accepted: {', '.join(SPLITS)}")
    if source not in ("frames", "videos"):
        raise ValueError(f"source={source!r}; accepted: 'frames', 'videos'")
    build_keys = {"backend", "seed", "on_error", "threads", "evidence_file", "limits"}
    build_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in build_keys}
    config = synthetic_config(root, **kwargs)
    list_file = os.path.join(root, f"{split}_{source}.txt")
    train = split == "train" if train is None else train
    return build_dataset(config, root, list_file, train=train, kind=source,
                         class_file=os.path.join(root, "category.txt"), **build_kwargs)
