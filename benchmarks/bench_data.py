"""Data-pipeline throughput: clips/s (sampled, decoded, transformed), one process.

Writes a test set (H.264 mp4 videos and the same frames as JPEG folders), then
for each source/backend loads ``--clips`` clips with TSN training sampling and
the training transform (multi-scale crop, resize 224, normalise) on the SAME
files and indices, and prints a Markdown table. Backends not installed are
listed as such.

    python benchmarks/bench_data.py [--videos 12] [--frames 250] [--clips 96]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from afnet.data.decoding import FrameFolderReader, available_backends, open_video
from afnet.data.presets import get_preset
from afnet.data.sampling import sample_generator, sample_indices
from afnet.data.transforms import train_transform


def render(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """Moving textured frames with noise (compresses like real footage, roughly)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(height // 8 + 2, width // 8 + 2, 3)).astype(np.uint8)
    texture = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        dy, dx = (t // 3) % 16, t % 16
        frame = texture[dy:dy + height, dx:dx + width].astype(np.int16)
        frame += rng.integers(-8, 9, size=frame.shape, dtype=np.int16)
        frames[t] = np.clip(frame, 0, 255)
    return frames


def write_dataset(root: Path, videos: int, frames: int, height: int, width: int):
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuvj420p"
    enc.time_base = Fraction(1, 25)
    enc.options = {"qmin": "2", "qmax": "5"}
    enc.open()
    items = []
    for v in range(videos):
        clip = render(frames, height, width, v)
        path = root / f"v{v:03d}.mp4"
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = width, height, "yuv420p"
            s.options = {"preset": "veryfast", "crf": "23"}  # x264 defaults: GOP 250, B-frames
            for rgb in clip:
                for p in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        folder = root / f"v{v:03d}"
        folder.mkdir()
        for t, rgb in enumerate(clip, start=1):
            packets = enc.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24"))
            data = b"".join(bytes(p) for p in packets)
            (folder / f"{t:05d}.jpg").write_bytes(data)
        items.append((path, folder))
    return items


class PILFolderReader(FrameFolderReader):
    """Frame folder decoded with Pillow (for comparison only)."""

    def get_frames(self, indices):
        from PIL import Image

        arrs = []
        for i in [int(i) for i in indices]:
            with Image.open(self.frame_path(i)) as im:
                arrs.append(np.asarray(im.convert("RGB")))
        return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)


def bench(open_fn, items, config, clips: int) -> float:
    start = time.perf_counter()
    for k in range(clips):
        item = items[k % len(items)]
        g = sample_generator(0, 0, k)
        with open_fn(item) as reader:
            idx = sample_indices(len(reader), config.num_frames, train=True, generator=g)
            clip = train_transform(reader.get_frames(idx), config, g)
        assert clip.shape[0] == config.num_frames
    return clips / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--frames", type=int, default=250, help="frames per video (25 fps)")
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--clips", type=int, default=96, help="clips per measurement")
    ap.add_argument("--num-frames", type=int, default=8, help="frames per clip (T)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best kept)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    config = get_preset("kinetics", num_frames=args.num_frames)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        items = write_dataset(Path(tmp), args.videos, args.frames, args.height, args.width)
        backends = available_backends()
        cases = [("frame folders (JPEG)", "pyav (default)",
                  lambda it: FrameFolderReader(str(it[1]), "{:05d}.jpg", args.frames))]
        try:
            import PIL  # noqa: F401
            cases.append(("frame folders (JPEG)", "Pillow",
                          lambda it: PILFolderReader(str(it[1]), "{:05d}.jpg", args.frames)))
        except ImportError:
            rows.append(("frame folders (JPEG)", "Pillow", "not installed", ""))
        for backend in ("pyav", "decord", "torchcodec"):
            name = "pyav (default)" if backend == "pyav" else backend
            if backend in backends:
                cases.append(("video files (H.264 mp4)", name,
                              lambda it, b=backend: open_video(str(it[0]), b, threads=1)))
            else:
                rows.append(("video files (H.264 mp4)", name, "not installed", ""))
        for case in cases:  # warm-up (page cache, library init)
            bench(case[2], items, config, 4)
        best: dict = {}
        for _ in range(args.rounds):  # interleaved rounds, best of each: robust to load spikes
            for src, name, fn in cases:
                rate = bench(fn, items, config, args.clips)
                best[(src, name)] = max(best.get((src, name), 0.0), rate)
        results = [(src, name, best[(src, name)]) for src, name, _ in cases]
    for src in {r[0] for r in results}:
        best = max(r[2] for r in results if r[0] == src)
        for s, name, rate in results:
            if s == src:
                rows.append((s, name, f"{rate:.1f}", f"{best / rate:.2f}x"))
    rows.sort(key=lambda r: (r[0], r[1] != "pyav (default)"))
    print(f"{args.videos} videos x {args.frames} frames {args.width}x{args.height} (x264 "
          f"defaults: GOP 250, B-frames), T={args.num_frames} TSN train sampling + "
          f"multi-scale crop to 224 + normalise; 1 process, 1 thread, best of {args.rounds}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| source | backend | clips/s | slowdown vs fastest |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
