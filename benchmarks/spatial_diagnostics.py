"""What a trained spatial navigation looks at, measured on one checkpoint (docs/navigation.md).

    python benchmarks/spatial_diagnostics.py CHECKPOINT DATA_ROOT [--videos N] [--region-ratio RS]

``DATA_ROOT``: an evidence-task dataset with region evidence (``afnet make-synthetic --task
evidence --region-grid G``), e.g. the spatial demo's ``<out>/data``. Every frame of such a
video shows the carrier square in the same cell of the G x G grid; only the evidence frames
show the class glyph on it. Prints, per spatial block, on the validation videos (the model as
``afnet predict`` runs it; with ``--region-ratio``: static-k regions at RS):

- region precision on the evidence frames (the demo's measure: the share of the regions the
  block computes that hold the glyph's cell);
- the same share on the plain frames (the carrier's cell, without the glyph). Equal to the
  first: the navigation finds the carrier square, whether or not it bears the glyph. Near the
  blind rate 1 / G^2 while the first is high: it reads the glyph itself.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("data_root")
    p.add_argument("--videos", type=int, default=300, help="validation videos measured (default 300)")
    p.add_argument("--region-ratio", type=float, default=None, help="static-k regions at this RS")
    args = p.parse_args(argv)

    from afnet.data.annotations import load_evidence
    from afnet.data.dataset import build_dataset
    from afnet.inference import load_model_for_inference

    root = Path(args.data_root)
    model = load_model_for_inference(args.checkpoint, region_ratio=args.region_ratio).model
    if not model.spatial:
        p.error(f"{args.checkpoint}: not a spatial model (no region masks to measure)")
    evidence_file = root / "evidence.json"
    grid = next(iter(load_evidence(evidence_file, root).values())).grid
    if not grid:
        p.error(f"{evidence_file}: no region evidence (written without --region-grid)")
    dataset = build_dataset("synthetic", root, str(root / "val_frames.txt"), train=False,
                            num_frames=model.num_frames, input_size=32, scale_size=32, evidence_file=evidence_file)
    samples = [dataset[i] for i in range(min(args.videos, len(dataset)))]
    clips = torch.stack([s[0][0] for s in samples])           # the first (only) view: (N, T, 3, S, S)
    marks = torch.stack([s[3][0] for s in samples])           # (N, T, G, G): the glyph's cell, evidence frames
    cell = marks.amax(dim=1, keepdim=True).expand_as(marks)   # the carrier's cell, every frame
    evidence = marks.flatten(2).amax(-1)                      # (N, T): 1 on evidence frames
    with torch.no_grad():
        out = model(clips)
    print(f"{len(samples)} videos, {grid} x {grid} grid (blind rate {1 / grid ** 2:.2f}); regions "
          + ("as trained (learned threshold)" if args.region_ratio is None else f"static-k at RS {args.region_ratio}"))
    for k, (mask, regions) in enumerate(zip(out.masks, out.regions)):
        if regions.shape[-1] != grid:
            print(f"block {k + 1}: grid {regions.shape[-1]}, not the annotation's {grid}: not measured")
            continue
        computed = regions * mask[..., None, None]               # regions of the frames the block computes
        for name, frames in (("evidence frames", evidence), ("plain frames", 1 - evidence)):
            chosen = computed * frames[..., None, None]
            share = float((chosen * cell).sum() / chosen.sum().clamp(min=1))
            print(f"block {k + 1}, {name}: {share:.3f} of the computed regions hold the carrier's cell "
                  f"({float(chosen.sum() / frames.sum().clamp(min=1)):.2f} regions per frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
