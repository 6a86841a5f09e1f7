"""What makes the navigation learn where the evidence is: the study of docs/navigation.md.

Each row trains AF-ResNet-small with learned frame navigation on the demo's evidence task
(``afnet.data.synthetic``, ``task="evidence"``: the class glyph in 2-3 of 8 frames; the
frames that carry it are recorded, so navigation precision is measured), from one
pre-trained backbone, with the demo's recipe changed in one setting. The first row is the
demo's recipe (the paper's, scaled to 150 optimiser steps); every other row names what it
changes. For each row and seed it reports, for the best checkpoint as trained (no threshold
calibration): top-1, the kept share per navigation point, navigation precision per point
(the share of kept frames that carry evidence; a choice blind to content scores the evidence
rate), training seconds, and the precision after every epoch (the figure: precision against
optimiser steps). ``--headroom`` also evaluates what the evidence frames are worth to each
checkpoint (``afnet.demo.evidence_headroom``).

    python benchmarks/navigation_study.py --rows recipe saliency --seeds 0 1 2 --out results/navigation
    python benchmarks/navigation_study.py --report results/navigation   # tables and figure again

Results accumulate in ``<out>/study.json`` (a row already there for a seed is not re-run),
the tables in ``<out>/study.md``, the figure in ``<out>/precision_vs_steps.png``. The data,
glyph images and backbone are written once under ``<out>`` and shared by every row.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from afnet.demo import (
    FULL,
    NAV,
    QUICK,
    DemoRun,
    accelerator,
    demo_config,
    evaluate_static_k,
    evidence_headroom,
    mean_sd,
    pretrain_backbone,
    run_result,
    write_config,
)

# name -> (what changes against the demo's recipe, config overrides, demo-size changes)
_SALIENCY = {"objective.saliency_weight": 16.0, "objective.t_min": 1.0}
ROWS = {
    "recipe": ("the demo's recipe (reference: the paper's, scaled): lambda 16, bias (0, 1), nav lr x10, "
               "tau 1 -> 0.01 over 3 epochs, RT ramp epochs 0-2, 4 epochs", {}, {}),
    "lambda-0.5": ("lambda 0.5 (the paper's)", {"objective.ratio_weight": 0.5}, {}),
    "lambda-2": ("lambda 2", {"objective.ratio_weight": 2.0}, {}),
    "nav-lr-1": ("navigation lr x1 (not x10)", {"optim.navigation_lr_mult": 1.0}, {}),
    "nav-lr-100": ("navigation lr x100", {"optim.navigation_lr_mult": 100.0}, {}),
    "tau-const": ("temperature held at 1 (no decay)", {"objective.t_min": 1.0}, {}),
    "tau-slow": ("temperature 5 -> 0.1 over all 4 epochs", {"objective.t_start": 5.0, "objective.t_min": 0.1},
                 {"t_end": 4}),
    "rt-late": ("RT ramp over epochs 1-3 (the paper's shape: hold, then step down)", {}, {"rt_begin": 1, "rt_end": 3}),
    "bias-released": ("starting bias (1, 10), as released", {"model.navigation_bias": [1.0, 10.0]}, {}),
    "bias-0-3": ("starting bias (0, 3)", {"model.navigation_bias": [0.0, 3.0]}, {}),
    "steps-x4": ("4x the optimiser steps: 16 epochs, RT ramp 0-6, tau over 12", {},
                 {"epochs": 16, "rt_end": 6, "t_end": 12}),
    "saliency-1": ("+ saliency term mu 1 (beyond the paper), tau as the recipe", {"objective.saliency_weight": 1.0}, {}),
    "saliency-16": ("+ saliency term mu 16 (= lambda), tau as the recipe", {"objective.saliency_weight": 16.0}, {}),
    "saliency-1-tau-const": ("+ saliency term mu 1, tau held at 1",
                             {"objective.saliency_weight": 1.0, "objective.t_min": 1.0}, {}),
    "saliency-16-tau-const": ("+ saliency term mu 16, tau held at 1 (the study's recipe)", _SALIENCY, {}),
    "shared-nav": ("navigation's last layer shared by every frame position (beyond the paper: no per-position "
                   "parameters), the paper's objective", {"model.shared_navigation": True}, {}),
}


def parse_row(name: str) -> tuple[str, float]:
    base, _, rt = name.partition("@")
    if base not in ROWS:
        raise SystemExit(f"unknown row {name!r}; rows: {', '.join(ROWS)} (append @0.25 for RT 0.25)")
    return base, float(rt) if rt else 0.5


def setup(out: Path, sz, device: str = "cpu", progress=print) -> tuple[Path, str]:
    """The evidence dataset, the glyph images and the pre-trained AF backbone (written once)."""
    from afnet.data import make_synthetic
    from afnet.data.synthetic import make_glyph_images

    done = out / "setup.json"
    if done.is_file():
        info = json.loads(done.read_text())
        return Path(info["data"]), info["backbone"]
    progress(f"[study] writing the evidence task ({sz.num_train} / {sz.num_val} videos) and glyph images")
    data = make_synthetic(out / "data", num_train=sz.num_train, num_val=sz.num_val, num_frames=sz.video_frames,
                          size=sz.size, seed=0, task="evidence")
    images = make_glyph_images(out / "images", num_train=sz.num_images, num_val=sz.num_val_images, size=sz.size,
                               seed=0)
    backbone, log = pretrain_backbone(out, images, sz, "af_resnet_small", device)
    info = {"data": str(data.root), "backbone": backbone, "pretrain_top1": log["top1"],
            "pretrain_seconds": log["seconds"]}
    done.write_text(json.dumps(info, indent=1))
    progress(f"[study] backbone pre-trained: glyph top-1 {info['pretrain_top1']:.1%} in {info['pretrain_seconds']} s")
    return data.root, info["backbone"]


def epoch_history(run_dir: Path) -> list[dict]:
    """Per validated epoch: step, top-1, mean kept share, mean precision (from the CSV log)."""
    rows = {}
    with open(run_dir / "csv" / "metrics.csv") as f:
        for r in csv.DictReader(f):
            if r.get("val/top1"):
                points = sorted(k for k in r if k.startswith("val/navigation_precision_") and r[k])
                kept = sorted(k for k in r if k.startswith("val/kept_ratio_") and r[k])
                rows[int(r["epoch"])] = {
                    "epoch": int(r["epoch"]), "step": int(r["step"]), "top1": float(r["val/top1"]),
                    "kept": statistics.fmean(float(r[k]) for k in kept) if kept else None,
                    "precision": statistics.fmean(float(r[k]) for k in points) if points else None}
    return [rows[e] for e in sorted(rows)]


def run_row(out: Path, data_root: Path, backbone: str, sz, name: str, seed: int, headroom: bool,
            device: str = "cpu") -> dict:
    from afnet.data.dataset import build_dataset
    from afnet.data.synthetic import EVIDENCE_FILE
    from afnet.engine import calibrate, evaluate, load_config, train

    base, rt = parse_row(name)
    _, overrides, size_changes = ROWS[base]
    row_sz = replace(sz, **size_changes)
    run = DemoRun(name, (*NAV, f"objective.target_ratio={rt}", *(f"{k}={json.dumps(v)}" for k, v in overrides.items())),
                  "af_resnet_small")
    cfg_dict = demo_config(out, data_root, row_sz, seed, run, backbone, device)
    cfg_dict["run_dir"] = str(out / "runs" / f"{name}-seed{seed}")
    cfg_dict["eval"]["plot"] = False
    cfg = load_config(write_config(out, cfg_dict))
    t0 = time.time()
    trained = train(cfg)
    seconds = time.time() - t0
    metrics = evaluate(cfg, trained.best_checkpoint)
    result = {"row": name, "seed": seed, "rt": rt, **_scores(run_result(name, seed, metrics, None)),
              "evidence_rate": metrics["evidence_rate"],
              "train_seconds": round(seconds, 1), "steps": epoch_history(Path(cfg.run_dir)),
              "checkpoint": str(trained.best_checkpoint)}
    # at the budget: the threshold calibrated to RT (as the demo reports), and static-k
    try:
        calibrated = calibrate(cfg, trained.best_checkpoint)["checkpoint"]
    except ValueError as exc:   # e.g. a point whose margins are all equal: no threshold keeps RT; a result
        calibrated, result["calibration_failed"] = None, str(exc)
        print(f"[study] {name} seed {seed}: not calibrated: {exc}", flush=True)
    if calibrated is not None:
        result["calibrated"] = _scores(run_result(name, seed, evaluate(cfg, calibrated, out_dir=Path(cfg.run_dir) /
                                                                       "eval_calibrated"), None))
    result["static_k"] = _scores(evaluate_static_k(cfg, name, seed, trained.best_checkpoint, f"model.ratio={rt}"))
    if headroom and calibrated is not None:
        val = build_dataset("synthetic", data_root, str(data_root / "val_frames.txt"), train=False, num_frames=sz.frames,
                            input_size=sz.size, scale_size=sz.size, evidence_file=data_root / EVIDENCE_FILE)
        result["headroom"] = evidence_headroom(calibrated, val)
    return result


def _scores(row) -> dict:
    """The study's numbers of one evaluation (a :class:`afnet.demo.RunResult`)."""
    return {"top1": row.top1, "kept_per_point": row.kept_ratio_per_point, "kept": row.kept_ratio,
            "precision_per_point": row.precision_per_point, "precision": row.precision}


def _f(pair, digits=2, pct=False) -> str:
    m, s = pair
    if m is None:
        return "-"
    k = 100 if pct else 1
    return f"{m * k:.{1 if pct else digits}f} ± {s * k:.{1 if pct else digits}f}"


def report(out: Path) -> str:
    study = json.loads((out / "study.json").read_text())
    results, env = study["results"], study["environment"]
    names = list(dict.fromkeys(r["row"] for r in results))
    rate = next((r["evidence_rate"] for r in results if r.get("evidence_rate") is not None), None)
    lines = [f"Machine: {env['cpu']}; {env['threads']} thread(s); torch {env['torch']}.",
             f"Evidence rate (the precision of a choice blind to content): {rate:.2f}; at RT 0.5 a perfect "
             "navigation scores about 0.62 (only 2-3 of the 4 kept frames can carry evidence). Mean ± std over "
             "seeds. *As trained*: the best checkpoint with its learned keep/skip threshold; *calibrated*: the "
             "threshold shifted to keep RT (`afnet calibrate`, as the demo reports learned rows); *static-k*: "
             "exactly round(RT x 8) frames per video and point, those the navigation ranks highest.", "",
             "| row | RT | what changes | seeds | top-1 % as trained | kept as trained | precision as trained | "
             "top-1 % calibrated | precision calibrated (per point) | top-1 % static-k | precision static-k | "
             "train s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        runs = [r for r in results if r["row"] == name]
        base, rt = parse_row(name)
        cal = [r["calibrated"] for r in runs if "calibrated" in r]
        stk = [r["static_k"] for r in runs if "static_k" in r]
        per_point = ""
        if cal:
            points = len(cal[0]["precision_per_point"])
            per_point = " (" + " / ".join(f"{statistics.fmean(c['precision_per_point'][i] for c in cal):.2f}"
                                          for i in range(points)) + ")"
        lines.append(
            f"| {name} | {rt} | {ROWS[base][0]} | {len(runs)}"
            f"{f' ({len(cal)} calibrated: no threshold keeps RT in the others)' if len(cal) < len(runs) else ''} | {_f(mean_sd([r['top1'] for r in runs]), pct=True)} | "
            f"{_f(mean_sd([r['kept'] for r in runs]))} | {_f(mean_sd([r['precision'] for r in runs]))} | "
            f"{_f(mean_sd([c['top1'] for c in cal]), pct=True)} | "
            f"{_f(mean_sd([c['precision'] for c in cal]))}{per_point} | "
            f"{_f(mean_sd([c['top1'] for c in stk]), pct=True)} | {_f(mean_sd([c['precision'] for c in stk]))} | "
            f"{statistics.fmean(r['train_seconds'] for r in runs):.0f} |")
    with_headroom = [n for n in names if any("headroom" in r for r in results if r["row"] == n)]
    if with_headroom:
        policies = list(next(r["headroom"] for r in results if "headroom" in r))
        lines += ["", "What the evidence frames are worth to each calibrated checkpoint (top-1 % when its focal "
                  "branch computes these frames at every point; `afnet.demo.evidence_headroom`):", "",
                  "| row | " + " | ".join(policies) + " |", "|---|" + "---|" * len(policies)]
        for name in with_headroom:
            runs = [r for r in results if r["row"] == name and "headroom" in r]
            lines.append(f"| {name} | " + " | ".join(_f(mean_sd([r["headroom"][p] for r in runs]), pct=True)
                                                    for p in policies) + " |")
    text = "\n".join(lines) + "\n"
    (out / "study.md").write_text(text)
    _figure(out, results, names)
    return text


def _figure(out: Path, results: list, names: list) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        runs = [r for r in results if r["row"] == name and r["steps"]]
        if not runs:
            continue
        n = min(len(r["steps"]) for r in runs)
        steps = [runs[0]["steps"][i]["step"] for i in range(n)]
        prec = [statistics.fmean(r["steps"][i]["precision"] for r in runs) for i in range(n)]
        ax.plot(steps, prec, marker="o", label=name)
    rate = next((r["evidence_rate"] for r in results if r.get("evidence_rate") is not None), None)
    if rate is not None:
        ax.axhline(rate, color="grey", ls="--", lw=1, label="blind (evidence rate)")
    ax.set_xlabel("optimiser steps")
    ax.set_ylabel("navigation precision (validation, mean of points)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "precision_vs_steps.png", dpi=110)
    plt.close(fig)


def environment() -> dict:
    import torch

    from afnet.runtime import cpu_description
    return {"cpu": cpu_description(), "threads": torch.get_num_threads(), "torch": torch.__version__}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/navigation")
    p.add_argument("--rows", nargs="+", default=["recipe"], help=f"rows: {', '.join(ROWS)}; @0.25 for RT 0.25")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--headroom", action="store_true", help="also evaluate what the evidence frames are worth")
    p.add_argument("--quick", action="store_true", help="the demo's quick sizes (a smoke run)")
    p.add_argument("--report", metavar="OUT", help="only rewrite the tables and figure of OUT")
    p.add_argument("--accelerator", choices=("auto", "cpu", "gpu"), default="auto",
                   help="where the rows train: auto (default) takes the GPU where torch sees one")
    args = p.parse_args(argv)
    if args.report:
        print(report(Path(args.report)))
        return 0
    for name in args.rows:
        parse_row(name)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sz = QUICK if args.quick else FULL
    device = accelerator(args.accelerator)
    data_root, backbone = setup(out, sz, device)
    store = out / "study.json"
    study = json.loads(store.read_text()) if store.is_file() else {"environment": environment(), "results": []}
    for name in args.rows:
        for seed in args.seeds:
            if any(r["row"] == name and r["seed"] == seed for r in study["results"]):
                continue
            print(f"[study] {name} seed {seed}", flush=True)
            result = run_row(out, data_root, backbone, sz, name, seed, args.headroom, device)
            study["results"].append(result)
            store.write_text(json.dumps(study, indent=1))
            print(f"[study] {name} seed {seed}: top-1 {result['top1']:.1%}, kept {result['kept']:.2f}, "
                  f"precision {result['precision']:.2f} {result['precision_per_point']}, "
                  f"{result['train_seconds']:.0f} s", flush=True)
    print(report(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
