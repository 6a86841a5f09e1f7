"""The model zoo at work: parameters, GFLOPs per video and CPU latency, sparse vs masked.

Every number is measured here, in one run: GFLOPs from the executed operations, latency as
the median of interleaved calls on the inference-prepared model (channels-last, folded BN).
AF models run the fixed ``uniform`` policy at the given ratio, so every navigation point
keeps the same share of frames whatever the (untrained) weights would choose.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch

from afnet.benchmark import markdown_table, time_round_robin
from afnet.flops import count_flops, count_params
from afnet.models import create_model
from afnet.runtime import prepare_for_inference

# (model, frames, shift) at the paper's settings: AF-*-TSM with 12 frames, baselines with 8.
DEFAULT_ZOO = (
    ("af_resnet50", 12, True), ("af_resnet101", 12, True), ("af_mobilenetv3", 12, True),
    ("tsn_resnet50", 8, False), ("tsm_resnet50", 8, True), ("tsn_resnet101", 8, False),
    ("tsm_resnet101", 8, True), ("tsn_mobilenetv3", 8, False), ("tsm_mobilenetv3", 8, True),
)


@dataclass
class ZooRow:
    model: str
    frames: int
    shift: bool
    params_m: float
    gflops_sparse: float
    gflops_masked: float
    ms_sparse: float
    ms_masked: float

    @property
    def speedup(self) -> float:
        return self.ms_masked / self.ms_sparse


def measure_zoo(entries=DEFAULT_ZOO, *, size: int = 224, classes: int = 174, ratio: float = 0.4,
                rounds: int = 3, progress=None, tune_malloc: bool = False) -> list[ZooRow]:
    """Params, GFLOPs and latency of each zoo entry; ``tune_malloc``: see
    :func:`afnet.runtime.prepare_for_inference` (process-wide; off by default)."""
    rows = []
    for name, frames, shift in entries:
        if progress:
            progress(f"measuring {name} ({frames} frames, {size}x{size})")
        model = create_model(name, num_classes=classes, num_frames=frames, shift=shift)
        if model.has_navigation:
            model.configure(selection="uniform", ratio=ratio)
        params = count_params(model) / 1e6
        sparse = prepare_for_inference(model.configure(execution="sparse") if model.has_navigation else model,
                                       tune_malloc=tune_malloc)
        video = torch.randn(1, frames, 3, size, size, generator=torch.Generator().manual_seed(0))
        calls = {"sparse": lambda m=sparse: m(video)}
        masked = sparse
        if model.has_navigation:
            masked = copy.deepcopy(sparse).configure(execution="masked")
            calls["masked"] = lambda m=masked: m(video)
        gf_sparse = count_flops(sparse, video)
        gf_masked = count_flops(masked, video) if masked is not sparse else gf_sparse
        t = time_round_robin(calls, rounds=rounds)
        rows.append(ZooRow(name, frames, shift, round(params, 2), round(gf_sparse, 2), round(gf_masked, 2),
                           round(t["sparse"] * 1e3, 1), round(t.get("masked", t["sparse"]) * 1e3, 1)))
    return rows


def zoo_table(rows: list[ZooRow], ratio: float) -> str:
    header = ["model", "frames", "TSM", "params (M)", f"GFLOPs sparse (r={ratio})", "GFLOPs masked",
              "ms/video sparse", "ms/video masked", "masked/sparse"]
    body = [[r.model, r.frames, "yes" if r.shift else "no", r.params_m, r.gflops_sparse, r.gflops_masked,
             r.ms_sparse, r.ms_masked, round(r.speedup, 2)] for r in rows]
    return markdown_table(header, body)


def rows_as_dicts(rows: list[ZooRow]) -> list[dict]:
    return [asdict(r) | {"speedup": round(r.speedup, 3)} for r in rows]
