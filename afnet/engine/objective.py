"""The training objective of paper Eq. 16 (and the authors' release).

    loss = CE(logits, y)          (BCE-with-logits for multi-label targets, ActivityNet)
         + lambda * mean_n (r_n - RT)^2

``r_n`` is the fraction of frames the navigation point ``n`` keeps in the mini-batch
(its mask's mean); the ratio term applies to learned selection only.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class Loss(NamedTuple):
    total: torch.Tensor
    classification: torch.Tensor
    ratio: torch.Tensor          # the mean squared gap, before lambda
    kept: torch.Tensor           # (N,) kept fraction per navigation point (detached)


def classification_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for class indices, BCE-with-logits for multi-hot float targets."""
    if target.is_floating_point():
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target)


def kept_ratios(masks: list) -> torch.Tensor:
    """(N,) fraction of frames kept at each navigation point (empty for baselines)."""
    if not masks:
        return torch.zeros(0)
    return torch.stack([m.float().mean() for m in masks])


def afnet_loss(logits: torch.Tensor, target: torch.Tensor, masks: list, *, target_ratio: float,
               ratio_weight: float, with_ratio: bool = True) -> Loss:
    """Eq. 16 for one mini-batch. ``with_ratio``: add the ratio term (learned selection)."""
    ce = classification_loss(logits, target)
    kept = kept_ratios(masks)
    if with_ratio and masks:
        ratio = ((kept - target_ratio) ** 2).mean()
    else:
        ratio = ce.new_zeros(())
    return Loss(ce + ratio_weight * ratio, ce, ratio, kept.detach())
