"""The demo's pipeline: data, pre-training, each row trained and evaluated, the report written."""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from afnet.data.synthetic import EVIDENCE_FILE
from afnet.demo.plan import (
    EXPLAINED,
    FULL,
    QUICK,
    RUNS,
    SPATIAL_FULL,
    SPATIAL_QUICK,
    SPATIAL_RUNS,
    DemoRun,
    accelerator,
    demo_config,
    pretrain_config,
)
from afnet.demo.report import describe, draw_figures, markdown
from afnet.demo.statistics import (
    HEADROOM_POLICIES,
    claims,
    evidence_worth,
    precision_bars,
    region_precision_bars,
    summarise,
    summarise_headroom,
)


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
    region_precision_per_point: list = field(default_factory=list)  # per spatial block: glyph-cell share of regions
    region_precision: float | None = None                     # its mean over the spatial blocks
    region_evidence_rate: float | None = None                 # what a region choice blind to content scores


def measure_latency(checkpoint: Path, video, rounds: int = 5) -> float:
    """Median ms per video of the trained model as ``afnet predict`` runs it (prepared for
    inference, with the frame and region policy its run recorded), one video per call, on the CPU."""
    from afnet.benchmark import time_round_robin
    from afnet.inference import load_model_for_inference

    model = load_model_for_inference(checkpoint).model
    return time_round_robin({"m": lambda: model(video)}, rounds=rounds)["m"] * 1e3


def write_config(out: Path, cfg_dict: dict) -> Path:
    """``cfg_dict`` saved as ``out/configs/<run folder name>.yaml`` (beside the results); its path."""
    path = out / "configs" / f"{Path(cfg_dict['run_dir']).name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg_dict, sort_keys=False))
    return path


def pretrain_backbone(out: Path, images: Path, sz, model: str, device: str = "cpu") -> tuple[str, dict]:
    """Pre-train ``model`` on the glyph images (:func:`~afnet.demo.plan.pretrain_config`):
    its best checkpoint, and a log entry (model, glyph top-1, epochs, seconds)."""
    from afnet.engine import load_config, train

    t0 = time.time()
    trained = train(load_config(write_config(out, pretrain_config(out, images, sz, model, device))))
    return str(trained.best_checkpoint), {"model": model, "top1": trained.metrics.get("top1"),
                                          "epochs": trained.metrics.get("epoch", -1) + 1,
                                          "seconds": round(time.time() - t0, 1)}


def run_demo(out: str | Path = "results/demo", *, quick: bool = False, seeds=(0,), spatial: bool = False,
             accelerator_name: str = "auto", progress=print) -> dict:
    """Generate the data, (pre-)train and evaluate the models (:data:`RUNS`, or
    :data:`SPATIAL_RUNS` with ``spatial``) for each seed, write the table (``table.md``,
    ``results.json``) and figures into ``out``; return the results dict.

    Args:
        out: the results folder.
        quick: the smoke sizes (:data:`QUICK`): seconds, not a result.
        seeds: the video stage's seeds (the data and the pre-trained backbones are shared).
        spatial: Table 5's spatial rows instead of the temporal ones.
        accelerator_name: ``auto`` (the GPU where torch sees one), ``cpu`` or ``gpu``: where
            the models train and are evaluated (latency is always measured on the CPU).
        progress: called with one line per step.
    """
    from afnet.data import make_synthetic
    from afnet.data.dataset import build_dataset
    from afnet.data.synthetic import make_glyph_images
    from afnet.engine import calibrate, evaluate, load_config, train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = accelerator(accelerator_name)
    sz = (SPATIAL_QUICK if quick else SPATIAL_FULL) if spatial else (QUICK if quick else FULL)
    start = time.time()
    progress(f"[demo] writing the synthetic {sz.task} dataset ({sz.num_train} train / {sz.num_val} val videos, "
             f"{sz.size}x{sz.size}) to {out / 'data'}; training on {device}")
    data = make_synthetic(out / "data", num_train=sz.num_train, num_val=sz.num_val, num_frames=sz.video_frames,
                          size=sz.size, seed=0, task=sz.task, region_grid=sz.region_grid)
    images = None
    if sz.num_images:
        progress(f"[demo] writing {sz.num_images} + {sz.num_val_images} glyph images (pre-training set) "
                 f"to {out / 'images'}")
        images = make_glyph_images(out / "images", num_train=sz.num_images, num_val=sz.num_val_images,
                                   size=sz.size, seed=0)
    evidence = data.root / EVIDENCE_FILE   # written by the evidence task
    val = build_dataset("synthetic", data.root, data.frame_lists["val"], train=False, num_frames=sz.frames,
                        input_size=sz.size, scale_size=sz.size, evidence_file=evidence if evidence.is_file() else None)
    sample = val[0][0][:1]  # one view (1, T, 3, S, S): the latency probe
    runs: tuple[DemoRun, ...] = SPATIAL_RUNS if spatial else RUNS
    results: list[RunResult] = []
    pretrain_log: list[dict] = []
    headroom: list[dict] = []
    total = len(seeds) * len(runs)
    backbones = {}
    for backbone in sorted({r.backbone for r in runs if r.backbone is not None} if images else set()):
        progress(f"[demo] pre-training {backbone} on glyph images (until {sz.pretrain_target:.0%} top-1, at most "
                 f"{sz.pretrain_epochs} epochs) - {time.time() - start:.0f} s elapsed")
        backbones[backbone], entry = pretrain_backbone(out, images, sz, backbone, device)
        pretrain_log.append(entry)
        progress(f"[demo] {backbone} pre-trained: glyph top-1 {pretrain_log[-1]['top1']:.1%} after "
                 f"{pretrain_log[-1]['epochs']} epochs")
    for k, (seed, run) in enumerate(((s, r) for s in seeds for r in runs), 1):
        label = run.label
        progress(f"[demo {k}/{total}] training {label} (seed {seed}, {sz.epochs} epochs) "
                 f"- {time.time() - start:.0f} s elapsed")
        cfg = load_config(write_config(out, demo_config(out, data.root, sz, seed, run, backbones.get(run.backbone),
                                                         device)))
        t0 = time.time()
        trained = train(cfg)
        train_seconds = time.time() - t0
        reported, variants = Path(trained.best_checkpoint), []
        if run.learned_frames:  # the row runs its threshold calibrated to RT; as trained, and static-k, are variants
            target = run.setting("objective.target_ratio")
            raw = evaluate(cfg, reported, out_dir=Path(cfg.run_dir) / "eval_uncalibrated")
            variants = [run_result(f"{label} uncalibrated", seed, raw, round(measure_latency(reported, sample), 2)),
                        evaluate_static_k(cfg, label, seed, reported, f"model.ratio={target}")]
            reported = Path(calibrate(cfg, reported)["checkpoint"])
        elif run.learned_regions:  # its learned region threshold; static-k regions at RS, a variant
            region_target = run.setting("objective.target_region_ratio")
            variants = [evaluate_static_k(cfg, label, seed, reported, f"model.region_ratio={region_target}")]
        latency = round(measure_latency(reported, sample), 2)
        results.append(run_result(label, seed, evaluate(cfg, reported), latency, train_seconds))
        for row in results[-1:] + variants:
            progress(f"[demo {k}/{total}] {describe(row)}")
        results += variants
        if run.learned_frames and sz.task == "evidence":
            headroom.append({"model": label, "seed": seed, **evidence_headroom(reported, val)})
            progress(f"[demo {k}/{total}] {label} top-1 when its focal branch computes: " + ", ".join(
                f"{p} {headroom[-1][p]:.1%}" for p in HEADROOM_POLICIES))
    summary = summarise(results, runs)
    figures = draw_figures(out, data, results, SPATIAL_RUNS[0].label if spatial else EXPLAINED)
    rate = next((r.evidence_rate for r in results if r.evidence_rate is not None), None)
    headroom_summary = summarise_headroom(headroom)
    region_rate = next((r.region_evidence_rate for r in results if r.region_evidence_rate is not None), None)
    report = {"quick": quick, "spatial": spatial, "seeds": list(seeds), "size": asdict(sz), "accelerator": device,
              "runs": [asdict(r) for r in results], "pretraining": pretrain_log, "summary": summary,
              "claims": claims(summary, spatial=spatial), "figures": figures,
              "headroom": headroom, "headroom_summary": headroom_summary,
              "precision_bars": precision_bars(summary, rate), "region_rate": region_rate,
              "region_precision_bars": region_precision_bars(summary),
              "evidence_worth": evidence_worth(headroom_summary), "evidence_rate": rate,
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
                     metrics.get("mean_navigation_precision"), metrics.get("evidence_rate"),
                     [round(float(p), 3) for p in metrics.get("region_precision", [])],
                     metrics.get("mean_region_precision"),
                     statistics.fmean(metrics["region_evidence_rate"]) if metrics.get("region_evidence_rate") else None)


def evaluate_static_k(cfg, label: str, seed: int, checkpoint, override: str) -> RunResult:
    """The same checkpoint under a static-k policy instead of its learned keep/skip threshold:
    ``override`` ``model.ratio=RT`` (exactly round(RT * T) frames per video and point, those
    the navigation scores highest) or ``model.region_ratio=RS`` (exactly round(RS * g^2)
    regions per kept frame, likewise). Row ``"<label> static-k"``."""
    from afnet.engine import evaluate, load_config

    cfg = load_config(cfg.to_dict(), [override, "eval.plot=false"])
    metrics = evaluate(cfg, checkpoint, out_dir=Path(cfg.run_dir) / "eval_static_k")
    return run_result(f"{label} static-k", seed, metrics, None)


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
