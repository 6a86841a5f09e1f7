"""How much of the batch a focal block computes in sparse execution, known on the host before
the block runs (:class:`KeptSizes`): counted from the policy, or read from the masks in one copy."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KeptSizes:
    """How much of the batch one focal block computes in sparse execution, known on the host
    before the block runs: its gathers, scatters and region layouts are sized by it, so they
    run without reading a mask back (no ``nonzero``).

    ``frames``: the batch's kept frames. ``per_video``: set when every video keeps that many,
    by the policy (nothing was read). ``regions``: with spatial navigation, the selected
    regions of the kept frames."""

    frames: int
    per_video: int | None = None
    regions: int | None = None


def read_counts(counts: list[torch.Tensor]) -> list[int]:
    """The values of the scalar tensors ``counts`` in one device-to-host copy: on a GPU, the
    one wait on the device for all of them."""
    if not counts:
        return []
    return [int(v) for v in torch.stack([c.float() for c in counts]).round().long().tolist()]


def block_sizes(keeps: list[torch.Tensor], regions: list[torch.Tensor | None], per_video: int | None = None,
                regions_per_frame: int | None = None) -> list[KeptSizes]:
    """The :class:`KeptSizes` of focal blocks whose masks are made: ``keeps`` (B, T) and
    ``regions`` (B*T, g, g) or ``None``. A count the policy fixes (``per_video`` frames per
    video, ``regions_per_frame`` regions per kept frame; see :meth:`SelectionPolicy.fixed_counts`) is
    computed; the others are read from the masks, all of them in one :func:`read_counts`. An
    AF stage makes every mask of its blocks from the ample branch before its focal branch
    runs, so the learned threshold costs one read per stage, not one per block."""
    pending = []
    for keep, reg in zip(keeps, regions):
        if per_video is None:
            pending.append(keep.sum())
        if reg is not None and regions_per_frame is None:
            pending.append((reg.reshape(keep.numel(), -1) * keep.reshape(-1, 1)).sum())
    values = iter(read_counts(pending))
    sizes = []
    for keep, reg in zip(keeps, regions):
        frames = keep.shape[0] * per_video if per_video is not None else next(values)
        selected = None
        if reg is not None:
            selected = frames * regions_per_frame if regions_per_frame is not None else next(values)
        sizes.append(KeptSizes(frames, per_video, selected))
    return sizes
