"""What the demo runs: its sizes, its rows (each a list of dotted config overrides), and the
engine configuration of each run, built by the config loader's own override parser."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from afnet.engine.schema import apply_override

# The learned navigation starts with a (skip, keep) bias of (0, 1) instead of the released
# (1, 10): every frame is still selected at first, but the straight-through gradient is not
# saturated, so the kept ratio can reach RT within a short schedule.
NAV = ("model.name=af_resnet_small", "model.selection=navigation", "model.navigation_bias=[0.0, 1.0]")
# Beyond the paper (docs/navigation.md): the saliency term, mu = lambda, with the Gumbel
# temperature held at 1 (its decay starves the straight-through gradient within 150 steps).
SALIENCY = ("objective.saliency_weight=16.0", "objective.t_min=1.0")
# and its region analogue for spatial navigation (mu_s = lambda, the temperature held likewise)
REGION_SALIENCY = ("objective.region_saliency_weight=16.0", "objective.t_min=1.0")
AF = ("model.name=af_resnet_small",)


def _config(items) -> dict:
    """A plain config dict from dotted overrides, read by the config loader's parser."""
    cfg: dict = {}
    for item in items:
        apply_override(cfg, item)
    return cfg


@dataclass(frozen=True)
class DemoRun:
    """One row of the demo: its label, its config overrides (``"dotted.key=value"``, read by
    :func:`afnet.engine.schema.apply_override` as every ``key=value`` of the project is) and the
    architecture whose pre-trained backbone it starts from (None: from scratch)."""

    label: str
    overrides: tuple
    backbone: str | None

    def setting(self, dotted: str, default=None):
        """The value this row's overrides give ``dotted`` (``default`` where they leave it)."""
        node = _config(self.overrides)
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    @property
    def learned_frames(self) -> bool:
        """Learned frame selection at a budget below every frame: RT < 1."""
        return self.setting("model.selection") == "navigation" and self.setting("objective.target_ratio", 1.0) < 1.0

    @property
    def learned_regions(self) -> bool:
        return (self.setting("model.region_selection") == "navigation"
                and self.setting("objective.target_region_ratio", 1.0) < 1.0)

    def slug(self) -> str:
        """The run folder's middle part: selection and ratio (``navigation0.5``,
        ``regions-random0.5``), ``-saliency`` with a saliency term."""
        if self.setting("model.spatial"):
            sel = "regions-" + self.setting("model.region_selection")
            ratio = self.setting("model.region_ratio", self.setting("objective.target_region_ratio"))
        else:
            sel = self.setting("model.selection", "all")
            ratio = self.setting("model.ratio", self.setting("objective.target_ratio"))
        slug = sel if ratio is None else f"{sel}{ratio}"
        saliency = self.setting("objective.saliency_weight", 0) or self.setting("objective.region_saliency_weight", 0)
        return slug + ("-saliency" if saliency else "")


def _rt(ratio: float) -> tuple:
    return (*NAV, f"objective.target_ratio={ratio}")


def _fixed(policy: str, ratio: float) -> tuple:
    return (*AF, f"model.selection={policy}", f"model.ratio={ratio}")


RUNS = (
    DemoRun("TSN", ("model.name=tsn_resnet_small",), "tsn_resnet_small"),
    DemoRun("AFNet RT=1.0", _rt(1.0), "af_resnet_small"),
    DemoRun("AFNet RT=0.5", _rt(0.5), "af_resnet_small"),
    DemoRun("AFNet RT=0.25", _rt(0.25), "af_resnet_small"),
    DemoRun("AFNet uniform 0.5", _fixed("uniform", 0.5), "af_resnet_small"),
    DemoRun("AFNet random 0.5", _fixed("random", 0.5), "af_resnet_small"),
    DemoRun("AFNet RT=0.5 + saliency", (*_rt(0.5), *SALIENCY), "af_resnet_small"),
    DemoRun("AFNet RT=0.25 + saliency", (*_rt(0.25), *SALIENCY), "af_resnet_small"),
    DemoRun("AFNet uniform 0.25", _fixed("uniform", 0.25), "af_resnet_small"),
    DemoRun("AFNet random 0.25", _fixed("random", 0.25), "af_resnet_small"),
)
# Table 5's spatial rows on the evidence task with region evidence (each video's glyph stays in
# one cell of a 2 x 2 grid): every frame kept, one region of four (RS 0.25) computed by each focal
# block, on a 2 x 2 region grid over the 8/4/2-pixel focal maps of a 32-pixel input (so a region
# is the glyph's cell). From the glyph-pretrained backbone, as the temporal rows.
_SPATIAL = ("model.name=af_resnet_small", "model.selection=all", "model.spatial=true", "model.region_grid=[2, 2, 2]")
_REGIONS_NAV = (*_SPATIAL, "model.region_selection=navigation", "model.navigation_bias=[0.0, 1.0]",
                "objective.target_region_ratio=0.25")
SPATIAL_RUNS = (
    DemoRun("AFNet spatial navigation RS=0.25", _REGIONS_NAV, "af_resnet_small"),
    DemoRun("AFNet spatial navigation RS=0.25 + region saliency", (*_REGIONS_NAV, *REGION_SALIENCY),
            "af_resnet_small"),
    DemoRun("AFNet random regions 0.25", (*_SPATIAL, "model.region_selection=random", "model.region_ratio=0.25"),
            "af_resnet_small"),
    DemoRun("AFNet centre crop 0.25", (*_SPATIAL, "model.region_selection=center", "model.region_ratio=0.25"),
            "af_resnet_small"),
    DemoRun("AFNet every region", (*AF, "model.selection=all"), "af_resnet_small"),   # the reference: all of it
)
EXPLAINED = "AFNet RT=0.5"   # the run whose choices the explain figure shows


@dataclass(frozen=True)
class DemoSize:
    num_train: int
    num_val: int
    size: int
    video_frames: int             # frames written per video
    epochs: int
    rt_begin: int
    rt_end: int
    t_end: int
    frames: int = 8               # frames each model samples per video (T)
    batch_size: int = 32
    lr: float = 0.02
    schedule: str = "cosine"
    lr_steps: tuple = ()
    ratio_weight: float = 16.0     # lambda; 0.5 in the paper's 55-epoch schedule
    ratio_tolerance: float = 0.05  # best checkpoint only among epochs within this of RT
    # training crops: at 32 pixels the glyphs' strokes are one pixel wide, and a crop resized
    # back to 32 would blur them; so the whole frame (no crop), as evaluation sees it
    scales: tuple = (1.0,)
    task: str = "evidence"
    region_grid: int = 0          # evidence task: > 0 keeps each video's glyph in one cell of this grid
    # the pre-training set (glyph images, T=1) and its schedule; 0 images: no pre-training.
    # Each backbone trains until its glyph top-1 reaches pretrain_target (at most
    # pretrain_epochs): the backbones start the video stage equally well pre-trained.
    num_images: int = 8000
    num_val_images: int = 800
    pretrain_epochs: int = 30
    pretrain_target: float = 0.95
    pretrain_lr: float = 0.1


FULL = DemoSize(num_train=1200, num_val=600, size=32, video_frames=8, epochs=4, rt_begin=0, rt_end=2, t_end=3)
QUICK = DemoSize(num_train=48, num_val=24, size=32, video_frames=8, epochs=2, rt_begin=0, rt_end=1, t_end=2,
                 batch_size=8, num_images=96, num_val_images=32, pretrain_epochs=1, pretrain_target=0.5)
# the spatial demo: the temporal demo's sizes, the glyph in one cell of a 2 x 2 grid
SPATIAL_FULL = DemoSize(num_train=1200, num_val=600, size=32, video_frames=8, epochs=4, rt_begin=0, rt_end=2, t_end=3,
                        region_grid=2)
SPATIAL_QUICK = DemoSize(num_train=48, num_val=24, size=32, video_frames=8, epochs=2, rt_begin=0, rt_end=1, t_end=2,
                         batch_size=8, num_images=96, num_val_images=32, pretrain_epochs=1, pretrain_target=0.5,
                         region_grid=2)


def accelerator(requested: str = "auto") -> str:
    """The Lightning accelerator the demo trains on: ``auto`` takes the GPU where torch sees one."""
    if requested not in ("auto", "cpu", "gpu"):
        raise ValueError(f"accelerator={requested!r}; accepted: auto, cpu, gpu")
    if requested != "auto":
        return requested
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def _dotted(key: str, value) -> str:
    return f"{key}={json.dumps(value)}"   # JSON is YAML: the loader reads back the same value


def demo_overrides(out: Path, data_root: Path, sz: DemoSize, seed: int, run: DemoRun,
                   pretrained: str | None = None, device: str = "cpu") -> list[str]:
    """The dotted overrides of one demo run: the settings every row shares, then the row's own."""
    shared = {
        "seed": seed,
        "run_dir": str(out / "runs" / f"{run.setting('model.name')}-{run.slug()}-seed{seed}"),
        "model.name": "af_resnet_small", "model.pretrained": pretrained,
        "model.skip_classifier": pretrained is not None,
        "data.preset": "synthetic", "data.root": str(data_root), "data.num_frames": sz.frames,
        "data.input_size": sz.size, "data.scale_size": sz.size, "data.scales": list(sz.scales),
        "data.batch_size": sz.batch_size, "data.num_workers": 0,
        "objective.target_ratio": 1.0, "objective.ratio_weight": sz.ratio_weight, "objective.rt_begin": sz.rt_begin,
        "objective.rt_end": sz.rt_end, "objective.t_end": sz.t_end, "objective.ratio_tolerance": sz.ratio_tolerance,
        "optim.epochs": sz.epochs, "optim.lr": sz.lr, "optim.schedule": sz.schedule,
        "optim.lr_steps": list(sz.lr_steps),
        "trainer.accelerator": device, "trainer.devices": 1, "trainer.progress_bar": False,
        "trainer.log_every_n_steps": 5, "eval.plot": True,
    }
    return [_dotted(k, v) for k, v in shared.items()] + list(run.overrides)


def demo_config(out: Path, data_root: Path, sz: DemoSize, seed: int, run: DemoRun, pretrained: str | None = None,
                device: str = "cpu") -> dict:
    """The engine configuration of one demo run (a plain dict, saved beside its results)."""
    return _config(demo_overrides(out, data_root, sz, seed, run, pretrained, device))


def pretrain_config(out: Path, images: Path, sz: DemoSize, model: str, device: str = "cpu") -> dict:
    """Pre-training on the glyph images (T=1, every frame through the focal branch), the
    small-scale stand-in for the paper's ImageNet backbones: one per architecture, shared by
    every seed of the video stage (as one ImageNet checkpoint serves every run in the paper)."""
    settings = {
        "seed": 0, "run_dir": str(out / "runs" / f"pretrain-{model}"),
        "model.name": model, "model.dropout": 0.0,
        "data.preset": "imagefolder", "data.root": str(images), "data.train_list": "train", "data.val_list": "val",
        "data.num_classes": 16, "data.input_size": sz.size, "data.scale_size": sz.size, "data.scales": list(sz.scales),
        "data.flip": False, "data.batch_size": 64, "data.num_workers": 0,
        "optim.epochs": sz.pretrain_epochs, "optim.lr": sz.pretrain_lr, "optim.schedule": "cosine",
        "optim.navigation_lr_mult": 1.0,
        "trainer.accelerator": device, "trainer.devices": 1, "trainer.progress_bar": False,
        "trainer.log_every_n_steps": 20, "trainer.stop_at": sz.pretrain_target, "eval.plot": False,
    }
    if model.startswith("af_"):
        settings["model.selection"] = "all"
    return _config(_dotted(key, value) for key, value in settings.items())
