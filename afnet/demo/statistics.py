"""The demo's numbers over seeds: means and spreads, the claims' verdicts, the precision bars."""
from __future__ import annotations

import math
import statistics

from afnet.demo.plan import RUNS

# Rows evaluated on a learned-RT row's trained checkpoint besides the row itself (its threshold
# calibrated to RT): "<label> uncalibrated" (the threshold as trained), "<label> static-k".
VARIANTS = (" uncalibrated", " static-k")
# The frames the focal branch computes in evidence_headroom, besides the model's own choice.
HEADROOM_POLICIES = ("own choice", "evidence frames", "as many other frames", "no frame")


def mean_sd(values) -> tuple:
    """(mean, sample standard deviation) of the values that are not None; (None, None) if none,
    a spread of 0 for one value."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(results: list, configs=RUNS) -> list[dict]:
    """Mean and seed standard deviation of each row's numbers (precision per point too)."""
    rows = []
    labels = [run.label for run in configs]
    labels += [label + v for v in VARIANTS for label in labels if any(r.label == label + v for r in results)]
    for label in labels:
        runs = [r for r in results if r.label == label]
        if not runs:
            continue
        rows.append({"model": label, "n": len(runs),
                     "top1": mean_sd([r.top1 for r in runs]),
                     "gflops_per_video": mean_sd([r.gflops_per_video for r in runs]),
                     "latency_ms": mean_sd([r.latency_ms for r in runs]),
                     "kept_ratio": mean_sd([r.kept_ratio for r in runs]),
                     "region_ratio": mean_sd([r.region_ratio for r in runs]),
                     "precision": mean_sd([r.precision for r in runs]),
                     "precision_per_point": _per_point([r.precision_per_point for r in runs]),
                     "region_precision": mean_sd([r.region_precision for r in runs]),
                     "region_precision_per_point": _per_point([r.region_precision_per_point for r in runs])})
    return rows


def _per_point(lists: list) -> list:
    """(mean, std) at each index over the runs' per-point lists (a run without that index left out)."""
    return [mean_sd([values[i] for values in lists if i < len(values)]) for i in range(max(map(len, lists)))]


def summarise_headroom(headroom: list[dict]) -> list[dict]:
    """Mean and seed standard deviation of :func:`evidence_headroom`'s top-1s, per model."""
    labels = list(dict.fromkeys(h["model"] for h in headroom))
    return [{"model": label, "n": sum(h["model"] == label for h in headroom),
             **{p: mean_sd([h[p] for h in headroom if h["model"] == label]) for p in HEADROOM_POLICIES}}
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
    ("navigation beats uniform sampling at 0.25", "AFNet RT=0.25", "AFNet uniform 0.25"),
    ("navigation beats random sampling at 0.25", "AFNet RT=0.25", "AFNet random 0.25"),
    ("navigation + saliency beats uniform sampling at 0.5", "AFNet RT=0.5 + saliency", "AFNet uniform 0.5"),
    ("navigation + saliency beats random sampling at 0.5", "AFNet RT=0.5 + saliency", "AFNet random 0.5"),
    ("navigation + saliency beats uniform sampling at 0.25", "AFNet RT=0.25 + saliency", "AFNet uniform 0.25"),
    ("navigation + saliency beats random sampling at 0.25", "AFNet RT=0.25 + saliency", "AFNet random 0.25"),
    ("less is more: AFNet RT=0.5 + saliency beats AFNet RT=1.0", "AFNet RT=0.5 + saliency", "AFNet RT=1.0"),
    ("less is more: AFNet RT=0.5 + saliency beats TSN", "AFNet RT=0.5 + saliency", "TSN"),
)
SPATIAL_CLAIMS = (
    ("spatial navigation beats random regions (RS=0.25)", "AFNet spatial navigation RS=0.25",
     "AFNet random regions 0.25"),
    ("spatial navigation beats a centre crop (RS=0.25)", "AFNet spatial navigation RS=0.25",
     "AFNet centre crop 0.25"),
    ("spatial navigation at exactly RS=0.25 (static-k regions) beats random regions",
     "AFNet spatial navigation RS=0.25 static-k", "AFNet random regions 0.25"),
    ("spatial navigation at exactly RS=0.25 (static-k regions) beats a centre crop",
     "AFNet spatial navigation RS=0.25 static-k", "AFNet centre crop 0.25"),
    ("spatial navigation + region saliency beats random regions (RS=0.25)",
     "AFNet spatial navigation RS=0.25 + region saliency", "AFNet random regions 0.25"),
    ("spatial navigation + region saliency beats a centre crop (RS=0.25)",
     "AFNet spatial navigation RS=0.25 + region saliency", "AFNet centre crop 0.25"),
    ("less is more in space: spatial navigation RS=0.25 beats computing every region",
     "AFNet spatial navigation RS=0.25", "AFNet every region"),
    ("less is more in space: spatial navigation RS=0.25 + region saliency beats computing every region",
     "AFNet spatial navigation RS=0.25 + region saliency", "AFNet every region"),
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


# The bars on navigation precision (mean over the points) of the rows that run at RT:
# RT 0.25 at least 0.60; RT 0.5 at least 1.6x the evidence rate (a perfect navigation scores
# about 0.62 there: only 2-3 of the 4 kept frames can carry evidence).
PRECISION_BARS = ((0.25, "absolute", 0.60), (0.5, "times the evidence rate", 1.6))
KEPT_TOLERANCE = 0.05     # a row counts only when its kept share is within this of its RT
WORTH_BAR = 0.15          # the evidence frames beat as many other frames by at least this


def precision_bars(summary: list[dict], evidence_rate: float | None) -> list[dict]:
    """Each learned-navigation row at RT 0.5 or 0.25 (calibrated, static-k) against its bar:
    ``met`` when its mean precision reaches the bar and its mean kept share is within
    :data:`KEPT_TOLERANCE` of RT."""
    out = []
    for row in summary:
        label = row["model"]
        if row["precision"][0] is None or "uncalibrated" in label or row["kept_ratio"][0] is None:
            continue
        for rt, kind, value in PRECISION_BARS:
            if label.split(" ")[1:2] != [f"RT={rt}"]:
                continue
            bar = value if kind == "absolute" or evidence_rate is None else value * evidence_rate
            on_budget = abs(row["kept_ratio"][0] - rt) <= KEPT_TOLERANCE
            out.append({"model": label, "rt": rt, "precision": row["precision"][0], "bar": round(bar, 3),
                        "kept_ratio": row["kept_ratio"][0], "on_budget": on_budget,
                        "met": on_budget and row["precision"][0] >= bar})
    return out


# The bar on region precision (mean over the spatial blocks) of the learned region rows:
# at least 0.60 where one region of four is computed (blind: 0.25), the region share within
# KEPT_TOLERANCE of RS.
REGION_PRECISION_BAR = 0.60


def region_precision_bars(summary: list[dict]) -> list[dict]:
    """Each learned spatial-navigation row (``... spatial navigation RS=<RS>``, and its
    static-k variant) against :data:`REGION_PRECISION_BAR`: ``met`` when its mean region
    precision reaches it and its mean region share is within :data:`KEPT_TOLERANCE` of RS."""
    out = []
    for row in summary:
        label = row["model"]
        if "spatial navigation RS=" not in label or row["region_precision"][0] is None:
            continue
        rs = float(label.split("RS=")[1].split(" ")[0])   # "... RS=0.25", "... RS=0.25 + region saliency"
        on_budget = abs(row["region_ratio"][0] - rs) <= KEPT_TOLERANCE
        out.append({"model": label, "rs": rs, "precision": row["region_precision"][0], "bar": REGION_PRECISION_BAR,
                    "region_ratio": row["region_ratio"][0], "on_budget": on_budget,
                    "met": on_budget and row["region_precision"][0] >= REGION_PRECISION_BAR})
    return out


def evidence_worth(headroom_summary: list[dict]) -> list[dict]:
    """Per model: the evidence frames' top-1 minus that of as many other frames, against
    :data:`WORTH_BAR`."""
    out = []
    for row in headroom_summary:
        gap = row["evidence frames"][0] - row["as many other frames"][0]
        out.append({"model": row["model"], "gap": gap, "met": gap >= WORTH_BAR})
    return out
