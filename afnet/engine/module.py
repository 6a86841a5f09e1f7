"""The thin LightningModule around a plain afnet model.

The network stays an ``nn.Module`` (``self.model``); this class adds the objective
(Eq. 16), the schedules (pure functions of epoch and step), parameter groups and metrics.
Checkpoints written by Lightning keep the afnet format's keys (``format``, ``arch``,
``model_args``, ``state_dict`` without the ``model.`` prefix), so ``afnet.load_checkpoint``
reads them directly; Lightning's own entries (optimiser, loops, callbacks) sit beside them.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from afnet._imports import require
from afnet.checkpoint import FORMAT
from afnet.data import average_views
from afnet.engine import schedules
from afnet.engine.datamodule import epoch_in_progress, padding_of
from afnet.engine.metrics import VideoMetrics
from afnet.engine.objective import afnet_loss, pixel_saliency
from afnet.engine.optim import build_optimizer
from afnet.engine.schema import Config
from afnet.flops import count_flops
from afnet.models.layers import Navigation, SpatialNavigation

L = require("lightning", "training (afnet.engine)")

PREFIX = "model."


class NonFiniteLoss(ArithmeticError, ValueError):
    """The loss became NaN or infinite; training stops and the last good checkpoint stays."""


def _freeze(model, kind) -> None:
    for m in model.modules():
        if isinstance(m, kind):
            m.requires_grad_(False)


class AFNetModule(L.LightningModule):
    """``model`` trained as ``cfg`` (its ``objective``, ``optim`` and ``seed``) says.
    ``class_names``: stored in the checkpoints, so that predictions show names."""

    def __init__(self, model, cfg: Config, *, multi_label: bool = False, classifier_lr_mult=(1.0, 1.0),
                 class_names: list | None = None):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.classifier_lr_mult = tuple(classifier_lr_mult)
        self.class_names = None if class_names is None else list(class_names)
        self.with_ratio = model.has_navigation and model.selection == "navigation"
        self.with_region_ratio = model.spatial and model.region_selection == "navigation"
        # fixed policies and "all" never run the navigation: frozen, so DDP waits for no gradient
        if model.selection not in ("navigation", "soft"):
            _freeze(model, Navigation)
        if model.region_selection != "navigation":
            _freeze(model, SpatialNavigation)
        points = model.navigation_points()
        self.metrics = VideoMetrics(model.num_classes, len(points), multi_label,
                                    num_region_points=sum(p.spatial for p in points))
        self.val_results: dict = {}
        self.val_padding = torch.empty(0, dtype=torch.long)
        self.flops_clip: torch.Tensor | None = None
        self.num_views = 1
        self.current_schedule: dict = {}

    # ------------------------------------------------------------ schedules
    def schedule(self, step: int | None = None, steps_per_epoch: int | None = None) -> dict:
        """lr, RT, temperature (and RS for spatial models) at global ``step`` (default: the trainer's)."""
        o = self.cfg.objective
        step = self.global_step if step is None else step
        spe = steps_per_epoch or self.steps_per_epoch()
        rs = {"target_region_ratio": schedules.target_ratio(step // spe, o.target_region_ratio, *o.rs_epochs())}
        return {
            "lr": self.cfg.optim.lr * self.lr_factor(step, spe),
            "target_ratio": schedules.target_ratio(step // spe, o.target_ratio, o.rt_begin, o.rt_end),
            "temperature": schedules.temperature(step, spe, o.t_end, o.t_start, o.t_min),
            **(rs if self.model.spatial else {}),
        }

    def lr_factor(self, step: int, steps_per_epoch: int | None = None) -> float:
        p = self.cfg.optim
        return schedules.lr_factor(step, steps_per_epoch or self.steps_per_epoch(), schedule=p.schedule,
                                   epochs=p.epochs, lr_steps=p.lr_steps, lr_decay=p.lr_decay,
                                   warmup_epochs=p.warmup_epochs)

    def steps_per_epoch(self) -> int:
        n = self.trainer.num_training_batches if self._trainer is not None else 0
        return int(n) if 0 < n < float("inf") else 1

    # ------------------------------------------------------------ training
    def configure_optimizers(self):
        """SGD with the paper's parameter groups; the learning rate is a ``LambdaLR`` stepped
        every iteration (so Lightning's ``LearningRateMonitor`` sees it), its factor a pure
        function of the global step (:func:`schedules.lr_factor`)."""
        optimizer = build_optimizer(self.model, self.cfg.optim, self.classifier_lr_mult)
        scheduler = LambdaLR(optimizer, lambda step: self.lr_factor(step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        # The LambdaLR took its step-0 factor before the epoch's length was known (a warm-up
        # depends on it): take it again now. (A resumed run restored its scheduler instead.)
        if self.global_step == 0:
            scheduler = self.lr_schedulers()
            for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
                group["lr"] = base * self.lr_factor(0)

    def on_train_epoch_start(self) -> None:
        # Gumbel noise and dropout from (seed, epoch, rank): a resumed epoch draws the same.
        state = np.random.SeedSequence([self.cfg.seed, epoch_in_progress(self.trainer), self.global_rank])
        torch.manual_seed(int(state.generate_state(1)[0]))

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.current_schedule = self.schedule()

    def training_step(self, batch, batch_idx):
        s = self.current_schedule
        o = self.cfg.objective
        clip, saliency = batch.clip, None
        region_saliency = o.region_saliency_weight and self.with_region_ratio
        if region_saliency:  # the region saliency term reads the input gradient of the true class
            clip = clip.detach().requires_grad_(True)
        out = self.model(clip, temperature=s["temperature"])
        if region_saliency:
            saliency = pixel_saliency(clip, out.logits, batch.target)
        loss = afnet_loss(out.logits, batch.target, out.masks, target_ratio=s["target_ratio"],
                          ratio_weight=o.ratio_weight, with_ratio=self.with_ratio, regions=out.regions,
                          target_region_ratio=s.get("target_region_ratio", 1.0),
                          region_ratio_weight=o.region_ratio_weight, with_region_ratio=self.with_region_ratio,
                          frame_logits=out.frame_logits, saliency_weight=o.saliency_weight,
                          saliency=saliency, region_saliency_weight=o.region_saliency_weight)
        if not torch.isfinite(loss.total):
            raise NonFiniteLoss(f"non-finite loss {loss.total.item()} (classification {loss.classification.item()}, "
                                f"ratio {loss.ratio_loss.item()}) at epoch {self.current_epoch}, step "
                                f"{self.global_step}; training stopped, the last good checkpoint is kept in "
                                f"{self.cfg.run_dir}/checkpoints (lower optim.lr or check the data)")
        spatial = {"train/region_ratio_loss": loss.region_loss, "train/region_ratio": loss.selected.mean()}
        self.log_dict({"train/loss": loss.total, "train/ce": loss.classification, "train/ratio_loss": loss.ratio_loss,
                       **({"train/saliency_loss": loss.saliency_loss} if o.saliency_weight else {}),
                       **({"train/region_saliency_loss": loss.region_saliency_loss} if region_saliency else {}),
                       "train/kept_ratio": loss.kept.mean() if len(loss.kept) else 1.0,
                       **(spatial if len(loss.selected) else {}), **{f"schedule/{k}": v for k, v in s.items()}},
                      prog_bar=False, batch_size=len(batch.target))
        self.log("loss", loss.total, prog_bar=True, logger=False, batch_size=len(batch.target))
        return loss.total

    # ------------------------------------------------------------ validation
    def validation_step(self, batch, batch_idx):
        b, v = batch.clip.shape[:2]
        self.num_views = v
        if batch_idx == 0:   # the samples this rank sees only to pad the ranks to equal lengths
            loaders = self.trainer.val_dataloaders if self._trainer is not None else None
            self.val_padding = torch.tensor(sorted(padding_of(loaders)), dtype=torch.long)
        if self.flops_clip is None:
            self.flops_clip = batch.clip[:1, 0].detach().clone()
        out = self.model(batch.clip.flatten(0, 1))
        scores = average_views(out.logits.float(), v)
        target, masks, regions = batch.target, out.masks, out.regions
        evidence = None if batch.evidence is None else batch.evidence.flatten(0, 1)
        if len(self.val_padding):   # leave the repeats out: metrics over the whole split, each video once
            keep = ~torch.isin(batch.index.to(self.val_padding.device), self.val_padding).to(scores.device)
            if not keep.any():
                return
            rows = keep.repeat_interleave(v)
            scores, target = scores[keep], target[keep]
            masks, regions = [m[rows] for m in masks], [r[rows] for r in regions]
            evidence = None if evidence is None else evidence[rows]
        self.metrics.update(scores, target, masks, regions, evidence=evidence)

    def on_validation_epoch_end(self) -> None:
        # torchmetrics reduce their states over the ranks in compute(): every rank gets the metrics of
        # the whole split, so the logged values (and best.ckpt's choice) are global, not rank 0's shard
        results = self.metrics.compute()
        self.metrics.reset()
        results["gflops_per_video"] = self.video_gflops() * self.num_views
        # epochs counted from 1, as the progress bar and train.log count them
        self.val_results = {**results, "epoch": self.current_epoch + 1, "step": self.global_step}
        per_point = ("kept_ratio", "region_ratio", "navigation_precision", "region_precision",
                     "region_evidence_rate")
        logged = {f"val/{k}": v for k, v in results.items() if k not in per_point}
        for key in per_point:
            logged.update({f"val/{key}_{n}": r for n, r in enumerate(results.get(key, ()))})
        logged["val/checkpoint_score"] = self.checkpoint_score(results)
        # already equal on every rank: the max over ranks keeps them bit for bit (GFLOPs, counted on
        # each rank's first video, become the largest); the sync tells Lightning they are global
        self.log_dict(logged, prog_bar=False, sync_dist=True, reduce_fx="max")
        self.log("val_top1", results.get("top1", 0.0), prog_bar=True, logger=False, sync_dist=True, reduce_fx="max")

    def checkpoint_score(self, results: dict) -> float:
        """What ``best.ckpt`` maximises: top-1 (mAP for multi-label). With
        ``objective.ratio_tolerance``, an epoch whose learned kept ratio (region ratio) is
        further than that from RT (RS) scores below every epoch within it: ``top1 - 1 - gap``,
        so the best checkpoint meets the compute budget whenever some epoch does, and is
        otherwise the one that misses it least for its accuracy."""
        score = results.get("mAP", results.get("top1", 0.0))
        o = self.cfg.objective
        gaps = ([abs(results["mean_kept_ratio"] - o.target_ratio)] if self.with_ratio else []) + \
               ([abs(results["mean_region_ratio"] - o.target_region_ratio)] if self.with_region_ratio else [])
        if o.ratio_tolerance is not None and gaps and max(gaps) > o.ratio_tolerance:
            score -= 1.0 + max(gaps)
        return score

    def video_gflops(self) -> float:
        """GFLOPs of one view (one clip, one crop) of the first validation video, in eval mode."""
        if self.flops_clip is None:
            return float("nan")
        clip, self.flops_clip = self.flops_clip, None
        return count_flops(self.model, clip)

    # ------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k[len(PREFIX):]: v for k, v in checkpoint["state_dict"].items()
                                    if k.startswith(PREFIX)}
        checkpoint.update(format=FORMAT, arch=self.model.arch, model_args=self.model.model_args(),
                          class_names=self.class_names, config=self.cfg.to_dict(), metrics=self.val_results,
                          schedule=self.schedule() if self._trainer is not None else {},
                          step=self.global_step)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {PREFIX + k: v for k, v in checkpoint["state_dict"].items()}
