"""Side-by-side latency measurement: configurations timed round-robin in one run.

These machines are noisy, so configurations are interleaved (one call of each per round)
and compared by their medians; ratios are what a table should report.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_round_robin(calls: dict[str, Callable[[], object]], *, rounds: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median wall-clock seconds of each zero-argument callable, interleaved per round
    (on a GPU, each call is timed to the end of its kernels)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    sync = torch.cuda.synchronize if torch.cuda.is_available() and torch.cuda.is_initialized() else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in calls.values():
                fn()
        for _ in range(rounds):
            for name, fn in calls.items():
                sync()
                start = time.perf_counter()
                fn()
                sync()
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
