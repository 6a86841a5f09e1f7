"""The training objective of paper Eq. 16 (and the authors' release), with the spatial term.

    loss = CE(logits, y)          (BCE-with-logits for multi-label targets, ActivityNet)
         + lambda   * mean_n (r_n - RT)^2
         + lambda_s * mean_n (s_n - RS)^2        (spatial navigation, paper §3.3)

Beyond the paper, off by default (``saliency_weight`` mu = 0, ``region_saliency_weight``
mu_s = 0), saliency terms for learned frame and region selection:

         + mu   * mean_n mean_(b,t) (m_n[b, t] - z[b, t])^2
         + mu_s * mean_n mean_(b,t,i,j) (s_n[b, t, i, j] - z_n[b, t, i, j])^2

``m_n`` is the straight-through keep-mask of navigation point ``n`` and ``z`` marks, in each
video, the ``round(RT * T)`` frames the network itself finds most telling: the highest
log-probability of the true class in the per-frame logits (detached), which every frame
has in training (masked execution computes the whole network on all of them). The
gradient reaches the navigation through the mask's soft part, as the ratio term's does:
it tells each point which frames the classifier reads the answer from, where the task
loss alone says little once the ample branch has learned the task (docs/navigation.md).

``s_n`` is the straight-through region mask of spatial block ``n`` (grid g) and ``z_n``
marks, in each frame, the ``round(RS * g^2)`` regions with the most saliency: the mean over
the region's pixels of the input-gradient saliency of Simonyan et al. (2014), the largest
absolute gradient over the colour channels of the true class's log-probability with respect
to the input clip (:func:`pixel_saliency`; detached). It is the region analogue of ``z``:
where in the frame the classifier reads the answer from.

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

from afnet.models.layers.selection import frames_kept, regions_kept


class Loss(NamedTuple):
    total: torch.Tensor
    classification: torch.Tensor
    ratio_loss: torch.Tensor     # mean_n (r_n - RT)^2, before lambda
    kept: torch.Tensor           # (N,) kept fraction per navigation point (detached)
    region_loss: torch.Tensor    # mean_n (s_n - RS)^2 of the region fractions, before lambda_s
    selected: torch.Tensor       # (N,) selected-region fraction per focal block (detached; empty: no spatial)
    saliency_loss: torch.Tensor  # mean_n mean (m_n - z)^2, before mu (zero when off)
    region_saliency_loss: torch.Tensor  # mean_n mean (s_n - z_n)^2, before mu_s (zero when off)


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


def true_class_score(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The true class's log-probability in ``logits`` (..., K) (multi-hot targets (B, K): the
    mean log-sigmoid over the video's classes), one per row: (B,) or (B, T) for per-frame logits."""
    logits = logits.float()
    if target.is_floating_point():
        weights = target if logits.dim() == 2 else target[:, None]
        return (F.logsigmoid(logits) * weights).sum(-1) / weights.sum(-1).clamp(min=1)
    index = target.view(-1, *[1] * (logits.dim() - 1)).expand(*logits.shape[:-1], 1)
    return logits.log_softmax(-1).gather(-1, index)[..., 0]


def _top(score: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 like ``score`` (R, N): the ``k`` largest of each row; ties to the earlier entry."""
    order = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros_like(score).scatter_(1, order, 1.0)


def salient_frames(frame_logits: torch.Tensor, target: torch.Tensor, ratio: float) -> torch.Tensor:
    """(B, T) 0/1: in each video, the ``round(ratio * T)`` frames (at least one) whose own
    logits ``(B, T, K)`` give the true class the highest log-probability (multi-hot targets:
    the highest mean log-sigmoid over the video's classes); ties to the earlier frame."""
    score = true_class_score(frame_logits.detach(), target)
    return _top(score, frames_kept(ratio, score.shape[1]))


def pixel_saliency(clip: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W): the largest absolute gradient over the colour channels of the true
    class's log-probability (from ``logits``, computed from ``clip`` (B, T, C, H, W), which
    requires grad) with respect to each pixel; detached. The graph is kept for the loss."""
    (grad,) = torch.autograd.grad(true_class_score(logits, target).sum(), clip, retain_graph=True)
    return grad.detach().abs().amax(dim=2)


def salient_regions(saliency: torch.Tensor, grid: int, ratio: float) -> torch.Tensor:
    """(B, T, grid, grid) 0/1: in each frame of ``saliency`` (B, T, H, W), the
    ``round(ratio * grid^2)`` regions (at least one) of largest mean saliency; ties to the
    earlier region in raster order."""
    b, t = saliency.shape[:2]
    cells = F.adaptive_avg_pool2d(saliency.flatten(0, 1).float()[:, None], grid).flatten(1)   # (B*T, g*g)
    return _top(cells, regions_kept(ratio, grid)).view(b, t, grid, grid)


def afnet_loss(logits: torch.Tensor, target: torch.Tensor, masks: list, *, target_ratio: float,
               ratio_weight: float, with_ratio: bool = True, regions: list = (), target_region_ratio: float = 1.0,
               region_ratio_weight: float | None = None, with_region_ratio: bool = False,
               frame_logits: torch.Tensor | None = None, saliency_weight: float = 0.0,
               saliency: torch.Tensor | None = None, region_saliency_weight: float = 0.0) -> Loss:
    """Eq. 16 for one mini-batch. ``with_ratio``: add the ratio term (learned selection).
    ``regions``: the model's region masks; ``with_region_ratio``: add the region term
    (learned region selection) weighted by ``region_ratio_weight`` (None: ``ratio_weight``).
    ``saliency_weight`` > 0 (with ``with_ratio`` and ``frame_logits``): add the saliency term
    (module docstring) toward :func:`salient_frames` at ``target_ratio``.
    ``region_saliency_weight`` > 0 (with ``with_region_ratio`` and ``saliency``, the clip's
    :func:`pixel_saliency`): add the region saliency term toward :func:`salient_regions` at
    ``target_region_ratio``."""
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
    region_saliency_loss = ce.new_zeros(())
    if region_saliency_weight and with_region_ratio and regions:
        if saliency is None:
            raise ValueError("region_saliency_weight > 0 needs the clip's pixel saliency (pixel_saliency)")
        region_saliency_loss = torch.stack([
            ((r.float() - salient_regions(saliency, r.shape[-1], target_region_ratio)) ** 2).mean()
            for r in regions]).mean()
        total = total + region_saliency_weight * region_saliency_loss
    return Loss(total, ce, ratio_loss, kept.detach(), region_loss, selected.detach(), saliency_loss,
                region_saliency_loss)
