"""AF's two slow passes against mathematically identical alternatives (issue #22, item 3).

On an H200 (2026-12-04) the ample branch's ``avg_pool2d`` (3x3/2, padding 1) took 0.86-0.89
ms per call and the fusion's broadcast ``lerp`` 0.80 ms per call at batch 32, far beyond
their bytes. Each is timed here at the shapes AF-ResNet50-TSM 12f meets, channels-last, with
its alternatives:

- pooling: ``F.avg_pool2d`` (the model's); a depthwise 3x3/2 convolution with weights 1/9
  (``count_include_pad``: the zeros of the padding count, as in the pool); the same pool on
  an NCHW copy (the layout the kernel may prefer);
- fusion: ``lerp_upsampled`` (one ``lerp`` reading the ample map through a broadcast view);
  ``focal * (1 - theta)`` then ``+= up(ample) * theta`` through the same view (two passes, the
  second also broadcast); the ample map upsampled into a full map first, then a plain ``lerp``.

Every alternative is checked against the model's pass (max abs difference). Replace a pass
only where its alternative is equal to float tolerance and not slower on the CPU.

Usage: python benchmarks/af_passes.py [--device cuda] [--batch 32] [--rounds 20] [--bf16] [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from afnet.benchmark import markdown_table, time_round_robin
from afnet.models.layers import lerp_upsampled
from afnet.runtime import cpu_description

# (channels, side) of the ample branch's input to each pooling, and of each fusion's focal map,
# AF-ResNet50 at 224: layer1 to layer4.
POOLS = ((256, 56), (512, 28), (1024, 14))
FUSIONS = ((256, 56), (512, 28), (1024, 14), (2048, 7))


def pool_candidates(x):
    c = x.shape[1]
    weight = torch.full((c, 1, 3, 3), 1 / 9, device=x.device, dtype=x.dtype)
    nchw = x.contiguous()
    return {"avg_pool2d (model)": lambda: F.avg_pool2d(x, 3, 2, 1),
            "depthwise conv 1/9": lambda: F.conv2d(x, weight, stride=2, padding=1, groups=c),
            "avg_pool2d on NCHW": lambda: F.avg_pool2d(nchw, 3, 2, 1)}


def fusion_candidates(focal, ample, theta):
    n, c, hh, ww = focal.shape

    def two_passes():
        f = focal.permute(0, 2, 3, 1).reshape(n, hh // 2, 2, ww // 2, 2, c)
        a = ample.permute(0, 2, 3, 1).reshape(n, hh // 2, 1, ww // 2, 1, c)
        t = theta.reshape(n, 1, 1, 1, 1, c)
        return (f * (1 - t)).add_(a * t).view(n, hh, ww, c).permute(0, 3, 1, 2)

    def upsampled_first():
        up = F.interpolate(ample, scale_factor=2, mode="nearest").contiguous(memory_format=torch.channels_last)
        return torch.lerp(focal, up, theta)

    return {"lerp_upsampled (model)": lambda: lerp_upsampled(focal, ample, theta, (2, 2)),
            "mul, then add of a broadcast": two_passes,
            "upsample, then lerp": upsampled_first}


def compare(candidates, rounds):
    """(name, ms, ratio to the first, max abs diff to the first) per candidate."""
    with torch.inference_mode():
        ref = next(iter(candidates.values()))()
        diffs = {name: (fn() - ref).abs().max().item() for name, fn in candidates.items()}
        t = time_round_robin(candidates, rounds=rounds)
    first = next(iter(t.values()))
    return [(name, round(t[name] * 1e3, 3), round(t[name] / first, 3), f"{diffs[name]:.1e}") for name in candidates]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8, help="videos of 12 frames (default 8)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="batch 1, 2 rounds, the first shape only: a smoke run")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pools, fusions = (POOLS[:1], FUSIONS[:1]) if args.quick else (POOLS, FUSIONS)
    if args.quick:
        args.batch, args.rounds = 1, 2
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description()
    print(f"# AF's pooling and fusion passes: {where}, torch {torch.__version__}, {dtype}, batch {args.batch} x 12 "
          f"frames, channels-last, medians of {args.rounds} interleaved rounds\n")
    g = torch.Generator().manual_seed(0)
    n = args.batch * 12

    def tensor(*shape):
        x = torch.randn(*shape, generator=g).to(device=device, dtype=dtype)
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

    rows = []
    for c, side in pools:
        rows += [[f"{c}x{side}x{side}", *r] for r in compare(pool_candidates(tensor(n, c, side, side)), args.rounds)]
    print("## Ample branch pooling (3x3, stride 2, padding 1)\n")
    print(markdown_table(["input per frame", "pass", "ms", "vs model", "max abs diff"], rows), "\n", flush=True)
    rows = []
    for c, side in fusions:
        focal, ample = tensor(n, c, side, side), tensor(n, c, side // 2 or 1, side // 2 or 1)
        if side % 2:   # layer4's 7x7 focal map against a 4x4 ample one: not a whole factor, skipped
            continue
        theta = torch.rand(n, c, 1, 1, generator=g).to(device=device, dtype=dtype)
        rows += [[f"{c}x{side}x{side}", *r] for r in compare(fusion_candidates(focal, ample, theta), args.rounds)]
    print("## Fusion: theta * up(ample) + (1 - theta) * focal\n")
    print(markdown_table(["focal map per frame", "pass", "ms", "vs model", "max abs diff"], rows), "\n", flush=True)


if __name__ == "__main__":
    main()
