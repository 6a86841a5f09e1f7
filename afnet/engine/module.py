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

from afnet._imports import require
from afnet.checkpoint import FORMAT, model_args
from afnet.data import average_views
from afnet.engine import schedules
from afnet.engine.config import rs_epochs
from afnet.engine.datamodule import epoch_in_progress
from afnet.engine.metrics import VideoMetrics
from afnet.engine.objective import afnet_loss
from afnet.engine.optim import build_optimizer, set_lr
from afnet.flops import count_flops
from afnet.models.layers import AFStage, Navigation, SpatialNavigation

L = require("lightning", "training (afnet.engine)")

PREFIX = "model."


class NonFiniteLoss(ArithmeticError, ValueError):
    """The loss became NaN or infinite; training stops and the last good checkpoint stays."""


def num_navigation_points(model) -> int:
    """Masks per forward pass: one per navigation module, or, with the temporal navigation at
    the first layer, one per focal block (each records the shared mask)."""
    if not model.has_navigation:
        return 0
    if getattr(model, "temporal_navigation", "block") == "first":
        return sum(len(m.focal) for m in model.modules() if isinstance(m, AFStage))
    return sum(isinstance(m, Navigation) for m in model.modules())


def num_region_points(model) -> int:
    """Region masks per forward pass: one per focal block of a spatial model."""
    return sum(isinstance(m, SpatialNavigation) for m in model.modules())


def _freeze(model, kind) -> None:
    for m in model.modules():
        if isinstance(m, kind):
            m.requires_grad_(False)


class AFNetModule(L.LightningModule):
    def __init__(self, model, cfg: dict, *, multi_label: bool = False, classifier_lr_mult=(1.0, 1.0)):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.classifier_lr_mult = tuple(classifier_lr_mult)
        self.with_ratio = model.has_navigation and model.selection == "navigation"
        self.with_region_ratio = model.spatial and model.region_selection == "navigation"
        # fixed policies and "all" never run the navigation: frozen, so DDP waits for no gradient
        if model.selection not in ("navigation", "soft"):
            _freeze(model, Navigation)
        if model.region_selection != "navigation":
            _freeze(model, SpatialNavigation)
        self.metrics = VideoMetrics(model.num_classes, num_navigation_points(model), multi_label,
                                    num_region_points=num_region_points(model))
        self.val_results: dict = {}
        self.flops_clip: torch.Tensor | None = None
        self.num_views = 1
        self.current_schedule: dict = {}

    # ------------------------------------------------------------ schedules
    def schedule(self, step: int | None = None, steps_per_epoch: int | None = None) -> dict:
        """lr, RT, temperature (and RS for spatial models) at global ``step`` (default: the trainer's)."""
        o, p = self.cfg["objective"], self.cfg["optim"]
        step = self.global_step if step is None else step
        spe = steps_per_epoch or self.steps_per_epoch()
        rs = {"target_region_ratio": schedules.target_ratio(step // spe, o["target_region_ratio"], *rs_epochs(o))}
        return {
            "lr": p["lr"] * schedules.lr_factor(step, spe, schedule=p["schedule"], epochs=p["epochs"],
                                                lr_steps=p["lr_steps"], lr_decay=p["lr_decay"],
                                                warmup_epochs=p["warmup_epochs"]),
            "target_ratio": schedules.target_ratio(step // spe, o["target_ratio"], o["rt_begin"], o["rt_end"]),
            "temperature": schedules.temperature(step, spe, o["t_end"], o["t_start"], o["t_min"]),
            **(rs if self.model.spatial else {}),
        }

    def steps_per_epoch(self) -> int:
        n = self.trainer.num_training_batches
        return int(n) if 0 < n < float("inf") else 1

    # ------------------------------------------------------------ training
    def configure_optimizers(self):
        return build_optimizer(self.model, self.cfg["optim"], self.classifier_lr_mult)

    def on_train_epoch_start(self) -> None:
        # Gumbel noise and dropout from (seed, epoch, rank): a resumed epoch draws the same.
        state = np.random.SeedSequence([self.cfg["seed"], epoch_in_progress(self.trainer), self.global_rank])
        torch.manual_seed(int(state.generate_state(1)[0]))

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.current_schedule = self.schedule()
        set_lr(self.trainer.optimizers[0], self.current_schedule["lr"])

    def training_step(self, batch, batch_idx):
        s = self.current_schedule
        o = self.cfg["objective"]
        out = self.model(batch.clip, temperature=s["temperature"])
        loss = afnet_loss(out.logits, batch.target, out.masks, target_ratio=s["target_ratio"],
                          ratio_weight=o["ratio_weight"], with_ratio=self.with_ratio, regions=out.regions,
                          target_region_ratio=s.get("target_region_ratio", 1.0),
                          region_ratio_weight=o["region_ratio_weight"], with_region_ratio=self.with_region_ratio)
        if not torch.isfinite(loss.total):
            raise NonFiniteLoss(f"non-finite loss {loss.total.item()} (classification {loss.classification.item()}, "
                                f"ratio {loss.ratio.item()}) at epoch {self.current_epoch}, step {self.global_step}; "
                                f"training stopped, the last good checkpoint is kept in "
                                f"{self.cfg['run_dir']}/checkpoints (lower optim.lr or check the data)")
        spatial = {"train/region_ratio_loss": loss.region_ratio, "train/region_ratio": loss.selected.mean()}
        self.log_dict({"train/loss": loss.total, "train/ce": loss.classification, "train/ratio_loss": loss.ratio,
                       "train/kept_ratio": loss.kept.mean() if len(loss.kept) else 1.0,
                       **(spatial if len(loss.selected) else {}), **{f"schedule/{k}": v for k, v in s.items()}},
                      prog_bar=False, batch_size=len(batch.target))
        self.log("loss", loss.total, prog_bar=True, logger=False, batch_size=len(batch.target))
        return loss.total

    # ------------------------------------------------------------ validation
    def validation_step(self, batch, batch_idx):
        b, v = batch.clip.shape[:2]
        self.num_views = v
        if self.flops_clip is None:
            self.flops_clip = batch.clip[:1, 0].detach().clone()
        out = self.model(batch.clip.flatten(0, 1))
        scores = average_views(out.logits.float(), v)
        self.metrics.update(scores, batch.target, out.masks, out.regions)

    def on_validation_epoch_end(self) -> None:
        results = self.metrics.compute()
        self.metrics.reset()
        results["gflops_per_video"] = self.video_gflops() * self.num_views
        self.val_results = {**results, "epoch": self.current_epoch, "step": self.global_step}
        logged = {f"val/{k}": v for k, v in results.items() if k not in ("kept_ratio", "region_ratio")}
        for key in ("kept_ratio", "region_ratio"):
            logged.update({f"val/{key}_{n}": r for n, r in enumerate(results.get(key, ()))})
        self.log_dict(logged, prog_bar=False)
        self.log("val_top1", results.get("top1", 0.0), prog_bar=True, logger=False)

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
        checkpoint.update(format=FORMAT, arch=self.model.arch, model_args=model_args(self.model),
                          config=self.cfg, metrics=self.val_results,
                          schedule=self.schedule() if self._trainer is not None else {},
                          step=self.global_step)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {PREFIX + k: v for k, v in checkpoint["state_dict"].items()}
