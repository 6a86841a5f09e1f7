"""The training objective of paper Eq. 16 (and the authors' release), with the spatial term.

    loss = CE(logits, y)          (BCE-with-logits for multi-label targets, ActivityNet)
         + lambda   * mean_n (r_n - RT)^2
         + lambda_s * mean_n (s_n - RS)^2        (spatial navigation, paper §3.3)

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


def afnet_loss(logits: torch.Tensor, target: torch.Tensor, masks: list, *, target_ratio: float,
               ratio_weight: float, with_ratio: bool = True, regions: list = (), target_region_ratio: float = 1.0,
               region_ratio_weight: float | None = None, with_region_ratio: bool = False) -> Loss:
    """Eq. 16 for one mini-batch. ``with_ratio``: add the ratio term (learned selection).
    ``regions``: the model's region masks; ``with_region_ratio``: add the region term
    (learned region selection) weighted by ``region_ratio_weight`` (None: ``ratio_weight``)."""
    ce = classification_loss(logits, target)
    kept, selected = kept_ratios(masks), kept_ratios(list(regions))
    ratio_loss = _gap(kept, target_ratio, with_ratio, ce)
    region_loss = _gap(selected, target_region_ratio, with_region_ratio, ce)
    weight_s = ratio_weight if region_ratio_weight is None else region_ratio_weight
    total = ce + ratio_weight * ratio_loss + weight_s * region_loss
    return Loss(total, ce, ratio_loss, kept.detach(), region_loss, selected.detach())
