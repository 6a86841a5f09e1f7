"""Why a trained navigation is blind, measured on one checkpoint (docs/navigation.md).

    python benchmarks/navigation_diagnostics.py CHECKPOINT DATA_ROOT [--train STEPS --loss bce|st-ce|st-saliency]

``DATA_ROOT``: an evidence-task dataset (``afnet make-synthetic --task evidence``, with
``evidence.json``), e.g. the study's ``<out>/data``. Prints, on the validation videos:

- the saliency target's quality: the share of the frames the model's own per-frame logits
  favour (``afnet.engine.objective.salient_frames`` at RT 0.5, every frame computed) that carry
  evidence, and the share of evidence frames among them;
- per navigation point: the AUC of the keep-minus-skip margin for evidence frames against plain
  ones (0.5: blind to content), the margin's spread within a video, and the spread of its
  per-position means (equal to the former: the margin depends on the frame's position only).

With ``--train STEPS``: the backbone frozen (eval mode), only the navigation modules trained for
STEPS steps of SGD (lr 0.2, momentum 0.9, batch 32) on 640 training videos, the AUCs printed
every 50 steps. ``--loss bce``: binary cross-entropy of the margins against the saliency target
(can the navigation represent it?); ``st-ce``: the cross-entropy through the straight-through
Gumbel masks (τ = 1), as training does; ``st-saliency``: the saliency term through those masks.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F


def _load(dataset, n: int):
    samples = [dataset[i] for i in range(min(n, len(dataset)))]
    clips = torch.stack([s[0][0] for s in samples])         # the first view
    return clips, torch.tensor([s[1] for s in samples]), torch.stack([s[3][0] for s in samples])


def _auc(margin: torch.Tensor, evidence: torch.Tensor) -> float:
    pos, neg = margin[evidence == 1], margin[evidence == 0]
    return float((pos[:, None] > neg[None, :]).float().mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("data_root")
    p.add_argument("--videos", type=int, default=300, help="validation videos measured (default 300)")
    p.add_argument("--train", type=int, default=0, metavar="STEPS")
    p.add_argument("--loss", choices=("bce", "st-ce", "st-saliency"), default="bce")
    args = p.parse_args(argv)

    from afnet.data.dataset import build_dataset
    from afnet.engine.objective import afnet_loss, salient_frames
    from afnet.inference import load_model_for_inference
    from afnet.models.layers import Navigation

    torch.manual_seed(0)
    root = Path(args.data_root)
    model = load_model_for_inference(args.checkpoint).model
    size = model.num_frames
    kw = dict(train=False, num_frames=size, input_size=32, scale_size=32, evidence_file=root / "evidence.json")
    val_x, val_y, val_e = _load(build_dataset("synthetic", root, str(root / "val_frames.txt"), **kw), args.videos)
    navigations = [m for m in model.modules() if isinstance(m, Navigation)]
    logits: dict = {}
    for k, nav in enumerate(navigations):
        nav.register_forward_hook(lambda mod, inputs, out, k=k: logits.__setitem__(k, out))

    def margins():
        return [logits[k][..., 1] - logits[k][..., 0] for k in range(len(navigations))]

    with torch.no_grad():
        every = torch.ones(len(val_x), size)
        z = salient_frames(model(val_x, keep=every).frame_logits, val_y, 0.5)
        print(f"saliency target at RT 0.5: {float((z * val_e).sum() / z.sum()):.3f} of its frames carry evidence, "
              f"{float((z * val_e).sum() / val_e.sum()):.3f} of the evidence frames are in it")
        model(val_x)
        for k, m in enumerate(margins()):
            print(f"point {k + 1}: margin AUC {_auc(m, val_e):.3f}, spread within a video {float(m.std(1).mean()):.3f}, "
                  f"spread of the per-position means {float(m.mean(0).std()):.3f}")
    if not args.train:
        return 0
    train_x, train_y, _ = _load(build_dataset("synthetic", root, str(root / "train_frames.txt"), **kw), 640)
    with torch.no_grad():
        train_z = salient_frames(model(train_x, keep=torch.ones(len(train_x), size)).frame_logits, train_y, 0.5)
    params = [q for nav in navigations for q in nav.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.2, momentum=0.9)
    for step in range(args.train + 1):
        if step % 50 == 0:
            model.eval()
            with torch.no_grad():
                model(val_x)
                print(f"step {step}: margin AUC per point " + " / ".join(f"{_auc(m, val_e):.3f}" for m in margins()),
                      flush=True)
        idx = torch.randint(0, len(train_x), (32,))
        if args.loss == "bce":
            model.eval()
            model(train_x[idx])
            loss = sum(F.binary_cross_entropy_with_logits(m, train_z[idx]) for m in margins())
        else:  # Gumbel masks: the AF stages in train mode, every BatchNorm of the backbone frozen
            model.train()
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d) and not any(module is b for n in navigations
                                                                         for b in n.modules()):
                    module.eval()
            out = model(train_x[idx], temperature=1.0)
            terms = afnet_loss(out.logits, train_y[idx], out.masks, target_ratio=0.5, ratio_weight=0.0,
                               frame_logits=out.frame_logits, saliency_weight=1.0)
            loss = terms.classification if args.loss == "st-ce" else terms.saliency_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
