"""Where the demo's small AFNet becomes cheaper than TSN in wall-clock, on this CPU.

The demo trains AF-ResNet-small and TSN-ResNet-small at 32x32 with 8 frames, where per-operator
overhead dominates: AFNet's extra operators (navigation, gather/scatter, fusion, the ample
branch) cost more time than its saved FLOPs. This script times both, prepared for inference
as ``afnet predict`` runs them, over input sizes and frame counts, at batch 1, interleaved
round-robin (medians of ``--rounds`` rounds after one warm-up round) in one run. AFNet runs
with a fixed uniform policy at ratio 0.5 (exactly half of the frames at each point, as a
navigation at RT 0.5 keeps on average), sparse execution.

Usage: python benchmarks/bench_demo_scale.py [--sizes 32 64 112 160 224] [--frames 8 16] [--rounds 7]
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from afnet import count_flops, create_model
from afnet.benchmark import markdown_table, time_round_robin
from afnet.runtime import cpu_description, prepare_for_inference


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 112, 160, 224])
    ap.add_argument("--frames", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_description()}; torch {torch.__version__}, "
          f"{args.threads} threads, batch 1, fp32, medians of {args.rounds} interleaved rounds after 1 warm-up\n")
    rows = []
    for t in args.frames:
        af = prepare_for_inference(create_model("af_resnet_small", num_classes=8, num_frames=t, selection="uniform",
                                                ratio=0.5), tune_malloc=False)
        tsn = prepare_for_inference(create_model("tsn_resnet_small", num_classes=8, num_frames=t), tune_malloc=False)
        for size in args.sizes:
            x = torch.randn(1, t, 3, size, size).contiguous(memory_format=torch.contiguous_format)
            g_af, g_tsn = count_flops(af, x), count_flops(tsn, x)
            ms = time_round_robin({"af": lambda: af(x), "tsn": lambda: tsn(x)}, rounds=args.rounds)
            rows.append([t, size, round(g_af, 4), round(g_tsn, 4), round(g_af / g_tsn, 3),
                         round(ms["af"] * 1e3, 2), round(ms["tsn"] * 1e3, 2), round(ms["af"] / ms["tsn"], 3)])
    print(markdown_table(["frames", "size", "GFLOPs AF (0.5)", "GFLOPs TSN", "FLOPs ratio", "ms AF", "ms TSN",
                          "latency ratio AF/TSN"], rows))


if __name__ == "__main__":
    main()
