"""Validation metrics, all torchmetrics objects (they synchronise across DDP processes).

Single-label: top-1, top-5 and class-mean accuracy. Multi-label (ActivityNet): mAP, plus
top-1 counted as a hit when the highest-scoring class is one of the video's labels.
Kept ratio: the mean fraction of frames kept at each navigation point. Region ratio (spatial
models only): the mean fraction of regions the spatial navigation selects at each focal block.
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

    def update(self, scores: torch.Tensor, target: torch.Tensor, masks: list, regions: list = ()) -> None:
        self.scores.update(scores, target.int() if self.multi_label else target)
        for metric, mask in zip(self.kept, masks):
            metric.update(mask.float().mean(dim=1))
        for metric, region in zip(self.regions, regions):
            metric.update(region.float().flatten(1).mean(dim=1))

    def compute(self) -> dict:
        out = {k: float(v) for k, v in self.scores.compute().items()}
        kept = [float(m.compute()) for m in self.kept]
        out["kept_ratio"] = kept
        out["mean_kept_ratio"] = sum(kept) / len(kept) if kept else 1.0
        if len(self.regions):
            out["region_ratio"] = [float(m.compute()) for m in self.regions]
            out["mean_region_ratio"] = sum(out["region_ratio"]) / len(self.regions)
        return out

    def reset(self) -> None:
        self.scores.reset()
        for m in [*self.kept, *self.regions]:
            m.reset()
