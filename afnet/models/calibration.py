"""Threshold calibration: the learned navigation's eval rule made to meet a compute budget.

In training, the navigation's frames are Gumbel samples: the ratio term of Eq. 16 pulls the
*expected* kept fraction, the mean of sigmoid(keep - skip), to RT. In eval, the rule is
deterministic, keep where keep > skip, and the fraction it keeps is the share of positive
margins, which can be far from RT when the margins sit near zero (a short schedule, a
navigation unsure of its choice): in the demo it kept 0.06-0.13 at RT 0.25 (three seeds) and,
with an earlier schedule (lambda 4, 6 epochs), 0.75-0.85 at RT 0.5.

:func:`calibrate_threshold` shifts each navigation point's threshold so that, on a set of
videos, the eval rule keeps RT of the frames on average. Which frames, and how many per
video, still follow the margins (unlike the static-k policy, which keeps exactly
round(RT * T) per video). The shift is added to the keep biases of the point's navigation
(``Navigation.conv2``), so a calibrated model is a plain model and its checkpoint a plain
checkpoint; ranking by margin (static-k) is unchanged by it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from afnet.models.layers import Navigation


def _margins(model, navigation: Navigation, videos: Callable[[], Iterable[torch.Tensor]]) -> torch.Tensor:
    """The keep-minus-skip margins of every frame of ``videos`` at ``navigation``, in eval."""
    seen = []
    hook = navigation.register_forward_hook(lambda _m, _i, out: seen.append((out[..., 1] - out[..., 0]).flatten()))
    try:
        with torch.no_grad():
            for video in videos():
                model(video)
    finally:
        hook.remove()
    return torch.cat(seen).float()


def threshold_shift(margins: torch.Tensor, ratio: float) -> float:
    """The shift ``s`` that makes ``margins + s > 0`` hold for as close to ``round(ratio * N)``
    of the N margins as ties allow (equal margins are kept or skipped together; at least one
    kept, at least one skipped): minus the midpoint between the smallest margin kept and the
    largest skipped."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"calibration ratio must be in (0, 1), got {ratio}")
    values, counts = torch.unique(margins.flatten().float(), return_counts=True)
    values, kept = values.flip(0), counts.flip(0).cumsum(0)      # descending; frames at or above each
    if len(values) == 1:
        raise ValueError("every margin is equal: no threshold keeps a share of the frames")
    want = min(max(int(round(ratio * int(kept[-1]))), 1), int(kept[-1]) - 1)
    i = int((kept[:-1] - want).abs().argmin())                  # keep values[: i + 1]
    return -float(values[i] + values[i + 1]) / 2


@dataclass
class Calibration:
    """What :func:`calibrate_threshold` did: per navigation module (network order) the shift
    added to its keep biases and the share of the videos' frames it keeps after the shift."""

    shifts: list[float]
    kept: list[float]

    @property
    def mean_kept(self) -> float:
        return sum(self.kept) / len(self.kept)


def calibrate_threshold(model, videos: Callable[[], Iterable[torch.Tensor]], ratio: float) -> Calibration:
    """Shift the eval threshold of each navigation of ``model`` (in network order, each with
    the ones before it already shifted, since their choices change what it sees) so that it
    keeps ``ratio`` of the frames of ``videos`` on average. ``videos``: a callable returning
    an iterable of float ``(B, T, 3, H, W)`` batches (called once per navigation). Returns the
    :class:`Calibration`: the shifts and the shares kept, one per navigation module. The model
    must select frames by its learned threshold (``selection="navigation"`` without a ``ratio``)."""
    if model.selection != "navigation" or model.ratio is not None:
        raise ValueError(f"calibration needs the learned threshold (selection='navigation', no ratio); "
                         f"the model has selection={model.selection!r}, ratio={model.ratio!r}")
    navigations = [m for m in model.modules() if isinstance(m, Navigation)]
    if not navigations:
        raise ValueError(f"{type(model).__name__} has no navigation to calibrate")
    was_training = model.training
    model.eval()
    result = Calibration([], [])
    try:
        for navigation in navigations:
            margins = _margins(model, navigation, videos)
            shift = threshold_shift(margins, ratio)
            with torch.no_grad():
                navigation.conv2.bias[1::2] += shift
            # the later navigations see this one's choices, never the reverse: its share is final
            result.shifts.append(shift)
            result.kept.append(float((margins + shift > 0).float().mean()))
    finally:
        model.train(was_training)
    return result
