"""The demo's report: one line per row as it trains, the Markdown table and the figures."""
from __future__ import annotations

import os
from pathlib import Path

from afnet.data.synthetic import EVIDENCE_FILE
from afnet.demo.statistics import HEADROOM_POLICIES


def describe(r) -> str:
    """One line of a :class:`~afnet.demo.run.RunResult`."""
    return (f"{r.label}: top-1 {r.top1:.1%}, {r.gflops_per_video:.3f} GFLOPs"
            + ("" if r.latency_ms is None else f", {r.latency_ms:.1f} ms/video")
            + ("" if r.kept_ratio is None else f", kept {r.kept_ratio:.2f}")
            + ("" if r.precision is None else f", precision {r.precision:.2f}")
            + ("" if r.region_ratio is None else f", regions {r.region_ratio:.2f}")
            + ("" if r.region_precision is None else f", region precision {r.region_precision:.2f}"))



def _fmt(pair, digits=1, pct=False) -> str:
    mean, std = pair
    if mean is None:
        return "-"
    scale = 100 if pct else 1
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}" + ("%" if pct else "")


def markdown(report: dict) -> str:
    """The results table, the navigation precision table and the claims' verdicts."""
    seeds, summary = report["seeds"], report["summary"]
    spatial = any(row.get("region_precision", (None,))[0] is not None for row in summary)
    lines = [f"Mean ± std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); "
             f"{report['size']['frames']} frames per video, "
             f"{report['size']['size']}x{report['size']['size']}.", "",
             "| model | top-1 | GFLOPs/video | ms/video (CPU) | kept ratio | region ratio | navigation precision |"
             + (" region precision |" if spatial else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if spatial else "")]
    for row in summary:
        lines.append(f"| {row['model']} | {_fmt(row['top1'], pct=True)} | {_fmt(row['gflops_per_video'], 3)} | "
                     f"{_fmt(row['latency_ms'])} | {_fmt(row['kept_ratio'], 2)} | {_fmt(row['region_ratio'], 2)} | "
                     f"{_fmt(row['precision'], 2)} |" + (f" {_fmt(row['region_precision'], 2)} |" if spatial else ""))
    if any(row["precision_per_point"] for row in summary):
        lines += _per_point_table(summary, "precision_per_point", "point", (
            f"Navigation precision per navigation point: the share of the frames each point keeps that carry the "
            f"class evidence (a choice blind to content keeps {report['evidence_rate']:.2f}, the share of evidence "
            f"frames)."))
    if any(row.get("region_precision_per_point") for row in summary):
        lines += _per_point_table(summary, "region_precision_per_point", "block", (
            f"Region precision per spatial block: the share of the regions each block computes (in the evidence "
            f"frames) that hold the glyph's cell (a choice blind to content scores {report['region_rate']:.2f})."))
    if report.get("headroom_summary"):
        lines += ["", "What the evidence frames are worth: validation top-1 of the learned-navigation "
                      "checkpoints when their focal branch computes, at every navigation point, their own "
                      "choice, exactly the evidence frames (a navigation of precision 1), as many frames "
                      "without evidence (precision 0), or no frame.", "",
                  "| model | " + " | ".join(HEADROOM_POLICIES) + " |", "|---|" + "---|" * len(HEADROOM_POLICIES)]
        for row in report["headroom_summary"]:
            lines.append(f"| {row['model']} | " + " | ".join(_fmt(row[p], pct=True) for p in HEADROOM_POLICIES) + " |")
    if report.get("precision_bars"):
        lines += ["", "Navigation precision against the bars (mean over the points; a row counts only with its kept "
                      "share within 0.05 of RT):", ""]
        for b in report["precision_bars"]:
            state = "met" if b["met"] else ("not met" if b["on_budget"] else "not met (kept share off RT)")
            lines.append(f"- {b['model']}: precision {b['precision']:.2f} against {b['bar']:.2f}, kept "
                         f"{b['kept_ratio']:.2f}: **{state}**")
    if report.get("region_precision_bars"):
        lines += ["", "Region precision against the bar (mean over the spatial blocks; a row counts only with its "
                      "region share within 0.05 of RS):", ""]
        for b in report["region_precision_bars"]:
            state = "met" if b["met"] else ("not met" if b["on_budget"] else "not met (region share off RS)")
            lines.append(f"- {b['model']}: region precision {b['precision']:.2f} against {b['bar']:.2f}, region "
                         f"share {b['region_ratio']:.2f}: **{state}**")
    if report.get("evidence_worth"):
        lines += ["", "Finding the evidence is worth (evidence frames minus as many other frames, bar 15 points):", ""]
        for w in report["evidence_worth"]:
            lines.append(f"- {w['model']}: {w['gap'] * 100:+.1f} points: **{'met' if w['met'] else 'not met'}**")
    lines.append("")
    for name, c in report["claims"].items():
        se = "" if c["standard_error_points"] is None else f", standard error {c['standard_error_points']:.1f}"
        lines.append(f"- {name}: {c['difference_points']:+.1f} points top-1{se}: **{c['verdict']}**")
    return "\n".join(lines)


def _per_point_table(summary: list[dict], key: str, column: str, caption: str) -> list[str]:
    """The caption and a table of ``key`` (mean ± std per point) for the rows that have it."""
    rows = [row for row in summary if row.get(key)]
    points = max(len(row[key]) for row in rows)
    lines = ["", caption, "", "| model | " + " | ".join(f"{column} {i + 1}" for i in range(points)) + " |",
             "|---|" + "---|" * points]
    return lines + [f"| {row['model']} | " + " | ".join(_fmt(p, 2) for p in row[key]) + " |" for row in rows]


def draw_figures(out: Path, data, results: list, explained: str) -> dict:
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
            evidence = load_evidence(data.root / EVIDENCE_FILE, data.root)[os.path.normpath(video)].frames
        path = out / "figures" / "explain_afnet.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        explanation = explain_video(video, model, evidence=evidence)
        draw_explanation(explanation, path)
        figures["explain"] = str(path)
        figures["explain_precision"] = explanation.precision()
    return figures
