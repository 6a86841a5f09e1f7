"""The end-to-end demo: the paper's two central claims checked at small scale, on this CPU.

    make_synthetic ─► train {TSN, AFNet RT=0.5, AFNet uniform 0.5} x seeds ─► evaluate
    ─► top-1, GFLOPs/video, latency/video, kept ratio ─► table (Markdown, JSON), figures

All three models use the small ResNet backbone and 8 frames. The synthetic classes need
temporal reasoning (motion direction, order of two flashes, growing vs shrinking), and no
class can be told from one frame's appearance (``afnet.data.synthetic``), so neither model
family wins by construction. Whatever the numbers show is reported.

``spatial=True`` runs Table 5's spatial rows instead (paper §3.3): every frame kept, half of
the regions of each focal block computed, chosen by the spatial navigation, at random, or
as a centre crop. The target square and the distractors move over the whole frame, so where
to look changes from video to video and frame to frame.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml

# label -> config overrides; all else shared. The learned navigation starts with a (skip,
# keep) bias of (0, 1) instead of the released (1, 10): every frame is still selected at
# first, but the straight-through gradient is not saturated, so the kept ratio can reach
# RT within a short schedule (with (1, 10) it stayed at 1.0 over 12 epochs here).
RUNS = (
    ("TSN", {"model.name": "tsn_resnet_small"}),
    ("AFNet RT=0.5", {"model.name": "af_resnet_small", "model.selection": "navigation",
                      "model.navigation_bias": [0.0, 1.0], "objective.target_ratio": 0.5}),
    ("AFNet uniform 0.5", {"model.name": "af_resnet_small", "model.selection": "uniform", "model.ratio": 0.5}),
)
# Table 5's spatial rows: all frames, RS 0.5; region grid 4/2/2 on the 16/8/4-pixel focal maps
# of a 64-pixel input (regions of 4, 4 and 2 pixels).
_SPATIAL = {"model.name": "af_resnet_small", "model.selection": "all", "model.spatial": True,
            "model.region_grid": [4, 2, 2]}
SPATIAL_RUNS = (
    ("AFNet spatial navigation RS=0.5", {**_SPATIAL, "model.region_selection": "navigation",
                                         "model.navigation_bias": [0.0, 1.0], "objective.target_region_ratio": 0.5}),
    ("AFNet random regions 0.5", {**_SPATIAL, "model.region_selection": "random", "model.region_ratio": 0.5}),
    ("AFNet centre crop 0.5", {**_SPATIAL, "model.region_selection": "center", "model.region_ratio": 0.5}),
)


@dataclass(frozen=True)
class DemoSize:
    num_train: int
    num_val: int
    size: int
    video_frames: int
    epochs: int
    lr_steps: tuple
    rt_begin: int
    rt_end: int
    t_end: int
    batch_size: int = 16
    ratio_weight: float = 2.0  # lambda; 0.5 in the paper's 55-epoch schedule


FULL = DemoSize(num_train=320, num_val=96, size=64, video_frames=16, epochs=10, lr_steps=(9,), rt_begin=1,
                rt_end=4, t_end=12)
QUICK = DemoSize(num_train=24, num_val=16, size=32, video_frames=12, epochs=2, lr_steps=(), rt_begin=0,
                 rt_end=1, t_end=2, batch_size=8)


@dataclass
class RunResult:
    label: str
    seed: int
    top1: float
    gflops_per_video: float
    latency_ms: float
    kept_ratio: float | None
    kept_ratio_per_point: list = field(default_factory=list)
    checkpoint: str = ""
    train_seconds: float = 0.0
    region_ratio: float | None = None


def demo_config(out: Path, data_root: Path, sz: DemoSize, seed: int, overrides: dict) -> dict:
    """The engine configuration of one demo run (a plain dict, saved beside its results)."""
    cfg = {
        "seed": seed,
        "run_dir": str(out / "runs" / f"{overrides['model.name']}-{_slug(overrides)}-seed{seed}"),
        "model": {"name": "af_resnet_small"},
        "data": {"preset": "synthetic", "root": str(data_root), "num_frames": 8, "input_size": sz.size,
                 "scale_size": sz.size, "batch_size": sz.batch_size, "num_workers": 0},
        "objective": {"target_ratio": 1.0, "ratio_weight": sz.ratio_weight, "rt_begin": sz.rt_begin, "rt_end": sz.rt_end,
                      "t_end": sz.t_end},
        "optim": {"epochs": sz.epochs, "lr": 0.02, "lr_steps": list(sz.lr_steps)},
        "trainer": {"accelerator": "cpu", "devices": 1, "progress_bar": False, "log_every_n_steps": 5},
        "eval": {"plot": True},
    }
    for dotted, value in overrides.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return cfg


def _slug(overrides: dict) -> str:
    if overrides.get("model.spatial"):
        sel = "regions-" + overrides["model.region_selection"]
        ratio = overrides.get("model.region_ratio", overrides.get("objective.target_region_ratio"))
    else:
        sel = overrides.get("model.selection", "all")
        ratio = overrides.get("model.ratio", overrides.get("objective.target_ratio"))
    return sel if ratio is None else f"{sel}{ratio}"


def measure_latency(checkpoint: Path, video: torch.Tensor, rounds: int = 5) -> float:
    """Median ms per video of the trained model as ``afnet predict`` runs it (prepared for
    inference, with the frame and region policy its run recorded), one video per call."""
    from afnet.benchmark import time_round_robin
    from afnet.inference import load_model_for_inference

    model = load_model_for_inference(checkpoint).model
    return time_round_robin({"m": lambda: model(video)}, rounds=rounds)["m"] * 1e3


def run_demo(out: str | Path = "results/demo", *, quick: bool = False, seeds=(0,), spatial: bool = False,
             progress=print) -> dict:
    """Generate the data, train and evaluate the three models (:data:`RUNS`, or
    :data:`SPATIAL_RUNS` with ``spatial``) for each seed, write the table (``table.md``,
    ``results.json``) and figures into ``out``; return the results dict."""
    from afnet.data import make_synthetic
    from afnet.data.dataset import build_dataset
    from afnet.engine import evaluate, load_config, train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sz = QUICK if quick else FULL
    start = time.time()
    progress(f"[demo] writing the synthetic dataset ({sz.num_train} train / {sz.num_val} val videos, "
             f"{sz.size}x{sz.size}) to {out / 'data'}")
    data = make_synthetic(out / "data", num_train=sz.num_train, num_val=sz.num_val, num_frames=sz.video_frames,
                          size=sz.size, seed=0)
    val = build_dataset("synthetic", data.root, data.frame_lists["val"], train=False, num_frames=8,
                        input_size=sz.size, scale_size=sz.size)
    sample = val[0][0][:1]  # one view (1, T, 3, S, S): the latency probe
    runs = SPATIAL_RUNS if spatial else RUNS
    results: list[RunResult] = []
    total = len(seeds) * len(runs)
    for seed in seeds:
        for label, overrides in runs:
            k = len(results) + 1
            progress(f"[demo {k}/{total}] training {label} (seed {seed}, {sz.epochs} epochs) "
                     f"- {time.time() - start:.0f} s elapsed")
            cfg_dict = demo_config(out, data.root, sz, seed, overrides)
            cfg_path = out / "configs" / f"{Path(cfg_dict['run_dir']).name}.yaml"
            cfg_path.parent.mkdir(parents=True, exist_ok=True)
            cfg_path.write_text(yaml.safe_dump(cfg_dict, sort_keys=False))
            cfg = load_config(cfg_path)
            t0 = time.time()
            trained = train(cfg)
            train_seconds = time.time() - t0
            metrics = evaluate(cfg, trained.best_checkpoint)
            latency = measure_latency(Path(trained.best_checkpoint), sample)
            kept = metrics.get("kept_ratio") or []
            region = metrics.get("mean_region_ratio")
            results.append(RunResult(label, seed, float(metrics["top1"]), float(metrics["gflops_per_video"]),
                                     round(latency, 2), float(metrics["mean_kept_ratio"]) if kept else None,
                                     [round(float(r), 3) for r in kept], str(trained.best_checkpoint),
                                     round(train_seconds, 1), None if region is None else float(region)))
            progress(f"[demo {k}/{total}] {label}: top-1 {results[-1].top1:.1%}, "
                     f"{results[-1].gflops_per_video:.3f} GFLOPs, {latency:.1f} ms/video")
    summary = summarise(results, runs)
    figures = _figures(out, data, results, SPATIAL_RUNS[0][0] if spatial else "AFNet RT=0.5")
    report = {"quick": quick, "spatial": spatial, "seeds": list(seeds), "size": asdict(sz),
              "runs": [asdict(r) for r in results], "summary": summary, "claims": claims(summary), "figures": figures,
              "seconds": round(time.time() - start, 1)}
    (out / "results.json").write_text(json.dumps(report, indent=1))
    (out / "table.md").write_text(markdown(summary, report["claims"], seeds) + "\n")
    progress(f"[demo] done in {report['seconds']:.0f} s; table, JSON and figures in {out}")
    return report


def summarise(results: list[RunResult], configs=RUNS) -> list[dict]:
    rows = []
    for label, _ in configs:
        runs = [r for r in results if r.label == label]
        if not runs:
            continue

        def stat(values):
            values = [v for v in values if v is not None]
            if not values:
                return None, None
            return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

        rows.append({"model": label, "n": len(runs),
                     "top1": stat([r.top1 for r in runs]),
                     "gflops_per_video": stat([r.gflops_per_video for r in runs]),
                     "latency_ms": stat([r.latency_ms for r in runs]),
                     "kept_ratio": stat([r.kept_ratio for r in runs]),
                     "region_ratio": stat([r.region_ratio for r in runs])})
    return rows


def claims(summary: list[dict]) -> dict:
    """Each claim as the top-1 difference (points) and a verdict that respects the seeds'
    spread: "yes"/"no" only when the difference exceeds the combined standard deviation."""
    by = {row["model"]: row["top1"] for row in summary}

    def compare(a: str, b: str) -> dict | None:
        if a not in by or b not in by:
            return None
        (ma, sa), (mb, sb) = by[a], by[b]
        diff, spread = (ma - mb) * 100, (sa ** 2 + sb ** 2) ** 0.5 * 100
        verdict = "within seed spread" if abs(diff) <= spread and spread > 0 else ("yes" if diff > 0 else "no")
        return {"difference_points": round(diff, 2), "spread_points": round(spread, 2), "verdict": verdict}

    if "AFNet spatial navigation RS=0.5" in by:
        nav = "AFNet spatial navigation RS=0.5"
        return {"spatial_navigation_beats_random (RS=0.5)": compare(nav, "AFNet random regions 0.5"),
                "spatial_navigation_beats_centre_crop (RS=0.5)": compare(nav, "AFNet centre crop 0.5")}
    return {"less_is_more (AFNet RT=0.5 vs TSN)": compare("AFNet RT=0.5", "TSN"),
            "navigation_beats_fixed (AFNet RT=0.5 vs uniform 0.5)": compare("AFNet RT=0.5", "AFNet uniform 0.5")}


def markdown(summary: list[dict], claim: dict, seeds) -> str:
    def fmt(pair, scale=1.0, digits=1, pct=False):
        mean, std = pair
        if mean is None:
            return "-"
        if pct:
            return f"{mean * 100:.{digits}f} ± {std * 100:.{digits}f}%"
        return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"

    lines = [f"Mean ± std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); 8 frames per video.", "",
             "| model | top-1 | GFLOPs/video | ms/video (CPU) | kept ratio | region ratio |",
             "|---|---|---|---|---|---|"]
    for row in summary:
        lines.append(f"| {row['model']} | {fmt(row['top1'], pct=True)} | {fmt(row['gflops_per_video'], digits=3)} | "
                     f"{fmt(row['latency_ms'])} | {fmt(row['kept_ratio'], digits=2)} | "
                     f"{fmt(row['region_ratio'], digits=2)} |")
    lines.append("")
    for name, c in claim.items():
        lines.append(f"- {name}: n/a" if c is None else
                     f"- {name}: {c['difference_points']:+.1f} points top-1 (seed spread ±{c['spread_points']:.1f}): "
                     f"{c['verdict']}")
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
        path = out / "figures" / "explain_afnet.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        draw_explanation(explain_video(video, model), path)
        figures["explain"] = str(path)
    return figures
