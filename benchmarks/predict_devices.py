"""``afnet predict --device cuda`` against ``--device cpu`` on the same videos (issue #22 bar):
the same top-5 classes and the same masks (frames, and regions for the spatial model), probabilities
to float tolerance.

Writes ``--videos`` synthetic videos (mp4 where PyAV is installed, else frame folders) and a
checkpoint per model (af_resnet_small, random weights with navigation that keeps some frames and
skips others; with ``--spatial`` also a spatial one with learned regions), runs ``afnet predict
--json`` on both devices in this process, and prints a Markdown table: videos, same top-5,
same masks, largest probability difference, seconds per device. Exit 1 if anything differs.

Usage: python benchmarks/predict_devices.py [--device cuda] [--videos 100] [--spatial] [--out DIR]
       (--device cpu on both sides: the --cpu-smoke check of benchmarks/gpu_suite.sh)
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import afnet
from afnet.benchmark import markdown_table
from afnet.cli import main as afnet_main
from afnet.inference import read_video_list
from tests.helpers import randomize  # non-trivial BN statistics and navigation decisions

T, K = 8, 8


def checkpoint(path, spatial: bool) -> str:
    extra = dict(spatial=True, region_grid=2, temporal_navigation="block") if spatial else {}
    model = randomize(afnet.create_model("af_resnet_small", num_classes=K, num_frames=T, shift=True, **extra), seed=1)
    afnet.save_checkpoint(path, model, config={"data": {"preset": "synthetic", "input_size": 64}})
    return str(path)


def predict(argv: list[str]) -> tuple[list[dict], float]:
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        rc = afnet_main(["predict", *argv, "--json", "--no-progress"])
    seconds = time.perf_counter() - start
    if rc not in (0, 1):
        raise SystemExit(f"afnet predict {' '.join(argv)}: exit {rc}")
    return [json.loads(line) for line in out.getvalue().splitlines()], seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (default cuda)")
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--spatial", action="store_true", help="also a spatial model (learned regions)")
    parser.add_argument("--precision", default="fp32", help="fp32 (default: full fp32 on the GPU, no TF32) or auto")
    parser.add_argument("--out", help="folder for the videos and checkpoints (default: a temporary one)")
    args = parser.parse_args(argv)
    root = args.out or tempfile.mkdtemp(prefix="afnet-devices-")
    try:
        import av  # noqa: F401 - mp4 only where PyAV can write it
        videos = True
    except ImportError:
        videos = False
    data = afnet.data.make_synthetic(os.path.join(root, "data"), num_train=0, num_val=args.videos,
                                     num_classes=K, num_frames=16, size=64, seed=0, frames=not videos, videos=videos)
    lists = data.video_lists if videos else data.frame_lists
    paths = [p if os.path.exists(p) else os.path.join(str(data.root), p)
             for p in read_video_list(lists["val"] if "val" in lists else list(lists.values())[-1])]
    print(f"# afnet predict --device {args.device} against --device cpu: {args.videos} synthetic "
          f"{'mp4 videos' if videos else 'frame folders'} (64 px), af_resnet_small T={T}, precision "
          f"{args.precision}, torch {torch.__version__}\n")
    rows, failed = [], False
    for spatial in (False, True) if args.spatial else (False,):
        ckpt = checkpoint(os.path.join(root, f"{'spatial' if spatial else 'temporal'}.pt"), spatial)
        common = [*paths, "--checkpoint", ckpt, "--precision", args.precision]
        cpu, cpu_s = predict([*common, "--device", "cpu"])
        dev, dev_s = predict([*common, "--device", args.device])
        pairs = [(a, b) for a, b in zip(cpu, dev) if a["ok"] and b["ok"]]
        same_top = sum([t["class"] for t in a["top"]] == [t["class"] for t in b["top"]] for a, b in pairs)
        same_masks = sum(a["masks"] == b["masks"] and a["regions"] == b["regions"] for a, b in pairs)
        diff = max((abs(x["score"] - y["score"]) for a, b in pairs for x, y in zip(a["top"], b["top"])), default=0.0)
        devices = sorted({r["device"] for r in dev})
        rows.append(["spatial, learned regions" if spatial else "temporal, learned threshold", len(cpu), len(pairs),
                     same_top, same_masks, f"{diff:.1e}", ", ".join(devices), round(cpu_s, 1), round(dev_s, 1)])
        failed |= len(pairs) != len(cpu) or same_top != len(pairs) or same_masks != len(pairs)
    print(markdown_table(["model", "videos", "predicted on both", "same top-5", "same masks",
                          "max top-5 probability diff", "device", "s cpu", f"s {args.device}"], rows), "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
