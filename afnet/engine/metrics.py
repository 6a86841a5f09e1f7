"""Validation metrics, all torchmetrics objects (they synchronise across DDP processes).

Single-label: top-1, top-5 and class-mean accuracy. Multi-label (ActivityNet): mAP, plus
top-1 counted as a hit when the highest-scoring class is one of the video's labels.
Kept ratio: the mean fraction of frames kept at each navigation point. Region ratio (spatial
models only): the mean fraction of regions the spatial navigation selects at each focal block.
Navigation precision (data with annotated evidence frames, models with navigation points):
at each point, the share of the frames it keeps that carry class evidence, over the whole
split (kept evidence frames / kept frames); ``evidence_rate``, the share of all frames that
carry evidence, is what a selection blind to content gets on average.
Region precision (data with annotated evidence regions, spatial models): at each focal
block, over the evidence frames its frame mask keeps, the share of the regions it computes
that hold the evidence (its grid's cells over the annotated cell); ``region_evidence_rate``,
the share of those cells among all, is what a region choice blind to content gets.
"""
from __future__ import annotations

import torch
from torch import nn

from afnet._imports import require

torchmetrics = require("torchmetrics", "training metrics (afnet.engine)")
MulticlassAccuracy = torchmetrics.classification.MulticlassAccuracy
MultilabelAveragePrecision = torchmetrics.classification.MultilabelAveragePrecision


class TopOneHit(torchmetrics.MeanMetric):
    """Multi-label top-1: the best-scoring class is one of the labels."""

    def update(self, scores: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        hit = target.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)
        super().update((hit > 0).float())


def cells_on_grid(cells: torch.Tensor, grid: int) -> torch.Tensor | None:
    """Annotated evidence cells ``(N, T, G, G)`` on a ``grid x grid`` region grid: each of a
    finer grid's cells within an evidence cell, a coarser grid's cell containing one; None
    where neither grid divides the other."""
    g = cells.shape[-1]
    if grid % g == 0:
        return cells.repeat_interleave(grid // g, dim=2).repeat_interleave(grid // g, dim=3)
    if g % grid == 0:
        return torch.nn.functional.max_pool2d(cells.flatten(0, 1), g // grid).view(*cells.shape[:2], grid, grid)
    return None


class VideoMetrics(nn.Module):
    """``update(scores, target, masks, regions)`` per batch, ``compute()`` -> dict of floats
    (``region_ratio`` and ``mean_region_ratio`` only with ``num_region_points``)."""

    def __init__(self, num_classes: int, num_points: int, multi_label: bool = False, num_region_points: int = 0):
        super().__init__()
        self.multi_label = multi_label
        if multi_label:
            self.scores = torchmetrics.MetricCollection({
                "top1": TopOneHit(),
                "mAP": MultilabelAveragePrecision(num_labels=num_classes, average="macro"),
            })
        else:
            self.scores = torchmetrics.MetricCollection({
                "top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
                "top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
                "class_mean_acc": MulticlassAccuracy(num_classes, top_k=1, average="macro"),
            })
        self.kept = nn.ModuleList(torchmetrics.MeanMetric() for _ in range(num_points))
        self.regions = nn.ModuleList(torchmetrics.MeanMetric() for _ in range(num_region_points))
        # navigation precision: kept evidence frames and kept frames per point, all evidence frames, all frames
        self.kept_evidence = nn.ModuleList(torchmetrics.SumMetric() for _ in range(num_points))
        self.kept_frames = nn.ModuleList(torchmetrics.SumMetric() for _ in range(num_points))
        self.evidence = torchmetrics.MeanMetric()
        # region precision: kept evidence regions and kept regions of evidence frames per block, all evidence cells
        self.region_hits = nn.ModuleList(torchmetrics.SumMetric() for _ in range(num_region_points))
        self.region_kept = nn.ModuleList(torchmetrics.SumMetric() for _ in range(num_region_points))
        self.region_evidence = nn.ModuleList(torchmetrics.MeanMetric() for _ in range(num_region_points))

    def update(self, scores: torch.Tensor, target: torch.Tensor, masks: list, regions: list = (),
               evidence: torch.Tensor | None = None) -> None:
        """``evidence``: ``(B*V, T)``, 1 where a frame carries class evidence, or ``(B*V, T,
        G, G)`` with the cell that holds it marked (or None)."""
        self.scores.update(scores, target.int() if self.multi_label else target)
        for metric, mask in zip(self.kept, masks):
            metric.update(mask.float().mean(dim=1))
        for metric, region in zip(self.regions, regions):
            metric.update(region.float().flatten(1).mean(dim=1))
        if evidence is not None and evidence.ndim == 4:
            cells, evidence = evidence, evidence.flatten(2).amax(dim=2)
            keeps = masks if len(masks) == len(regions) else [None] * len(regions)
            for i, (region, keep) in enumerate(zip(regions, keeps)):
                held = cells_on_grid(cells, region.shape[-1])
                if held is None:
                    continue
                weight = evidence if keep is None else evidence * keep.float()   # kept evidence frames
                region = region.float() * weight[..., None, None]
                self.region_hits[i].update((region * held).sum())
                self.region_kept[i].update(region.sum())
                self.region_evidence[i].update(held.flatten(2).sum(2)[evidence > 0] / held[0, 0].numel())
        if evidence is not None:
            self.evidence.update(evidence.float())
            for hits, kept, mask in zip(self.kept_evidence, self.kept_frames, masks):
                mask = mask.float()
                hits.update((mask * evidence).sum())
                kept.update(mask.sum())

    def compute(self) -> dict:
        out = {k: float(v) for k, v in self.scores.compute().items()}
        kept = [float(m.compute()) for m in self.kept]
        out["kept_ratio"] = kept
        out["mean_kept_ratio"] = sum(kept) / len(kept) if kept else 1.0
        if len(self.regions):
            out["region_ratio"] = [float(m.compute()) for m in self.regions]
            out["mean_region_ratio"] = sum(out["region_ratio"]) / len(self.regions)
        if self.evidence.update_count:
            out["evidence_rate"] = float(self.evidence.compute())
            if kept:
                out["navigation_precision"] = [float(h.compute()) / max(float(k.compute()), 1.0)
                                               for h, k in zip(self.kept_evidence, self.kept_frames)]
                out["mean_navigation_precision"] = sum(out["navigation_precision"]) / len(kept)
        measured = [i for i, m in enumerate(self.region_evidence) if m.update_count]
        if measured:
            out["region_precision"] = [float(self.region_hits[i].compute()) / max(float(self.region_kept[i].compute()),
                                                                                  1.0) for i in measured]
            out["mean_region_precision"] = sum(out["region_precision"]) / len(measured)
            out["region_evidence_rate"] = [float(self.region_evidence[i].compute()) for i in measured]
        return out

    def reset(self) -> None:
        self.scores.reset()
        for m in [*self.kept, *self.regions, *self.kept_evidence, *self.kept_frames, self.evidence,
                  *self.region_hits, *self.region_kept, *self.region_evidence]:
            m.reset()
