"""Where the time goes: the operators that take most of a forward pass, per model.

Profiles AF-ResNet50-TSM (12 frames, r=0.4, sparse and masked) and TSM-ResNet50 (8 frames)
after the inference preparation, and prints each one's top operators by device time (CUDA
kernels on a GPU, CPU operators otherwise).

Usage: python benchmarks/profile_ops.py [--device cuda] [--batch 8] [--bf16] [--top 12]
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from afnet import create_model
from afnet.runtime import prepare_for_inference


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True

    def prepared(model):
        return prepare_for_inference(model.to(device), bf16=args.bf16, tune_malloc=True)  # process-wide

    af = prepared(create_model("af_resnet50", num_classes=174, num_frames=12, shift=True, selection="uniform",
                               ratio=0.4, execution="sparse"))
    models = {"AF-ResNet50-TSM 12f r=0.4 sparse": (af, 12),
              "AF-ResNet50-TSM 12f r=0.4 masked": (copy.deepcopy(af).configure(execution="masked"), 12),
              "TSM-ResNet50 8f": (prepared(create_model("tsm_resnet50", num_classes=174, num_frames=8)), 8)}
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for name, (model, frames) in models.items():
        v = torch.randn(args.batch, frames, 3, args.size, args.size, device=device)
        with torch.inference_mode():
            for _ in range(3):
                model(v)
            if cuda:
                torch.cuda.synchronize()
            with profile(activities=activities) as prof:
                for _ in range(args.calls):
                    model(v)
                if cuda:
                    torch.cuda.synchronize()
        print(f"## {name}, batch {args.batch}, {args.calls} calls\n")
        print(prof.key_averages().table(sort_by=sort, row_limit=args.top), "\n", flush=True)


if __name__ == "__main__":
    main()
