"""Decompression bombs against ``afnet predict``: wall-clock and peak RSS of one command.

Inputs, made here (issue #23):

- ``jpeg_folder``: a frame folder of 16 JPEGs of 8192x8192 (about 2 MB each: a gradient with
  noise, encoded once and copied);
- ``video_8k``: an H.264 video of 7680x4320 frames (8K UHD), 8 frames.

Each is predicted by ``afnet predict --json --no-flops`` with a small random checkpoint
(af_resnet_small, T=8, 4 classes), in a child process whose peak RSS is its
``ru_maxrss`` (``resource.getrusage(RUSAGE_CHILDREN)`` read by a fresh measuring process, so
that nothing else counts). With the default limits (4096x4096 pixels per frame), and, with
``--unlimited``, once more with ``--max-frame-pixels 0`` to show what the limit saves.

Usage: python benchmarks/bench_bombs.py [--unlimited] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def small_checkpoint(folder: str) -> str:
    """af_resnet_small (T=8, 4 classes, random weights), read with the synthetic preset at 48 pixels."""
    import afnet

    path = os.path.join(folder, "small.pt")
    if not os.path.isfile(path):
        model = afnet.create_model("af_resnet_small", num_classes=4, num_frames=8)
        afnet.save_checkpoint(path, model, class_names=["a", "b", "c", "d"],
                              config={"data": {"preset": "synthetic", "input_size": 48}})
    return path


def _pattern(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A gradient with noise (so that the JPEG weighs what a photograph does), ``(H, W, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    tile = rng.integers(0, 64, size=(512, 512, 3), dtype=np.uint8)
    noise = np.tile(tile, (-(-height // 512), -(-width // 512), 1))[:height, :width]
    ramp = (np.arange(width, dtype=np.uint16) * 190 // max(width - 1, 1)).astype(np.uint8)
    return noise + ramp[None, :, None]


def jpeg_folder(folder: str, count: int = 16, side: int = 8192) -> str:
    """``folder`` with ``count`` JPEGs of ``side`` x ``side`` named 00001.jpg, ... (one encoded, copied)."""
    import av

    os.makedirs(folder, exist_ok=True)
    first = os.path.join(folder, "00001.jpg")
    if not os.path.isfile(first):
        ctx = av.CodecContext.create("mjpeg", "w")
        ctx.width = ctx.height = side
        ctx.pix_fmt, ctx.time_base = "yuvj420p", 1
        ctx.options = {"qscale": "4"}
        frame = av.VideoFrame.from_ndarray(_pattern(side, side), format="rgb24").reformat(format="yuvj420p")
        with open(first, "wb") as f:
            f.write(b"".join(bytes(p) for p in ctx.encode(frame)))
    for i in range(2, count + 1):
        target = os.path.join(folder, f"{i:05d}.jpg")
        if not os.path.isfile(target):
            shutil.copyfile(first, target)
    return folder


def h264_video(path: str, frames: int = 8, size=(4320, 7680)) -> str:
    """An H.264 video of ``frames`` frames of ``size`` (height, width)."""
    import av

    if os.path.isfile(path):
        return path
    height, width = size
    picture = _pattern(height, width)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(picture, 64 * i, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


_MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
print(json.dumps({"rc": proc.returncode, "seconds": seconds, "stdout": proc.stdout, "stderr": proc.stderr[-2000:],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def measure(argv: list[str]) -> dict:
    """Run ``argv`` in a child of a fresh measuring process: exit status, wall-clock, peak RSS, output."""
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run([sys.executable, "-c", _MEASURE, *argv], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def refusal_seconds(path: str) -> float:
    """Seconds ``afnet.inference.read_sample`` takes to refuse ``path`` under the default limits
    (the command's own time, without Python's and torch's start-up)."""
    from afnet.data import get_preset
    from afnet.data.limits import LimitExceeded
    from afnet.inference.predict import read_sample

    config = get_preset("synthetic", num_classes=4, num_frames=8, input_size=48, scale_size=55)
    start = time.perf_counter()
    try:
        read_sample(path, config)
    except LimitExceeded:
        return time.perf_counter() - start
    return float("nan")


def predict_command(checkpoint: str, path: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "afnet.cli", "predict", path, "--checkpoint", checkpoint, "--json", "--no-flops",
            "--threads", "1", *extra]


def main() -> None:
    from afnet.runtime import cpu_description

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--unlimited", action="store_true", help="also run with --max-frame-pixels 0 (no limit)")
    p.add_argument("--work", help="folder for the inputs (default: a temporary folder, removed)")
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="afnet-bombs-")
    try:
        ckpt = small_checkpoint(work)
        inputs = {"16 JPEGs 8192x8192": jpeg_folder(os.path.join(work, "jpeg_folder")),
                  "H.264 7680x4320, 8 frames": h264_video(os.path.join(work, "video_8k.mp4"))}
        print(f"CPU: {cpu_description()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}, --threads 1")
        print("| input | size on disk | limits | exit | wall-clock s (whole command) | refusal in process s | "
              "peak RSS MB | answer |")
        print("|---|---|---|---|---|---|---|---|")
        for name, path in inputs.items():
            disk = (sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) if os.path.isdir(path)
                    else os.path.getsize(path)) / 2**20
            runs = [("default (16777216 px)", ())] + ([("none (--max-frame-pixels 0)", ("--max-frame-pixels", "0"))]
                                                      if args.unlimited else [])
            for label, extra in runs:
                r = measure(predict_command(ckpt, path, *extra))
                inside = refusal_seconds(path) if not extra else float("nan")
                row = json.loads(r["stdout"].splitlines()[-1]) if r["stdout"].strip() else {}
                answer = row.get("error") or (f"top-1 {row['top'][0]['name']}" if row.get("top") else r["stderr"][-200:])
                print(f"| {name} | {disk:.1f} MB | {label} | {r['rc']} | {r['seconds']:.2f} | {inside:.3f} | "
                      f"{r['peak_rss_mb']:.0f} | "
                      f"{answer[:150]} |", flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
