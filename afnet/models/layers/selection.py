"""Selection: the policy of one forward pass (:class:`SelectionPolicy`), and the masks it
decides at each navigation point (:func:`decide`, :func:`decide_regions`).

A mask is returned to its caller, never recorded on a shared object: the AF stage returns the
masks of its focal blocks, and the model gathers them into its ``VideoOutput``::

    navigation logits ─► decide ─► keep (B, T) ─► AFStage.forward ─► (x, keeps, regions)
        ─► VideoModel.forward_features ─► VideoModel.forward ─► VideoOutput(logits, masks, regions)
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F

from afnet.models.layers.sizes import KeptSizes, block_sizes
from afnet.models.options import FIXED_REGION_SELECTIONS, FIXED_SELECTIONS, REGION_SELECTIONS

if TYPE_CHECKING:
    from afnet.models.layers.navigation import Navigation, SpatialNavigation


class FixedCounts(NamedTuple):
    """The counts a policy fixes before any mask is made (``None``: only the masks tell).

    ``frames``: frames each video keeps at every navigation point. ``regions``: regions each
    kept frame computes, of a ``grid x grid`` grid (a frame without spatial navigation is
    one region)."""

    frames: int | None
    regions: int | None

    @property
    def complete(self) -> bool:
        """Every count a focal block needs is fixed: sparse execution reads nothing back."""
        return self.frames is not None and self.regions is not None


@dataclass(frozen=True)
class SelectionPolicy:
    """How one forward pass selects frames and regions, fixed for the whole pass.

    ``selection`` / ``ratio``: the frame policy (see :meth:`VideoModel.configure`);
    ``region_selection`` / ``region_ratio``: the region policy of spatial navigation;
    ``temperature``: the Gumbel-Softmax temperature (training); ``seed``: the streams of the
    drawn policies in evaluation; ``given``: (B, T) 0/1 frames from outside, used at every
    navigation point in place of the selection."""

    selection: str = "navigation"
    ratio: float | None = None
    region_selection: str = "all"
    region_ratio: float | None = None
    temperature: float = 1.0
    seed: int = 0
    given: torch.Tensor | None = field(default=None, compare=False)

    def static_k(self, training: bool) -> bool:
        """Learned navigation with a ``ratio``, in eval: the top ``round(ratio * T)`` frames."""
        return self.selection == "navigation" and self.ratio is not None and not training

    def static_k_regions(self, training: bool) -> bool:
        """Learned region navigation with a ``region_ratio``, in eval: static-k regions."""
        return self.region_selection == "navigation" and self.region_ratio is not None and not training

    def fixed_counts(self, num_frames: int, grid: int = 1, training: bool = False) -> FixedCounts:
        """The counts this policy fixes before any mask is made, for ``num_frames`` frames and
        a ``grid x grid`` region grid (:class:`FixedCounts`).

        Frames: static-k and the fixed policies keep :func:`frames_kept`, ``all`` keeps T; the
        learned threshold, soft weights and a mask given from outside fix nothing. Regions:
        ``all`` computes every region, the fixed region policies and static-k regions
        :func:`regions_kept`; the learned threshold fixes nothing."""
        frames = None
        if self.given is None and self.selection != "soft":
            if self.selection == "all":
                frames = num_frames
            elif self.selection in FIXED_SELECTIONS or self.static_k(training):
                frames = frames_kept(self.ratio, num_frames)
        regions = None
        if self.region_selection == "all":
            regions = grid * grid
        elif self.region_selection in FIXED_REGION_SELECTIONS or self.static_k_regions(training):
            regions = regions_kept(self.region_ratio, grid)
        return FixedCounts(frames, regions)

    def sizes(self, keeps: list[torch.Tensor], regions: list[torch.Tensor | None],
              training: bool) -> list[KeptSizes]:
        """:func:`block_sizes` of focal blocks with these masks (``regions``: each block's
        (B*T, g, g) region mask, ``None`` where it computes every region): the counts this
        policy fixes are computed, the others read."""
        grids = {r.shape[-1] for r in regions if r is not None}
        one_grid = len(grids) == 1
        counts = self.fixed_counts(keeps[0].shape[1], grids.pop() if one_grid else 1, training)
        return block_sizes(keeps, regions, counts.frames, counts.regions if one_grid else None)


def gumbel_keep(logits: torch.Tensor, temperature: float, training: bool) -> torch.Tensor:
    """Keep-mask ``(B, T)`` from logits ``(B, T, 2)`` ordered (skip, keep).

    Train: hard Gumbel-Softmax with straight-through gradients (paper Eq. 4-6).
    Eval: deterministic, keep where keep-logit > skip-logit, no noise.

    Not ``F.gumbel_softmax(logits, temperature, hard=True)``: it computes the same hard
    straight-through sample, but draws its noise as ``-log(Exponential(1))`` where this (and
    the authors' code) draws ``-log(-log(U))`` from ``torch.rand_like``. Switching would
    change every seeded run (the demo's numbers, and a resumed run against checkpoints
    written before), for no change in the method; eval stays noise-free either way.
    """
    if not training:
        return (logits[..., 1] > logits[..., 0]).to(logits.dtype)
    u = torch.rand_like(logits)
    gumbel = -torch.log(-torch.log(u + 1e-10) + 1e-10)
    soft = F.softmax((logits + gumbel) / temperature, dim=-1)
    hard = F.one_hot(soft.argmax(dim=-1), 2).to(soft.dtype)
    return (hard - soft.detach() + soft)[..., 1]


def frames_kept(ratio: float, num_frames: int) -> int:
    """``round(ratio * T)`` frames, at least one: what a policy at ``ratio`` keeps per video."""
    return max(1, min(num_frames, int(round(ratio * num_frames))))


def static_k_keep(logits: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep-mask ``(B, T)`` of exactly ``frames_kept(ratio, T)`` frames per video: those with
    the largest keep-minus-skip margin (the static-k policy: a fixed compute budget, the
    navigation choosing which frames fill it). Equal margins go to the earlier frame: each
    frame's rank is counted from pairwise comparisons (T x T per video), so eager and an
    exported graph choose the same frames (``topk`` leaves ties to the kernel, and ONNX
    Runtime's breaks them otherwise than torch's)."""
    margin = logits[..., 1] - logits[..., 0]
    t = margin.shape[1]
    mine, other = margin.unsqueeze(2), margin.unsqueeze(1)            # [b, i, j]: frame i against frame j
    earlier = torch.ones(t, t, dtype=torch.bool, device=margin.device).tril(-1)   # j < i
    ahead = (other > mine) | ((other == mine) & earlier)              # frame j ranks before frame i
    return (ahead.sum(dim=2) < frames_kept(ratio, t)).to(margin.dtype)


def fixed_policy_mask(policy: str, batch: int, num_frames: int, ratio: float,
                      generator: torch.Generator | None, device, dtype, stream: int | None = None) -> torch.Tensor:
    """The fixed sampling policies of Table 5, ``round(ratio * T)`` frames per video.

    - ``uniform``: frames at equal steps, ``floor((i + 0.5) * T / k)``;
    - ``random``: k frames drawn uniformly without replacement, per video;
    - ``normal``: k frames drawn without replacement with weights from a standard normal
      density over frame positions mapped onto [-2, 2] (the clip centre is favoured).

    ``uniform`` is built on ``device`` (no host tensor, no copy). The drawn policies draw on
    the host (the same frames on every device) from ``generator``; with ``stream`` (the
    generator's seed: evaluation) the mask is a function of the shape and the stream, drawn
    once and kept on the device (:func:`drawn_mask`), so a forward pass copies nothing.
    """
    k = frames_kept(ratio, num_frames)
    if policy == "uniform":
        idx = ((2 * torch.arange(k, device=device) + 1) * num_frames) // (2 * k)   # floor((i + 0.5) T / k), exact
        return torch.zeros(batch, num_frames, device=device, dtype=dtype).scatter_(1, idx.expand(batch, k), 1)
    if stream is not None:
        return drawn_mask(policy, batch, num_frames, k, stream, torch.device(device), dtype).clone()
    return _to_device(_draw(policy, batch, num_frames, k, generator), device, dtype)


def _draw(policy: str, rows: int, n: int, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """``rows`` host masks of ``n`` entries with ``k`` ones drawn without replacement: ``random``
    uniformly, ``normal`` with a standard normal density over positions mapped onto [-2, 2]."""
    if policy == "random":
        weights = torch.ones(rows, n)
    elif policy == "normal":
        z = torch.linspace(-2.0, 2.0, n)
        weights = torch.exp(-0.5 * z * z).expand(rows, n).contiguous()
    else:
        raise ValueError(f"unknown drawn policy {policy!r}; expected random or normal")
    idx = torch.multinomial(weights, k, replacement=False, generator=generator)
    return torch.zeros(rows, n).scatter_(1, idx, 1.0)


def _to_device(mask: torch.Tensor, device, dtype) -> torch.Tensor:
    """A host mask on ``device``: from pinned memory without a host sync on a GPU."""
    device = torch.device(device)
    if device.type == "cuda":
        mask = mask.pin_memory()
    return mask.to(device=device, dtype=dtype, non_blocking=True)


@functools.lru_cache(maxsize=256)
def drawn_mask(policy: str, rows: int, n: int, k: int, stream: int, device: torch.device,
               dtype: torch.dtype) -> torch.Tensor:
    """The mask an evaluation stream draws (:func:`_draw` from a generator seeded ``stream``),
    on ``device``: drawn and copied once per shape, stream and device, then reused (callers
    get a clone). A drawn policy in evaluation then costs no host work and no copy per call."""
    return _to_device(_draw(policy, rows, n, k, torch.Generator().manual_seed(stream)), device, dtype)


def _stream(seed: int, stream: int) -> int:
    """The generator seed of one drawn decision in evaluation (one stream per navigation point)."""
    return seed * 1000 + stream


def decide(navigation: Navigation, x_ample: torch.Tensor, policy: SelectionPolicy, training: bool,
           point: int = 0) -> torch.Tensor:
    """The keep-mask ``(B, T)`` at navigation point ``point`` (its place in the network, in
    the order of ``VideoOutput.masks``: it seeds a drawn policy's stream in evaluation)."""
    t = navigation.num_frames
    batch = x_ample.shape[0] // t
    if policy.given is not None:
        return policy.given.to(device=x_ample.device, dtype=torch.float32)
    if policy.static_k(training):
        return static_k_keep(navigation(x_ample).float(), policy.ratio)
    if policy.selection == "navigation":
        return gumbel_keep(navigation(x_ample).float(), policy.temperature, training)
    if policy.selection == "soft":
        return F.softmax(navigation(x_ample).float(), dim=-1)[..., 1]
    if policy.selection == "all":
        return torch.ones(batch, t, device=x_ample.device)
    stream = None if training else _stream(policy.seed, point)  # reproducible evaluation
    return fixed_policy_mask(policy.selection, batch, t, policy.ratio, None, x_ample.device, torch.float32, stream)


def regions_kept(ratio: float, grid: int) -> int:
    """``round(ratio * grid^2)`` regions, at least one: what a region policy at ``ratio``
    (fixed, or static-k) computes per kept frame; the frames' rule (:func:`frames_kept`)."""
    return frames_kept(ratio, grid * grid)


def fixed_region_mask(policy: str, frames: int, grid: int, ratio: float, generator: torch.Generator | None,
                      device, dtype, stream: int | None = None) -> torch.Tensor:
    """The fixed spatial policies of Table 5, ``round(ratio * grid^2)`` regions per frame:

    - ``random``: regions drawn uniformly without replacement, per frame (on the host, as the
      frames' drawn policies: :func:`fixed_policy_mask`, ``generator`` / ``stream``);
    - ``center``: the centre crop, the same for every frame: the regions nearest the grid
      centre (Chebyshev distance, so the crop grows as a square; ties by Euclidean distance,
      then raster order). Built on ``device``: no host tensor, no copy.
    """
    n = grid * grid
    k = regions_kept(ratio, grid)
    if policy == "random":
        if stream is not None:
            mask = drawn_mask(policy, frames, n, k, stream, torch.device(device), dtype).clone()
        else:
            mask = _to_device(_draw(policy, frames, n, k, generator), device, dtype)
    elif policy == "center":
        i = torch.arange(n, device=device)
        dy, dx = ((i // grid) - (grid - 1) / 2).abs(), ((i % grid) - (grid - 1) / 2).abs()
        cheb, dist = torch.maximum(dy, dx), dy * dy + dx * dx     # exact: halves and quarters
        ci, cj, di, dj = cheb.unsqueeze(1), cheb.unsqueeze(0), dist.unsqueeze(1), dist.unsqueeze(0)   # [i, j]
        before = (cj < ci) | ((cj == ci) & ((dj < di) | ((dj == di) & (i.unsqueeze(0) < i.unsqueeze(1)))))
        mask = (before.sum(dim=1) < k).to(dtype).expand(frames, n)   # rank by (Chebyshev, Euclidean, index)
    else:
        raise ValueError(f"unknown region policy {policy!r}; expected one of {', '.join(REGION_SELECTIONS)}")
    return mask.reshape(frames, grid, grid)


def decide_regions(spatial: SpatialNavigation, x_ample: torch.Tensor, keep: torch.Tensor, policy: SelectionPolicy,
                   training: bool, point: int = 0) -> torch.Tensor:
    """The region mask ``(B, T, grid, grid)`` of the focal block at navigation point
    ``point``, for the frames of ``keep`` (B, T); ones for ``region_selection="all"`` (the
    block then runs as without spatial navigation). Learned navigation with a
    ``region_ratio``, in eval: static-k regions, the :func:`regions_kept` regions of each
    frame with the largest keep-minus-skip margin (:func:`static_k_keep` over the grid;
    training keeps the Gumbel sample)."""
    batch, t = keep.shape
    grid = spatial.grid
    if policy.static_k_regions(training):
        logits = spatial(x_ample).float()
        regions = static_k_keep(logits.flatten(1, 2), policy.region_ratio).view(-1, grid, grid)
    elif policy.region_selection == "navigation":
        regions = gumbel_keep(spatial(x_ample).float(), policy.temperature, training)
    elif policy.region_selection == "all":
        return torch.ones(batch, t, grid, grid, device=x_ample.device)
    else:  # reproducible evaluation: a stream per block, apart from the frames'
        stream = None if training else _stream(policy.seed, 500 + point)
        regions = fixed_region_mask(policy.region_selection, batch * t, grid, policy.region_ratio, None,
                                    x_ample.device, torch.float32, stream)
    return regions.view(batch, t, grid, grid)
