"""The end-to-end demo: the paper's claims tested at small scale, on this CPU.

    make_synthetic(task="evidence") + make_glyph_images
      ─► per seed: pre-train TSN-small and AF-small on glyph images (T=1), as the paper
         pre-trains on ImageNet
      ─► train {TSN, AFNet RT 1.0 / 0.5 / 0.25, AFNet uniform 0.5, AFNet random 0.5}
         from those backbones
      ─► evaluate: top-1, GFLOPs/video, latency/video, kept ratio, navigation precision;
         a learned RT < 1 with its keep/skip threshold calibrated to RT on the training videos
         (afnet.engine.calibrate), and as variants with the threshold as trained and with
         static-k; its focal branch also on given frames (evidence_headroom)
      ─► table (Markdown, JSON) with each claim's verdict, figures

All models use the small ResNet backbone and 8 frames. The task (``afnet.data.synthetic``,
``task="evidence"``): the class is a small glyph that the carrier square bears in 2-3
random frames of each video; the other frames carry no evidence. A per-frame model can
solve it (TSN is not excluded by construction), and which frames carry the evidence is
known, so the share of the frames a model computes that carry evidence (navigation
precision) is measured at every navigation point, for learned and fixed policies alike.
The claims and how they are decided: :func:`claims`. Whatever the numbers show is reported.

``spatial=True`` runs Table 5's spatial rows instead (paper §3.3) on the temporal task:
every frame kept, half of the regions of each focal block computed, chosen by the spatial
navigation, at random, or as a centre crop.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from afnet.data.synthetic import EVIDENCE_FILE

# The learned navigation starts with a (skip, keep) bias of (0, 1) instead of the released
# (1, 10): every frame is still selected at first, but the straight-through gradient is not
# saturated, so the kept ratio can reach RT within a short schedule.
_NAV = {"model.name": "af_resnet_small", "model.selection": "navigation", "model.navigation_bias": [0.0, 1.0]}
# label -> (config overrides, pre-trained backbone); all else shared.
RUNS = (
    ("TSN", {"model.name": "tsn_resnet_small"}, "tsn_resnet_small"),
    ("AFNet RT=1.0", {**_NAV, "objective.target_ratio": 1.0}, "af_resnet_small"),
    ("AFNet RT=0.5", {**_NAV, "objective.target_ratio": 0.5}, "af_resnet_small"),
    ("AFNet RT=0.25", {**_NAV, "objective.target_ratio": 0.25}, "af_resnet_small"),
    ("AFNet uniform 0.5", {"model.name": "af_resnet_small", "model.selection": "uniform", "model.ratio": 0.5},
     "af_resnet_small"),
    ("AFNet random 0.5", {"model.name": "af_resnet_small", "model.selection": "random", "model.ratio": 0.5},
     "af_resnet_small"),
)
# Table 5's spatial rows: all frames, RS 0.5; region grid 4/2/2 on the 16/8/4-pixel focal maps
# of a 64-pixel input (regions of 4, 4 and 2 pixels). Trained from scratch on the temporal task.
_SPATIAL = {"model.name": "af_resnet_small", "model.selection": "all", "model.spatial": True,
            "model.region_grid": [4, 2, 2]}
SPATIAL_RUNS = (
    ("AFNet spatial navigation RS=0.5", {**_SPATIAL, "model.region_selection": "navigation",
                                         "model.navigation_bias": [0.0, 1.0], "objective.target_region_ratio": 0.5},
     None),
    ("AFNet random regions 0.5", {**_SPATIAL, "model.region_selection": "random", "model.region_ratio": 0.5}, None),
    ("AFNet centre crop 0.5", {**_SPATIAL, "model.region_selection": "center", "model.region_ratio": 0.5}, None),
)
EXPLAINED = "AFNet RT=0.5"   # the run whose choices the explain figure shows


@dataclass(frozen=True)
class DemoSize:
    num_train: int
    num_val: int
    size: int
    video_frames: int
    epochs: int
    rt_begin: int
    rt_end: int
    t_end: int
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
# the spatial demo: the temporal task at 64 pixels, from scratch (as measured before)
SPATIAL_FULL = DemoSize(num_train=320, num_val=96, size=64, video_frames=16, epochs=10, rt_begin=1, rt_end=4,
                        t_end=12, batch_size=16, schedule="step", lr_steps=(9,), ratio_weight=2.0,
                        ratio_tolerance=None, scales=(1.0, 0.875, 0.75), task="temporal", num_images=0)
SPATIAL_QUICK = DemoSize(num_train=24, num_val=16, size=32, video_frames=12, epochs=2, rt_begin=0, rt_end=1, t_end=2,
                         batch_size=8, schedule="step", ratio_weight=2.0, ratio_tolerance=None,
                         scales=(1.0, 0.875, 0.75), task="temporal", num_images=0)


@dataclass
class RunResult:
    label: str
    seed: int
    top1: float
    gflops_per_video: float
    latency_ms: float | None                                  # None: not measured (static-k rows)
    kept_ratio: float | None
    kept_ratio_per_point: list = field(default_factory=list)
    checkpoint: str = ""
    train_seconds: float = 0.0
    region_ratio: float | None = None
    precision_per_point: list = field(default_factory=list)   # navigation precision at each point
    precision: float | None = None                            # its mean over the points
    evidence_rate: float | None = None                        # share of all frames carrying evidence


def _set(cfg: dict, dotted: str, value) -> None:
    node = cfg
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def demo_config(out: Path, data_root: Path, sz: DemoSize, seed: int, overrides: dict,
                pretrained: str | None = None) -> dict:
    """The engine configuration of one demo run (a plain dict, saved beside its results)."""
    cfg = {
        "seed": seed,
        "run_dir": str(out / "runs" / f"{overrides['model.name']}-{_slug(overrides)}-seed{seed}"),
        "model": {"name": "af_resnet_small", "pretrained": pretrained, "skip_classifier": pretrained is not None},
        "data": {"preset": "synthetic", "root": str(data_root), "num_frames": 8, "input_size": sz.size,
                 "scale_size": sz.size, "scales": list(sz.scales), "batch_size": sz.batch_size, "num_workers": 0},
        "objective": {"target_ratio": 1.0, "ratio_weight": sz.ratio_weight, "rt_begin": sz.rt_begin,
                      "rt_end": sz.rt_end, "t_end": sz.t_end, "ratio_tolerance": sz.ratio_tolerance},
        "optim": {"epochs": sz.epochs, "lr": sz.lr, "schedule": sz.schedule, "lr_steps": list(sz.lr_steps)},
        "trainer": {"accelerator": "cpu", "devices": 1, "progress_bar": False, "log_every_n_steps": 5},
        "eval": {"plot": True},
    }
    for dotted, value in overrides.items():
        _set(cfg, dotted, value)
    return cfg


def pretrain_config(out: Path, images: Path, sz: DemoSize, model: str) -> dict:
    """Pre-training on the glyph images (T=1, every frame through the focal branch), the
    small-scale stand-in for the paper's ImageNet backbones: one per architecture, shared by
    every seed of the video stage (as one ImageNet checkpoint serves every run in the paper)."""
    return {
        "seed": 0,
        "run_dir": str(out / "runs" / f"pretrain-{model}"),
        "model": {"name": model, "dropout": 0.0, **({"selection": "all"} if model.startswith("af_") else {})},
        "data": {"preset": "imagefolder", "root": str(images), "train_list": "train", "val_list": "val",
                 "num_classes": 16, "input_size": sz.size, "scale_size": sz.size, "scales": list(sz.scales),
                 "flip": False, "batch_size": 64, "num_workers": 0},
        "optim": {"epochs": sz.pretrain_epochs, "lr": sz.pretrain_lr, "schedule": "cosine", "navigation_lr_mult": 1.0},
        "trainer": {"accelerator": "cpu", "devices": 1, "progress_bar": False, "log_every_n_steps": 20,
                    "stop_at": sz.pretrain_target},
        "eval": {"plot": False},
    }


def _slug(overrides: dict) -> str:
    if overrides.get("model.spatial"):
        sel = "regions-" + overrides["model.region_selection"]
        ratio = overrides.get("model.region_ratio", overrides.get("objective.target_region_ratio"))
    else:
        sel = overrides.get("model.selection", "all")
        ratio = overrides.get("model.ratio", overrides.get("objective.target_ratio"))
    return sel if ratio is None else f"{sel}{ratio}"


def measure_latency(checkpoint: Path, video, rounds: int = 5) -> float:
    """Median ms per video of the trained model as ``afnet predict`` runs it (prepared for
    inference, with the frame and region policy its run recorded), one video per call."""
    from afnet.benchmark import time_round_robin
    from afnet.inference import load_model_for_inference

    model = load_model_for_inference(checkpoint).model
    return time_round_robin({"m": lambda: model(video)}, rounds=rounds)["m"] * 1e3


def _write_config(out: Path, cfg_dict: dict) -> Path:
    path = out / "configs" / f"{Path(cfg_dict['run_dir']).name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg_dict, sort_keys=False))
    return path


def run_demo(out: str | Path = "results/demo", *, quick: bool = False, seeds=(0,), spatial: bool = False,
             progress=print) -> dict:
    """Generate the data, (pre-)train and evaluate the models (:data:`RUNS`, or
    :data:`SPATIAL_RUNS` with ``spatial``) for each seed, write the table (``table.md``,
    ``results.json``) and figures into ``out``; return the results dict."""
    from afnet.data import make_synthetic
    from afnet.data.dataset import build_dataset
    from afnet.data.synthetic import make_glyph_images
    from afnet.engine import calibrate, evaluate, load_config, train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sz = (SPATIAL_QUICK if quick else SPATIAL_FULL) if spatial else (QUICK if quick else FULL)
    start = time.time()
    progress(f"[demo] writing the synthetic {sz.task} dataset ({sz.num_train} train / {sz.num_val} val videos, "
             f"{sz.size}x{sz.size}) to {out / 'data'}")
    data = make_synthetic(out / "data", num_train=sz.num_train, num_val=sz.num_val, num_frames=sz.video_frames,
                          size=sz.size, seed=0, task=sz.task)
    images = None
    if sz.num_images:
        progress(f"[demo] writing {sz.num_images} + {sz.num_val_images} glyph images (pre-training set) "
                 f"to {out / 'images'}")
        images = make_glyph_images(out / "images", num_train=sz.num_images, num_val=sz.num_val_images,
                                   size=sz.size, seed=0)
    evidence = data.root / EVIDENCE_FILE   # written by the evidence task
    val = build_dataset("synthetic", data.root, data.frame_lists["val"], train=False, num_frames=8, input_size=sz.size,
                        scale_size=sz.size, evidence_file=evidence if evidence.is_file() else None)
    sample = val[0][0][:1]  # one view (1, T, 3, S, S): the latency probe
    runs = SPATIAL_RUNS if spatial else RUNS
    results: list[RunResult] = []
    pretrain_log: list[dict] = []
    headroom: list[dict] = []
    total = len(seeds) * len(runs)
    backbones = {}
    for backbone in sorted({b for _, _, b in runs if b is not None} if images else set()):
        progress(f"[demo] pre-training {backbone} on glyph images (until {sz.pretrain_target:.0%} top-1, at most "
                 f"{sz.pretrain_epochs} epochs) - {time.time() - start:.0f} s elapsed")
        cfg = load_config(_write_config(out, pretrain_config(out, images, sz, backbone)))
        t0 = time.time()
        trained = train(cfg)
        backbones[backbone] = str(trained.best_checkpoint)
        pretrain_log.append({"model": backbone, "top1": trained.metrics.get("top1"),
                             "epochs": trained.metrics.get("epoch", -1) + 1, "seconds": round(time.time() - t0, 1)})
        progress(f"[demo] {backbone} pre-trained: glyph top-1 {pretrain_log[-1]['top1']:.1%} after "
                 f"{pretrain_log[-1]['epochs']} epochs")
    for k, (seed, (label, overrides, backbone)) in enumerate(((s, r) for s in seeds for r in runs), 1):
        progress(f"[demo {k}/{total}] training {label} (seed {seed}, {sz.epochs} epochs) "
                 f"- {time.time() - start:.0f} s elapsed")
        cfg = load_config(_write_config(out, demo_config(out, data.root, sz, seed, overrides,
                                                         backbones.get(backbone))))
        t0 = time.time()
        trained = train(cfg)
        train_seconds = time.time() - t0
        target = overrides.get("objective.target_ratio", 1.0)
        learned = overrides.get("model.selection") == "navigation" and target < 1.0
        region_target = overrides.get("objective.target_region_ratio", 1.0)
        learned_regions = overrides.get("model.region_selection") == "navigation" and region_target < 1.0
        reported, variants = Path(trained.best_checkpoint), []
        if learned:  # the row runs its threshold calibrated to RT; as trained, and static-k, are variants
            raw = evaluate(cfg, reported, out_dir=Path(cfg.run_dir) / "eval_uncalibrated")
            variants = [run_result(f"{label} uncalibrated", seed, raw, round(measure_latency(reported, sample), 2)),
                        evaluate_static_k(cfg, label, seed, reported, f"model.ratio={target}")]
            reported = Path(calibrate(cfg, reported)["checkpoint"])
        elif learned_regions:  # its learned region threshold; static-k regions at RS, a variant
            variants = [evaluate_static_k(cfg, label, seed, reported, f"model.region_ratio={region_target}")]
        latency = round(measure_latency(reported, sample), 2)
        results.append(run_result(label, seed, evaluate(cfg, reported), latency, train_seconds))
        for row in results[-1:] + variants:
            progress(f"[demo {k}/{total}] {describe(row)}")
        results += variants
        if learned and sz.task == "evidence":
            headroom.append({"model": label, "seed": seed, **evidence_headroom(reported, val)})
            progress(f"[demo {k}/{total}] {label} top-1 when its focal branch computes: " + ", ".join(
                f"{p} {headroom[-1][p]:.1%}" for p in HEADROOM_POLICIES))
    summary = summarise(results, runs)
    figures = _figures(out, data, results, SPATIAL_RUNS[0][0] if spatial else EXPLAINED)
    report = {"quick": quick, "spatial": spatial, "seeds": list(seeds), "size": asdict(sz),
              "runs": [asdict(r) for r in results], "pretraining": pretrain_log, "summary": summary,
              "claims": claims(summary, spatial=spatial), "figures": figures,
              "headroom": headroom, "headroom_summary": summarise_headroom(headroom),
              "evidence_rate": next((r.evidence_rate for r in results if r.evidence_rate is not None), None),
              "seconds": round(time.time() - start, 1)}
    (out / "results.json").write_text(json.dumps(report, indent=1))
    (out / "table.md").write_text(markdown(report) + "\n")
    progress(f"[demo] done in {report['seconds']:.0f} s; table, JSON and figures in {out}")
    return report


def run_result(label: str, seed: int, metrics: dict, latency_ms: float | None, train_seconds: float = 0.0) -> RunResult:
    """A row of the demo from ``afnet.engine.evaluate``'s metrics."""
    kept = metrics.get("kept_ratio") or []
    region = metrics.get("mean_region_ratio")
    return RunResult(label, seed, float(metrics["top1"]), float(metrics["gflops_per_video"]), latency_ms,
                     float(metrics["mean_kept_ratio"]) if kept else None, [round(float(r), 3) for r in kept],
                     str(metrics["checkpoint"]), round(train_seconds, 1), None if region is None else float(region),
                     [round(float(p), 3) for p in metrics.get("navigation_precision", [])],
                     metrics.get("mean_navigation_precision"), metrics.get("evidence_rate"))


# Rows evaluated on a learned-RT row's trained checkpoint besides the row itself (its threshold
# calibrated to RT): "<label> uncalibrated" (the threshold as trained), "<label> static-k".
VARIANTS = (" uncalibrated", " static-k")


def evaluate_static_k(cfg, label: str, seed: int, checkpoint, override: str) -> RunResult:
    """The same checkpoint under a static-k policy instead of its learned keep/skip threshold:
    ``override`` ``model.ratio=RT`` (exactly round(RT * T) frames per video and point, those
    the navigation scores highest) or ``model.region_ratio=RS`` (exactly round(RS * g^2)
    regions per kept frame, likewise). Row ``"<label> static-k"``."""
    from afnet.engine import evaluate, load_config

    cfg = load_config(cfg.to_dict(), [override, "eval.plot=false"])
    metrics = evaluate(cfg, checkpoint, out_dir=Path(cfg.run_dir) / "eval_static_k")
    return run_result(f"{label} static-k", seed, metrics, None)


# The frames the focal branch computes in evidence_headroom, besides the model's own choice.
HEADROOM_POLICIES = ("own choice", "evidence frames", "as many other frames", "no frame")


def evidence_headroom(checkpoint, val, batch_size: int = 50) -> dict:
    """What the evidence frames are worth to a trained AFNet: top-1 on ``val`` (a dataset
    whose samples carry their evidence marks) of ``checkpoint`` (prepared as ``afnet predict``
    runs it) when its focal branch computes, at every navigation point, its own choice;
    exactly each video's evidence frames (a navigation of precision 1); as many frames without
    evidence (precision 0, drawn with a fixed seed); no frame (the ample branch and the
    residual path alone). The gap between the second and third is what a navigation that
    finds the evidence could gain over one that misses it."""
    import torch

    from afnet.inference import load_model_for_inference

    model = load_model_for_inference(checkpoint).model
    generator = torch.Generator().manual_seed(0)
    correct = dict.fromkeys(HEADROOM_POLICIES, 0)
    with torch.no_grad():
        for start in range(0, len(val), batch_size):
            samples = [val[i] for i in range(start, min(start + batch_size, len(val)))]
            clips = torch.stack([s[0] for s in samples])                    # (B, V, T, 3, S, S)
            views = clips.shape[1]
            target = torch.tensor([s[1] for s in samples])
            evidence = torch.stack([s[3] for s in samples]).flatten(0, 1)   # (B * V, T)
            other = torch.zeros_like(evidence)
            for row, marks in enumerate(evidence):  # as many frames, drawn among those without evidence
                free = (marks == 0).nonzero().flatten()
                other[row, free[torch.randperm(len(free), generator=generator)[:int(marks.sum())]]] = 1
            for policy, keep in zip(HEADROOM_POLICIES, (None, evidence, other, torch.zeros_like(evidence))):
                logits = model(clips.flatten(0, 1), keep=keep).logits
                probs = logits.softmax(-1).view(len(samples), views, -1).mean(1)
                correct[policy] += int((probs.argmax(-1) == target).sum())
    return {policy: hits / len(val) for policy, hits in correct.items()}


def describe(r: RunResult) -> str:
    return (f"{r.label}: top-1 {r.top1:.1%}, {r.gflops_per_video:.3f} GFLOPs"
            + ("" if r.latency_ms is None else f", {r.latency_ms:.1f} ms/video")
            + ("" if r.kept_ratio is None else f", kept {r.kept_ratio:.2f}")
            + ("" if r.precision is None else f", precision {r.precision:.2f}"))


def _stat(values) -> tuple:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(results: list[RunResult], configs=RUNS) -> list[dict]:
    """Mean and seed standard deviation of each row's numbers (precision per point too)."""
    rows = []
    labels = [label for label, *_ in configs]
    labels += [label + v for v in VARIANTS for label in labels if any(r.label == label + v for r in results)]
    for label in labels:
        runs = [r for r in results if r.label == label]
        if not runs:
            continue
        points = max(len(r.precision_per_point) for r in runs)
        rows.append({"model": label, "n": len(runs),
                     "top1": _stat([r.top1 for r in runs]),
                     "gflops_per_video": _stat([r.gflops_per_video for r in runs]),
                     "latency_ms": _stat([r.latency_ms for r in runs]),
                     "kept_ratio": _stat([r.kept_ratio for r in runs]),
                     "region_ratio": _stat([r.region_ratio for r in runs]),
                     "precision": _stat([r.precision for r in runs]),
                     "precision_per_point": [_stat([r.precision_per_point[i] for r in runs
                                                    if i < len(r.precision_per_point)]) for i in range(points)]})
    return rows


def summarise_headroom(headroom: list[dict]) -> list[dict]:
    """Mean and seed standard deviation of :func:`evidence_headroom`'s top-1s, per model."""
    labels = list(dict.fromkeys(h["model"] for h in headroom))
    return [{"model": label, "n": sum(h["model"] == label for h in headroom),
             **{p: _stat([h[p] for h in headroom if h["model"] == label]) for p in HEADROOM_POLICIES}}
            for label in labels]


# (claim, row A, row B): the claim holds if A's top-1 exceeds B's.
CLAIMS = (
    ("less is more: AFNet RT=0.5 beats TSN", "AFNet RT=0.5", "TSN"),
    ("less is more: AFNet RT=0.5 beats AFNet RT=1.0", "AFNet RT=0.5", "AFNet RT=1.0"),
    ("less is more: AFNet RT=0.25 beats TSN", "AFNet RT=0.25", "TSN"),
    ("less is more: AFNet RT=0.25 beats AFNet RT=1.0", "AFNet RT=0.25", "AFNet RT=1.0"),
    ("navigation beats uniform sampling at 0.5 (Table 5)", "AFNet RT=0.5", "AFNet uniform 0.5"),
    ("navigation beats random sampling at 0.5 (Table 5)", "AFNet RT=0.5", "AFNet random 0.5"),
    ("navigation at exactly 0.5 (static-k) beats uniform sampling", "AFNet RT=0.5 static-k", "AFNet uniform 0.5"),
    ("navigation at exactly 0.5 (static-k) beats random sampling", "AFNet RT=0.5 static-k", "AFNet random 0.5"),
)
SPATIAL_CLAIMS = (
    ("spatial navigation beats random regions (RS=0.5)", "AFNet spatial navigation RS=0.5", "AFNet random regions 0.5"),
    ("spatial navigation beats a centre crop (RS=0.5)", "AFNet spatial navigation RS=0.5", "AFNet centre crop 0.5"),
    ("spatial navigation at exactly RS=0.5 (static-k regions) beats random regions",
     "AFNet spatial navigation RS=0.5 static-k", "AFNet random regions 0.5"),
    ("spatial navigation at exactly RS=0.5 (static-k regions) beats a centre crop",
     "AFNet spatial navigation RS=0.5 static-k", "AFNet centre crop 0.5"),
)
# Two-sided test at about 95%: |difference| > T_CRIT * standard error of the difference of means.
T_CRIT = 2.0


def verdict(a: tuple, b: tuple, n: int) -> dict:
    """Top-1 difference of two rows (mean, std over ``n`` seeds each) in points, its standard
    error ``sqrt((sa^2 + sb^2) / n)``, and the verdict: ``supported`` when the difference
    exceeds ``T_CRIT`` standard errors, ``refuted`` when it is below minus that, else
    ``undecided`` (also with a single seed, which has no spread)."""
    (ma, sa), (mb, sb) = a, b
    diff = (ma - mb) * 100
    se = math.sqrt((sa ** 2 + sb ** 2) / n) * 100 if n > 1 else None
    if se is None:
        outcome = "undecided (one seed)"
    elif diff > T_CRIT * se:
        outcome = "supported"
    elif diff < -T_CRIT * se:
        outcome = "refuted"
    else:
        outcome = "undecided"
    return {"difference_points": round(diff, 2), "standard_error_points": None if se is None else round(se, 2),
            "verdict": outcome}


def claims(summary: list[dict], spatial: bool = False) -> dict:
    """Each claim of :data:`CLAIMS` (or :data:`SPATIAL_CLAIMS`) decided by :func:`verdict`."""
    by = {row["model"]: row for row in summary}
    out = {}
    for name, a, b in (SPATIAL_CLAIMS if spatial else CLAIMS):
        if a in by and b in by:
            out[name] = verdict(by[a]["top1"], by[b]["top1"], min(by[a]["n"], by[b]["n"]))
    return out


def _fmt(pair, digits=1, pct=False) -> str:
    mean, std = pair
    if mean is None:
        return "-"
    scale = 100 if pct else 1
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}" + ("%" if pct else "")


def markdown(report: dict) -> str:
    """The results table, the navigation precision table and the claims' verdicts."""
    seeds, summary = report["seeds"], report["summary"]
    lines = [f"Mean ± std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); 8 frames per video, "
             f"{report['size']['size']}x{report['size']['size']}.", "",
             "| model | top-1 | GFLOPs/video | ms/video (CPU) | kept ratio | region ratio | navigation precision |",
             "|---|---|---|---|---|---|---|"]
    for row in summary:
        lines.append(f"| {row['model']} | {_fmt(row['top1'], pct=True)} | {_fmt(row['gflops_per_video'], 3)} | "
                     f"{_fmt(row['latency_ms'])} | {_fmt(row['kept_ratio'], 2)} | {_fmt(row['region_ratio'], 2)} | "
                     f"{_fmt(row['precision'], 2)} |")
    with_points = [row for row in summary if row["precision_per_point"]]
    if with_points:
        points = max(len(row["precision_per_point"]) for row in with_points)
        lines += ["", f"Navigation precision per navigation point: the share of the frames each point keeps "
                      f"that carry the class evidence (a choice blind to content keeps "
                      f"{report['evidence_rate']:.2f}, the share of evidence frames).", "",
                  "| model | " + " | ".join(f"point {i + 1}" for i in range(points)) + " |",
                  "|---|" + "---|" * points]
        for row in with_points:
            lines.append(f"| {row['model']} | " + " | ".join(_fmt(p, 2) for p in row["precision_per_point"]) + " |")
    if report.get("headroom_summary"):
        lines += ["", "What the evidence frames are worth: validation top-1 of the learned-navigation "
                      "checkpoints when their focal branch computes, at every navigation point, their own "
                      "choice, exactly the evidence frames (a navigation of precision 1), as many frames "
                      "without evidence (precision 0), or no frame.", "",
                  "| model | " + " | ".join(HEADROOM_POLICIES) + " |", "|---|" + "---|" * len(HEADROOM_POLICIES)]
        for row in report["headroom_summary"]:
            lines.append(f"| {row['model']} | " + " | ".join(_fmt(row[p], pct=True) for p in HEADROOM_POLICIES) + " |")
    lines.append("")
    for name, c in report["claims"].items():
        se = "" if c["standard_error_points"] is None else f", standard error {c['standard_error_points']:.1f}"
        lines.append(f"- {name}: {c['difference_points']:+.1f} points top-1{se}: **{c['verdict']}**")
    return "\n".join(lines)


def _figures(out: Path, data, results: list[RunResult], explained: str) -> dict:
    """Fig. 5 plots come from ``evaluate`` (in each run dir); Fig. 6 (and, for the spatial
    runs, the kept regions) from ``afnet explain`` of the run labelled ``explained``."""
    figures = {"kept_ratio_plots": sorted(str(p) for p in (out / "runs").rglob("*.png"))}
    af = next((r for r in results if r.label == explained), None)
    if af is not None:
        from afnet.inference import draw_explanation, explain_video, load_model_for_inference

        model = load_model_for_inference(af.checkpoint)
        video = sorted((data.root / "videos" / "val").rglob("*.mp4"))[0]
        evidence = None
        if (data.root / EVIDENCE_FILE).is_file():
            from afnet.data.annotations import load_evidence
            evidence = load_evidence(data.root / EVIDENCE_FILE, data.root)[os.path.normpath(video)]
        path = out / "figures" / "explain_afnet.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        explanation = explain_video(video, model, evidence=evidence)
        draw_explanation(explanation, path)
        figures["explain"] = str(path)
        figures["explain_precision"] = explanation.precision()
    return figures
