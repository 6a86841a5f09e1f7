"""Can the navigation see the evidence? A linear probe on what each navigation module reads.

Each navigation module of AF-ResNet decides from the globally pooled ample features of a
frame. This script takes a trained or pre-trained AF checkpoint and the demo's evidence
dataset, pools the features at the input of every AF stage's ample branch (what its
navigation module reads) for every frame, and fits a logistic regression (L-BFGS) that tells
evidence frames from the others on the training split; it reports its accuracy on the
validation split, against always answering "no evidence", and the navigation precision a
navigation would reach by keeping each video's 50% highest-scoring frames.

Usage: python benchmarks/probe_navigation_inputs.py results/demo/runs/pretrain-af_resnet_small/checkpoints/best.ckpt \
           results/demo/data [--videos 600]
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from afnet import create_model, load_checkpoint
from afnet.benchmark import markdown_table
from afnet.data.synthetic import EVIDENCE_FILE, synthetic_dataset


def pooled_inputs(model, dataset, count: int):
    """{stage: (frames, channels) pooled ample inputs}, (frames,) evidence labels."""
    feats: dict[str, list] = {}
    hooks = [stage.ample[0].register_forward_hook(
        lambda mod, inp, out, name=name: feats.setdefault(name, []).append(inp[0].mean(dim=(2, 3))))
        for name, stage in ((f"layer{i}", getattr(model, f"layer{i}")) for i in (1, 2, 3))]
    labels = []
    with torch.no_grad():
        for i in range(min(count, len(dataset))):
            clip, _, _, evidence = dataset[i]
            model(clip[:1])
            labels.append(evidence[0])
    for h in hooks:
        h.remove()
    return {k: torch.cat(v) for k, v in feats.items()}, torch.cat(labels)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("data", help="a make-synthetic --task evidence folder")
    ap.add_argument("--videos", type=int, default=600, help="videos per split")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = create_model("af_resnet_small", num_classes=8, num_frames=8, selection="all").eval()
    print(load_checkpoint(model, args.checkpoint, skip_classifier=True))
    kw = dict(input_size=32, scale_size=32, evidence_file=os.path.join(args.data, EVIDENCE_FILE), train=False)
    train_x, train_y = pooled_inputs(model, synthetic_dataset(args.data, "train", **kw), args.videos)
    val_x, val_y = pooled_inputs(model, synthetic_dataset(args.data, "val", **kw), args.videos)
    rows = []
    for stage in train_x:
        mean, std = train_x[stage].mean(0), train_x[stage].std(0) + 1e-6
        a, b = (train_x[stage] - mean) / std, (val_x[stage] - mean) / std
        w = torch.zeros(a.shape[1], requires_grad=True)
        c = torch.zeros(1, requires_grad=True)
        opt = torch.optim.LBFGS([w, c], max_iter=300)

        def closure():
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(a @ w + c, train_y) + 1e-3 * w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            score = b @ w + c
            accuracy = ((score > 0).float() == val_y).float().mean().item()
            top = score.view(-1, 8).topk(4, dim=1).indices
            precision = val_y.view(-1, 8).gather(1, top).mean().item()
        rows.append([stage, a.shape[1], round(accuracy, 3), round(1 - val_y.mean().item(), 3), round(precision, 3)])
    print(markdown_table(["navigation point (stage)", "channels", "probe accuracy (val)", "always 'no evidence'",
                          "precision keeping the top 50%"], rows))
    print(f"\nevidence rate: {val_y.mean().item():.3f}; the most a point keeping 50% can reach: "
          f"{val_y.view(-1, 8).sum(1).clamp(max=4).mean().item() / 4:.3f}")


if __name__ == "__main__":
    main()
