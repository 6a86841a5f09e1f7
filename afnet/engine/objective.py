"""The training objective of paper Eq. 16 (and the authors' release), with the spatial term.

    loss = CE(logits, y)          (BCE-with-logits for multi-label targets, ActivityNet)
         + lambda   * mean_n (r_n - RT)^2
         + lambda_s * mean_n (s_n - RS)^2        (spatial navigation, paper §3.3)

Beyond the paper, off by default (``saliency_weight`` mu = 0), a saliency term for learned
frame selection:

         + mu * mean_n mean_(b,t) (m_n[b, t] - z[b, t])^2

``m_n`` is the straight-through keep-mask of navigation point ``n`` and ``z`` marks, in each
video, the ``round(RT * T)`` frames the network itself finds most telling: the highest
log-probability of the true class in the per-frame logits (detached), which every frame
has in training (masked execution computes the whole network on all of them). The
gradient reaches the navigation through the mask's soft part, as the ratio term's does:
it tells each point which frames the classifier reads the answer from, where the task
loss alone says little once the ample branch has learned the task (docs/navigation.md).

``r_n`` is the fraction of frames the navigation point ``n`` keeps in the mini-batch
(its mask's mean); the ratio term applies to learned selection only. ``s_n`` is the
fraction of regions the spatial navigation of focal block ``n`` selects (its region
mask's mean, over every frame of the mini-batch); the region term applies to learned
region selection only (``region_selection: navigation``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class Loss(NamedTuple):
    total: torch.Tensor
    classification: torch.Tensor
    ratio_loss: torch.Tensor     # mean_n (r_n - RT)^2, before lambda
    kept: torch.Tensor           # (N,) kept fraction per navigation point (detached)
    region_loss: torch.Tensor    # mean_n (s_n - RS)^2 of the region fractions, before lambda_s
    selected: torch.Tensor       # (N,) selected-region fraction per focal block (detached; empty: no spatial)
    saliency_loss: torch.Tensor  # mean_n mean (m_n - z)^2, before mu (zero when off)


def classification_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for class indices, BCE-with-logits for multi-hot float targets."""
    if target.is_floating_point():
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target)


def kept_ratios(masks: list) -> torch.Tensor:
    """(N,) fraction of frames kept at each navigation point (empty for baselines), or of
    regions selected at each focal block for region masks."""
    if not masks:
        return torch.zeros(0)
    return torch.stack([m.float().mean() for m in masks])


def _gap(fractions: torch.Tensor, target: float, on: bool, like: torch.Tensor) -> torch.Tensor:
    return ((fractions - target) ** 2).mean() if on and len(fractions) else like.new_zeros(())


def salient_frames(frame_logits: torch.Tensor, target: torch.Tensor, ratio: float) -> torch.Tensor:
    """(B, T) 0/1: in each video, the ``round(ratio * T)`` frames (at least one) whose own
    logits ``(B, T, K)`` give the true class the highest log-probability (multi-hot targets:
    the highest mean log-sigmoid over the video's classes); ties to the earlier frame."""
    frame_logits = frame_logits.detach().float()
    if target.is_floating_point():
        score = (F.logsigmoid(frame_logits) * target[:, None]).sum(-1) / target.sum(-1, keepdim=True).clamp(min=1)
    else:
        score = frame_logits.log_softmax(-1).gather(-1, target[:, None, None].expand(-1, frame_logits.shape[1], 1))
        score = score[..., 0]
    t = score.shape[1]
    k = max(1, min(t, int(round(ratio * t))))
    order = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros_like(score).scatter_(1, order, 1.0)


def afnet_loss(logits: torch.Tensor, target: torch.Tensor, masks: list, *, target_ratio: float,
               ratio_weight: float, with_ratio: bool = True, regions: list = (), target_region_ratio: float = 1.0,
               region_ratio_weight: float | None = None, with_region_ratio: bool = False,
               frame_logits: torch.Tensor | None = None, saliency_weight: float = 0.0) -> Loss:
    """Eq. 16 for one mini-batch. ``with_ratio``: add the ratio term (learned selection).
    ``regions``: the model's region masks; ``with_region_ratio``: add the region term
    (learned region selection) weighted by ``region_ratio_weight`` (None: ``ratio_weight``).
    ``saliency_weight`` > 0 (with ``with_ratio`` and ``frame_logits``): add the saliency term
    (module docstring) toward :func:`salient_frames` at ``target_ratio``."""
    ce = classification_loss(logits, target)
    kept, selected = kept_ratios(masks), kept_ratios(list(regions))
    ratio_loss = _gap(kept, target_ratio, with_ratio, ce)
    region_loss = _gap(selected, target_region_ratio, with_region_ratio, ce)
    weight_s = ratio_weight if region_ratio_weight is None else region_ratio_weight
    total = ce + ratio_weight * ratio_loss + weight_s * region_loss
    saliency_loss = ce.new_zeros(())
    if saliency_weight and with_ratio and masks:
        if frame_logits is None:
            raise ValueError("saliency_weight > 0 needs the model's per-frame logits (VideoOutput.frame_logits)")
        z = salient_frames(frame_logits, target, target_ratio)
        saliency_loss = torch.stack([((m.float() - z) ** 2).mean() for m in masks]).mean()
        total = total + saliency_weight * saliency_loss
    return Loss(total, ce, ratio_loss, kept.detach(), region_loss, selected.detach(), saliency_loss)
