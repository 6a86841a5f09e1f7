"""The building blocks every backbone shares: one implementation of each idea.

- :class:`TemporalShift`: TSM, 1/8 of the channels shifted each way along time.
- :func:`decide`: turns navigation logits (or a fixed policy) into a keep-mask.
- :class:`Navigation`: the navigation module of paper Eq. 2-3.
- :class:`SpatialNavigation`, :func:`decide_regions`: its spatial extension of paper Eq. 15
  (a keep-mask over a grid of regions); :class:`RegionLayout`, :func:`gather_regions`,
  :func:`add_regions_`: cutting regions with their halo and adding results back.
- :class:`FusionGate`: theta of paper Eq. 8.
- :class:`ResidualBlock`: the masked / sparse execution of a focal block, shared by the
  ResNet bottleneck and the MobileNetV3 inverted residual.

Frames are stacked along dim 0 as ``(B*T, C, H, W)``, video-major, as in TSN/TSM.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from afnet.models.options import (EXECUTIONS, FIXED_REGION_SELECTIONS, FIXED_SELECTIONS,  # noqa: F401
                                  REGION_SELECTIONS, SELECTIONS, TEMPORAL_NAVIGATION)


# ----------------------------------------------------------------------------- temporal shift
class TemporalShift(nn.Module):
    """TSM shift (Lin et al. 2019) of the first ``2 * C // fold_div`` channels.

    Channels ``[0, fold)`` take the next frame's values, ``[fold, 2*fold)`` the previous
    frame's; the ends of the clip are zero-padded, the other channels are unchanged.

    Written as slices and concatenations, no in-place writes: an exported graph (ONNX) gets
    Slice and Concat, not a scatter per written slice, and a traced input is never taken for a
    constant. Channels-last inputs are shifted in their NHWC view (the output keeps the layout).
    """

    def __init__(self, num_frames: int, fold_div: int = 8):
        super().__init__()
        self.num_frames = num_frames
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        t = self.num_frames
        fold = c // self.fold_div
        if fold == 0:
            return x
        y, cd = _channels_view(x)
        y5 = y.reshape(nt // t, t, *y.shape[1:])   # (B, T, ...): the channels at dim cd + 1
        zero = y5.new_zeros(y5.narrow(1, 0, 1).narrow(cd + 1, 0, fold).shape)
        later = torch.cat([y5.narrow(1, 1, t - 1).narrow(cd + 1, 0, fold), zero], dim=1)
        earlier = torch.cat([zero, y5.narrow(1, 0, t - 1).narrow(cd + 1, fold, fold)], dim=1)
        out = torch.cat([later, earlier, y5.narrow(cd + 1, 2 * fold, c - 2 * fold)], dim=cd + 1)
        return _from_channels_view(out.view(y.shape), x)

    def gather(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``forward(x)[index]``, computing the shift only for the gathered frames."""
        t = self.num_frames
        c = x.shape[1]
        fold = c // self.fold_div
        if fold == 0:
            return gather_frames(x, index)
        y, cd = _channels_view(x)
        pos = index % t
        parts = []
        for start, size, step, valid in ((0, fold, 1, pos < t - 1), (fold, fold, -1, pos > 0),
                                         (2 * fold, c - 2 * fold, 0, None)):
            rows = index if valid is None else torch.where(valid, index + step, index)
            part = y.narrow(cd, start, size).index_select(0, rows)
            if valid is not None:  # beyond the clip's ends: zeros
                part = part * valid.view(-1, 1, 1, 1).to(part.dtype)
            parts.append(part)
        return _from_channels_view(torch.cat(parts, dim=cd), x)

    def extra_repr(self) -> str:
        return f"num_frames={self.num_frames}, fold_div={self.fold_div}"


def _channels_view(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A view of the (N, C, H, W) map ``x`` that is contiguous in memory, and its channel dim:
    NHWC (dim 3) for a channels-last map, else ``x`` itself (dim 1). Slicing and concatenating
    along it keeps the map's layout."""
    return (x.permute(0, 2, 3, 1), 3) if is_channels_last(x) else (x, 1)


def _from_channels_view(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The (N, C, H, W) map of a :func:`_channels_view`-shaped ``y`` (``like``: the map it came from)."""
    return y.permute(0, 3, 1, 2) if is_channels_last(like) else y


def gather_shifted(shift: nn.Module, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``shift(x)[index]`` for a :class:`TemporalShift` or an identity."""
    return shift.gather(x, index) if isinstance(shift, TemporalShift) else gather_frames(x, index)


# ----------------------------------------------------------------------------- frame gather / scatter
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
    video, ``regions_per_frame`` regions per kept frame; see :class:`SelectionContext`) is
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


def kept_index(keep: torch.Tensor, frames: int, per_video: int | None = None) -> torch.Tensor:
    """The ``frames`` frames ``keep`` (B, T) computes, as ascending indices into the ``B*T``
    stacked frames (:class:`KeptSizes` gives the counts).

    ``per_video``: every video keeps that many (the policy's count). The index is then each
    row's top ``per_video`` entries, ranked so that kept frames come first and in order:
    ``topk`` has static shapes, which an exported graph needs. Otherwise ``nonzero_static``
    of the known size. Neither reads the mask back: on a GPU, no host sync."""
    if per_video is None:
        return torch.nonzero_static(keep.reshape(-1), size=frames).flatten()
    b, t = keep.shape
    rank = keep.float() - torch.arange(t, device=keep.device, dtype=torch.float32) / (2 * t)
    top = rank.topk(per_video, dim=1).indices  # descending rank: the kept frames, by position
    return (top + torch.arange(b, device=keep.device).unsqueeze(1) * t).flatten()


def skipped_index(keep: torch.Tensor, sizes: KeptSizes) -> torch.Tensor:
    """The frames ``keep`` (B, T) skips, ascending (the complement of :func:`kept_index`)."""
    skip = 1 - keep
    return kept_index(skip, keep.numel() - sizes.frames,
                      None if sizes.per_video is None else keep.shape[1] - sizes.per_video)


def is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def gather_frames(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` along dim 0, keeping the memory format.

    A channels-last frame is one contiguous block of its NHWC storage, so the gather is a
    row gather of the ``(N, H*W*C)`` view (``index_select`` on the NCHW-strided view is
    several times slower).
    """
    if is_channels_last(x):
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n, h * w * c).index_select(0, index)
        return rows.view(-1, h, w, c).permute(0, 3, 1, 2)
    return x.index_select(0, index)


def scatter_frames_(out: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``out[index] = values`` along dim 0, in place (row copies of the NHWC view if
    channels-last)."""
    if is_channels_last(out):
        n, c, h, w = out.shape
        rows = values.permute(0, 2, 3, 1).reshape(values.shape[0], h * w * c)
        out.permute(0, 2, 3, 1).view(n, h * w * c).index_copy_(0, index, rows)
    else:
        out.index_copy_(0, index, values)
    return out


# ----------------------------------------------------------------------------- selection
@dataclass
class SelectionContext:
    """What one forward pass needs to decide frames: carried through the stages."""

    selection: str = "navigation"
    ratio: float | None = None
    temperature: float = 1.0
    sparse: bool = False
    dense_above: float = 1.0
    seed: int = 0
    region_selection: str = "all"
    region_ratio: float | None = None
    masks: list = field(default_factory=list)
    regions: list = field(default_factory=list)
    keep: torch.Tensor | None = None   # the one temporal mask of ``temporal_navigation="first"``
    given: torch.Tensor | None = None  # (B, T) frames from outside, used at every navigation point

    def next_point(self) -> int:
        return len(self.masks)

    def frames_per_video(self, num_frames: int, training: bool) -> int | None:
        """How many frames each video keeps at every navigation point when the policy fixes
        it before any mask is computed (see :func:`decide`): static-k (``navigation`` with a
        ratio, in eval) and the fixed policies keep :func:`frames_kept`, ``all`` keeps T;
        ``None`` for the learned threshold, soft weights and a mask given from outside, whose
        counts only the mask tells."""
        if self.given is not None or self.selection == "soft":
            return None
        if self.selection == "all":
            return num_frames
        if self.selection in FIXED_SELECTIONS or (self.selection == "navigation" and self.ratio is not None
                                                  and not training):
            return frames_kept(self.ratio, num_frames)
        return None

    def static_regions(self, training: bool) -> bool:
        """Whether each kept frame computes a number of regions fixed by the policy: the fixed
        region policies, and static-k regions (learned navigation with a ``region_ratio``, in
        eval), :func:`regions_kept` of them."""
        return self.region_selection in FIXED_REGION_SELECTIONS or (
            self.region_selection == "navigation" and self.region_ratio is not None and not training)

    def counts_fixed(self, num_frames: int, training: bool) -> bool:
        """Whether the policy fixes every count a focal block needs (frames per video and
        regions per kept frame) before any mask is made."""
        regions_fixed = self.region_selection == "all" or self.static_regions(training)
        return regions_fixed and self.frames_per_video(num_frames, training) is not None

    def regions_per_frame(self, grid: int, training: bool) -> int | None:
        """How many regions of a ``grid x grid`` grid each kept frame computes when the policy
        fixes it (:meth:`static_regions`); ``None`` for the learned threshold."""
        return regions_kept(self.region_ratio, grid) if self.static_regions(training) else None

    def sizes(self, keeps: list[torch.Tensor], regions: list[torch.Tensor | None],
              training: bool) -> list[KeptSizes]:
        """:func:`block_sizes` of focal blocks with these masks under this context's policy."""
        grids = {r.shape[-1] for r in regions if r is not None}
        per_frame = self.regions_per_frame(grids.pop(), training) if len(grids) == 1 else None
        return block_sizes(keeps, regions, self.frames_per_video(keeps[0].shape[1], training), per_frame)


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
                      generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    """The fixed sampling policies of Table 5, ``round(ratio * T)`` frames per video.

    - ``uniform``: frames at equal steps, ``floor((i + 0.5) * T / k)``;
    - ``random``: k frames drawn uniformly without replacement, per video;
    - ``normal``: k frames drawn without replacement with weights from a standard normal
      density over frame positions mapped onto [-2, 2] (the clip centre is favoured).
    """
    k = frames_kept(ratio, num_frames)
    mask = torch.zeros(batch, num_frames, dtype=dtype)
    if policy == "uniform":
        idx = ((torch.arange(k, dtype=torch.float64) + 0.5) * num_frames / k).floor().long()
        mask[:, idx] = 1
    else:
        if policy == "random":
            weights = torch.ones(batch, num_frames)
        else:  # normal
            z = torch.linspace(-2.0, 2.0, num_frames)
            weights = torch.exp(-0.5 * z * z).expand(batch, num_frames).contiguous()
        idx = torch.multinomial(weights, k, replacement=False, generator=generator)
        mask.scatter_(1, idx, 1.0)
    return mask.to(device, non_blocking=True)  # no host sync on a GPU (the source is staged)


# ----------------------------------------------------------------------------- navigation
class Navigation(nn.Module):
    """Paper Eq. 2-3: pool -> 1x1 conv to 2 channels (W1) -> BN -> ReLU -> reshape the T
    frames of a video into 2T channels -> 1x1 conv with groups=T and bias (W2).

    Returns logits ``(B, T, 2)`` ordered (skip, keep). The W2 bias starts at ``init_bias``,
    (1, 10) for (skip, keep) as released, so every frame starts selected. A smaller gap
    (e.g. (0, 3)) leaves the straight-through gradient unsaturated, which short training
    schedules need to move the kept ratio at all.
    """

    def __init__(self, in_channels: int, num_frames: int, init_bias: tuple[float, float] = (1.0, 10.0)):
        super().__init__()
        self.num_frames = num_frames
        self.init_bias = (float(init_bias[0]), float(init_bias[1]))
        self.conv1 = nn.Conv2d(in_channels, 2, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2 * num_frames, 2 * num_frames, kernel_size=1, groups=num_frames, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.conv2.weight, 0.0, 0.01)
        with torch.no_grad():
            self.conv2.bias[0::2] = self.init_bias[0]
            self.conv2.bias[1::2] = self.init_bias[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.adaptive_avg_pool2d(x, 1)
        g = F.relu(self.bn1(self.conv1(g)))
        g = self.conv2(g.reshape(-1, 2 * self.num_frames, 1, 1))
        return g.view(-1, self.num_frames, 2)


def decide(navigation: Navigation, x_ample: torch.Tensor, ctx: SelectionContext, training: bool,
           record: bool = True) -> torch.Tensor:
    """The keep-mask ``(B, T)`` at one navigation point, recorded in ``ctx.masks`` unless
    ``record`` is false (the shared mask of ``temporal_navigation="first"`` is recorded once
    per focal block that uses it)."""
    t = navigation.num_frames
    batch = x_ample.shape[0] // t
    if ctx.given is not None:
        mask = ctx.given.to(device=x_ample.device, dtype=torch.float32)
    elif ctx.selection == "navigation" and ctx.ratio is not None and not training:
        mask = static_k_keep(navigation(x_ample).float(), ctx.ratio)
    elif ctx.selection == "navigation":
        mask = gumbel_keep(navigation(x_ample).float(), ctx.temperature, training)
    elif ctx.selection == "soft":
        mask = F.softmax(navigation(x_ample).float(), dim=-1)[..., 1]
    elif ctx.selection == "all":
        mask = torch.ones(batch, t, device=x_ample.device)
    else:
        generator = None
        if not training:  # reproducible evaluation: one stream per navigation point
            generator = torch.Generator().manual_seed(ctx.seed * 1000 + ctx.next_point())
        mask = fixed_policy_mask(ctx.selection, batch, t, ctx.ratio, generator, x_ample.device, torch.float32)
    if record:
        ctx.masks.append(mask)
    return mask


# ----------------------------------------------------------------------------- spatial navigation
class SpatialNavigation(nn.Module):
    """Paper Eq. 15: ``q = W4 * Pool(ReLU(BN(W3 * x)))`` on the ample feature of a block.

    W3 is a 3x3 conv to ``hidden`` channels, Pool an average pool to the ``grid x grid``
    regions, W4 a 1x1 conv with bias to two logits per region, ordered (skip, keep). As for
    the temporal navigation, the W4 bias starts at ``init_bias`` so every region starts
    selected. Returns logits ``(N, grid, grid, 2)``, one grid per frame.

    Cost: the paper gives no width or stride for W3. With ``hidden`` = 16 and W3 at stride 2
    wherever its input is at least 4 regions' worth per side (the first block of a stage sees
    the stage's full-resolution input), the ten modules of AF-ResNet50 at 224 cost 0.06
    GFLOPs per frame, 2% of the model; with a quarter of their input's channels and stride 1
    they would cost 0.46, more than a kept-region ratio of 0.6 saves.
    """

    def __init__(self, in_channels: int, grid: int, hidden: int = 16,
                 init_bias: tuple[float, float] = (1.0, 10.0)):
        super().__init__()
        self.grid = grid
        self.init_bias = (float(init_bias[0]), float(init_bias[1]))
        self.conv1 = nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, 2, kernel_size=1, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.conv2.weight, 0.0, 0.01)
        with torch.no_grad():
            self.conv2.bias.copy_(torch.tensor(self.init_bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = 2 if min(x.shape[-2:]) >= 4 * self.grid else 1
        q = F.conv2d(x, self.conv1.weight, self.conv1.bias, stride, 1)
        q = F.relu(self.bn1(q))
        q = self.conv2(F.adaptive_avg_pool2d(q, self.grid))
        return q.permute(0, 2, 3, 1)

    def extra_repr(self) -> str:
        return f"grid={self.grid}"


def regions_kept(ratio: float, grid: int) -> int:
    """``round(ratio * grid^2)`` regions, at least one: what a region policy at ``ratio``
    (fixed, or static-k) computes per kept frame; the frames' rule (:func:`frames_kept`)."""
    return frames_kept(ratio, grid * grid)


def fixed_region_mask(policy: str, frames: int, grid: int, ratio: float, generator: torch.Generator | None,
                      device, dtype) -> torch.Tensor:
    """The fixed spatial policies of Table 5, ``round(ratio * grid^2)`` regions per frame:

    - ``random``: regions drawn uniformly without replacement, per frame;
    - ``center``: the centre crop, the same for every frame: the regions nearest the grid
      centre (Chebyshev distance, so the crop grows as a square; ties by Euclidean distance,
      then raster order).
    """
    n = grid * grid
    k = regions_kept(ratio, grid)
    if policy == "random":
        idx = torch.multinomial(torch.ones(frames, n), k, replacement=False, generator=generator)
        mask = torch.zeros(frames, n).scatter_(1, idx, 1.0)
    elif policy == "center":
        c = (grid - 1) / 2

        def distance(i):  # region i in raster order: (Chebyshev, squared Euclidean, i)
            dy, dx = abs(i // grid - c), abs(i % grid - c)
            return max(dy, dx), dy * dy + dx * dx, i

        order = sorted(range(n), key=distance)[:k]
        mask = torch.zeros(n)
        mask[order] = 1.0
        mask = mask.expand(frames, n)
    else:
        raise ValueError(f"unknown region policy {policy!r}; expected one of {', '.join(REGION_SELECTIONS)}")
    return mask.reshape(frames, grid, grid).to(device=device, dtype=dtype)


def decide_regions(spatial: SpatialNavigation, x_ample: torch.Tensor, keep: torch.Tensor, ctx: SelectionContext,
                   training: bool) -> torch.Tensor | None:
    """The region mask ``(B*T, grid, grid)`` of one focal block, recorded in ``ctx.regions``
    as ``(B, T, grid, grid)``. Returns ``None`` when every region is computed
    (``region_selection="all"``), so the block runs as without spatial navigation. Learned
    navigation with a ``region_ratio``, in eval: static-k regions, the
    :func:`regions_kept` regions of each frame with the largest keep-minus-skip margin
    (:func:`static_k_keep` over the grid; training keeps the Gumbel sample)."""
    batch, t = keep.shape
    grid = spatial.grid
    if ctx.region_selection == "navigation" and ctx.static_regions(training):  # static-k regions
        logits = spatial(x_ample).float()
        regions = static_k_keep(logits.flatten(1, 2), ctx.region_ratio).view(-1, grid, grid)
    elif ctx.region_selection == "navigation":
        regions = gumbel_keep(spatial(x_ample).float(), ctx.temperature, training)
    elif ctx.region_selection == "all":
        ctx.regions.append(torch.ones(batch, t, grid, grid, device=x_ample.device))
        return None
    else:
        generator = None
        if not training:  # reproducible evaluation, a stream per block (apart from the frames')
            generator = torch.Generator().manual_seed(ctx.seed * 1000 + 500 + len(ctx.regions))
        regions = fixed_region_mask(ctx.region_selection, batch * t, grid, ctx.region_ratio, generator,
                                    x_ample.device, torch.float32)
    ctx.regions.append(regions.view(batch, t, grid, grid))
    return regions


# ----------------------------------------------------------------------------- region gather / scatter
@dataclass
class RegionLayout:
    """Where the selected regions of a block's kept frames lie in its ``(N, C, H, W)`` map.

    ``frames``, ``rows``, ``cols``: (P,) frame (in the map's dim 0), region row and column of
    each computed region; each region is ``size = (rh, rw)`` pixels.
    """

    frames: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    size: tuple[int, int]

    @staticmethod
    def of(regions: torch.Tensor, frame_index: torch.Tensor, shape: tuple[int, int], count: int) -> "RegionLayout":
        """``regions``: (K, g, g) 0/1 masks of the frames ``frame_index`` (K,), of which
        ``count`` are 1 (:class:`KeptSizes`: the layout is sized without reading the mask)."""
        g = regions.shape[-1]
        rh, rw = region_size(g, shape)
        k, r, c = torch.nonzero_static(regions, size=count).unbind(1)
        return RegionLayout(frame_index[k], r, c, (rh, rw))

    def __len__(self) -> int:
        return self.frames.numel()

    def pixel_rows(self, h: int, w: int, halo: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row of each pixel of each region (with ``halo``) in the ``(N*H*W, C)`` view of
        a channels-last map, clamped into the image; and a (P, 1, rh+2h, rw+2h) mask of the
        pixels inside the image."""
        rh, rw = self.size
        dy = torch.arange(-halo, rh + halo, device=self.frames.device)
        dx = torch.arange(-halo, rw + halo, device=self.frames.device)
        y = (self.rows * rh).view(-1, 1, 1) + dy.view(1, -1, 1)
        x = (self.cols * rw).view(-1, 1, 1) + dx.view(1, 1, -1)
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        rows = (self.frames.view(-1, 1, 1) * h + y.clamp(0, h - 1)) * w + x.clamp(0, w - 1)
        return rows.flatten(), inside.unsqueeze(1)


def _nhwc_rows(x: torch.Tensor) -> torch.Tensor:
    """The ``(N*H*W, C)`` view of a channels-last map."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n * h * w, c)


def gather_regions(x: torch.Tensor, layout: RegionLayout, halo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The selected regions of ``x`` with ``halo`` pixels of context, as a channels-last
    batch ``(P, C, rh+2h, rw+2h)``, and the mask of context pixels inside the image (pixels
    outside hold clamped copies: the caller zeroes them where the dense conv reads padding)."""
    x = x.contiguous(memory_format=torch.channels_last)
    _, c, h, w = x.shape
    rows, inside = layout.pixel_rows(h, w, halo)
    rh, rw = layout.size
    hh, ww = rh + 2 * halo, rw + 2 * halo
    patches = _nhwc_rows(x).index_select(0, rows).view(len(layout), hh, ww, c).permute(0, 3, 1, 2)
    return patches, inside.to(x.dtype)


def add_regions_(out: torch.Tensor, layout: RegionLayout, values: torch.Tensor) -> torch.Tensor:
    """``out[region pixels] += values`` in place; ``out`` channels-last, ``values``
    (P, C, rh, rw)."""
    _, c, h, w = out.shape
    rows, _ = layout.pixel_rows(h, w, 0)
    src = values.permute(0, 2, 3, 1).reshape(-1, c)
    _nhwc_rows(out).index_add_(0, rows, src.to(out.dtype))
    return out


def upsample_regions(regions: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(N, g, g) region mask -> (N, 1, H, W) pixel mask (each region covers H/g x W/g)."""
    rh, rw = region_size(regions.shape[-1], shape)
    return regions[:, None].repeat_interleave(rh, dim=2).repeat_interleave(rw, dim=3)


def region_size(grid: int, shape: tuple[int, int]) -> tuple[int, int]:
    """Pixels per region of a ``grid x grid`` grid on an ``H x W`` map; the grid must divide it."""
    h, w = shape
    if h % grid or w % grid:
        raise ValueError(f"region grid {grid}x{grid} does not divide the {h}x{w} feature map of a focal block; "
                         f"choose an input size (or region_grid) so that every AF stage's size is a multiple "
                         f"of the grid")
    return h // grid, w // grid


# ----------------------------------------------------------------------------- fusion
def nearest_factors(small: tuple[int, int], big: tuple[int, int]) -> tuple[int, int] | None:
    """``(sh, sw)`` when nearest upsampling ``small`` to ``big`` repeats every pixel ``sh x
    sw`` times (whole-number factors), else ``None``."""
    (h, w), (hh, ww) = small, big
    return (hh // h, ww // w) if hh % h == 0 and ww % w == 0 else None


def lerp_upsampled(focal: torch.Tensor, ample: torch.Tensor, theta: torch.Tensor,
                   factors: tuple[int, int]) -> torch.Tensor:
    """``theta * up(ample) + (1 - theta) * focal`` in one pass over ``focal`` (N, C, H, W),
    where ``up`` repeats each pixel of ``ample`` (N, C, H/sh, W/sw) ``sh x sw`` times
    (nearest upsampling by ``factors``) and ``theta`` is (N, C, 1, 1). The upsampled map is
    never materialised: ``ample`` is read through a broadcast view of ``focal``'s layout
    (channels-last or contiguous; the result has ``focal``'s)."""
    n, c, hh, ww = focal.shape
    sh, sw = factors
    h, w = hh // sh, ww // sw
    if is_channels_last(focal):
        f = focal.permute(0, 2, 3, 1).reshape(n, h, sh, w, sw, c)
        a = ample.permute(0, 2, 3, 1).reshape(n, h, 1, w, 1, c).to(f.dtype)
        t = theta.reshape(n, 1, 1, 1, 1, c).to(f.dtype)
        return torch.lerp(f, a, t).view(n, hh, ww, c).permute(0, 3, 1, 2)
    f = focal.contiguous().view(n, c, h, sh, w, sw)
    a = ample.reshape(n, c, h, 1, w, 1).to(f.dtype)
    return torch.lerp(f, a, theta.reshape(n, c, 1, 1, 1, 1).to(f.dtype)).view(n, c, hh, ww)


class FusionGate(nn.Module):
    """theta = sigmoid(FC(ReLU(FC(avgpool(ample + focal))))) of paper Eq. 8, per channel."""

    def __init__(self, channels: int, reduction: int = 16, bias: bool = False):
        super().__init__()
        hidden = channels // reduction
        self.fc = nn.Sequential(nn.Linear(channels, hidden, bias=bias), nn.ReLU(inplace=True),
                                nn.Linear(hidden, channels, bias=bias), nn.Sigmoid())
        for m in self.fc:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, ample: torch.Tensor, focal: torch.Tensor) -> torch.Tensor:
        """theta (N, C, 1, 1); avgpool(ample + focal) is taken as the sum of the two pools."""
        b, c = focal.shape[:2]
        pooled = F.adaptive_avg_pool2d(ample, 1) + F.adaptive_avg_pool2d(focal, 1)
        return self.fc(pooled.flatten(1)).view(b, c, 1, 1)


# ----------------------------------------------------------------------------- residual block
class ResidualBlock(nn.Module):
    """``act(shortcut(x) + body(shift(x) * keep))`` with the focal branch's two executions.

    Subclasses define ``body`` (the convolutions), ``shortcut`` (``None`` for no residual,
    an ``nn.Identity`` or a projection), ``time_shift`` (a :class:`TemporalShift` or an
    identity) and ``act``.

    - ``keep is None``: every frame computed (ample, fusion and plain blocks).
    - masked: every frame computed after multiplying the input by the mask, as in the
      authors' code; a skipped frame gives ``residual + body(0)``.
    - sparse: the selected frames of the whole batch are gathered, computed and scattered
      back; skipped frames get ``residual + body(0)``, with ``body(0)`` computed once per
      weights and spatial size (it carries the BN shifts through), not per video.
    - with a region mask (spatial navigation): masked multiplies a kept frame's body output
      by the upsampled mask; sparse cuts the selected regions of the kept frames with the
      halo their convolutions read (``region_body``), computes them as one batch and adds
      them to the residual, unless computing the kept frames whole costs fewer
      multiply-accumulates (``region_macs`` against ``frame_macs``).
    """

    shortcut: nn.Module | None
    time_shift: nn.Module
    act: nn.Module

    def body(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def region_body(self, x: torch.Tensor, index: torch.Tensor, local: "RegionLayout",
                    dest: "RegionLayout") -> torch.Tensor:  # pragma: no cover
        """``body(shift(x))`` on the selected regions only: (P, C_out, rh, rw) values for the
        regions of ``dest`` (frames of ``x``), which are those of ``local`` (frames of
        ``x[index]``, the kept frames). Convolutions reading beyond a region read its halo;
        beyond the image, zeros, as the dense convolutions pad."""
        raise NotImplementedError(f"{type(self).__name__} has no region-sparse execution")

    def region_macs(self, regions: int, frames: int, rh: int, rw: int, h: int, w: int) -> int:  # pragma: no cover
        """Multiply-accumulates of ``region_body`` for ``regions`` regions of ``rh x rw`` in
        ``frames`` kept frames of ``h x w``."""
        raise NotImplementedError(f"{type(self).__name__} has no region-sparse execution")

    def frame_macs(self, h: int, w: int) -> int:  # pragma: no cover
        """Multiply-accumulates of ``body`` on one ``h x w`` frame."""
        raise NotImplementedError(f"{type(self).__name__} has no region-sparse execution")

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, sparse: bool = False,
                dense_above: float = 1.0, regions: torch.Tensor | None = None,
                sizes: KeptSizes | None = None) -> torch.Tensor:
        """keep: (B, T) frame mask. regions: (B*T, g, g) region mask of spatial
        navigation: a kept frame adds the body on its selected regions only (paper Eq. 14
        with ``M_n``: ``1 + L_n M_n dv``), elsewhere the block passes the residual alone.
        sizes: in sparse execution, the counts of ``keep`` and ``regions``, known on the host
        (:class:`KeptSizes`, from the AF stage: counted from the policy or read once per stage);
        left out, the block reads them itself."""
        residual = None if self.shortcut is None else self.shortcut(x)
        if keep is None:
            out = self.body(self.time_shift(x))
        else:
            if sparse and sizes is None:
                sizes = block_sizes([keep], [regions])[0]
            if sparse and (regions is not None or sizes.frames < dense_above * keep.numel()):
                return self.act(self._sparse(x, keep, residual, regions, sizes))
            keep = keep.reshape(-1)
            k = keep.view(-1, 1, 1, 1).to(x.dtype)
            out = self.body(self.time_shift(x) * k)
            if regions is not None:  # skipped frames keep body(0); kept frames their regions
                out = out * (1 - k + k * upsample_regions(regions.to(out.dtype), out.shape[-2:]))
        if residual is not None:
            out += residual
        return self.act(out)

    def _sparse(self, x: torch.Tensor, keep: torch.Tensor, residual: torch.Tensor | None,
                regions: torch.Tensor | None, sizes: KeptSizes) -> torch.Tensor:
        index = kept_index(keep, sizes.frames, sizes.per_video)
        base = self.zero_response(x)
        if regions is not None and sizes.frames:
            local = RegionLayout.of(regions.index_select(0, index), torch.arange(sizes.frames, device=x.device),
                                    tuple(x.shape[-2:]), sizes.regions)
            h, w = x.shape[-2:]
            if self.region_macs(sizes.regions, sizes.frames, *local.size, h, w) < sizes.frames * self.frame_macs(h, w):
                return self._sparse_regions(x, keep, index, residual, base, local, sizes)
            if sizes.frames == keep.numel():  # every frame kept, most regions: gate them in place
                out = self.body(self.time_shift(x))
                out = out * upsample_regions(regions.to(out.dtype), out.shape[-2:])
                return out if residual is None else out.add_(residual)
        if sizes.frames:
            y = self.body(gather_shifted(self.time_shift, x, index))
            if regions is not None:  # computing the kept frames whole was cheaper: gate them
                y = y * upsample_regions(regions.index_select(0, index).to(y.dtype), y.shape[-2:])
            if residual is not None:
                y += gather_frames(residual, index)
        if residual is None:
            out = base.expand(x.shape[0], *base.shape[1:])
        elif residual is x:  # the caller's input: never written
            out = residual + base
        else:  # a projection's fresh output, still in cache: written in place
            out = residual.add_(base)
        out = out.contiguous(memory_format=_memory_format(x))
        if sizes.frames:
            scatter_frames_(out, index, y)
        return out

    def _sparse_regions(self, x, keep, index, residual, base, local: RegionLayout, sizes: KeptSizes) -> torch.Tensor:
        """Kept frames: residual, plus the body on the selected regions (gathered with their
        halo, computed as one batch, added back). Skipped frames: residual + body(0)."""
        n, _, h, w = x.shape
        if residual is None:
            out = torch.zeros((n, *base.shape[1:]), dtype=base.dtype, device=x.device)
        elif residual is x or not residual.is_contiguous(memory_format=torch.channels_last):
            out = residual.clone(memory_format=torch.channels_last)
        else:  # a projection's fresh output: written in place
            out = residual
        skipped = skipped_index(keep, sizes)
        if skipped.numel():
            frames = out.permute(0, 2, 3, 1).reshape(n, -1)
            frames.index_add_(0, skipped, base.permute(0, 2, 3, 1).reshape(1, -1).expand(skipped.numel(), -1))
        if len(local):
            dest = replace(local, frames=index.index_select(0, local.frames))
            add_regions_(out, dest, self.region_body(x, index, local, dest))
        return out.contiguous(memory_format=_memory_format(x))

    def zero_response(self, h: torch.Tensor) -> torch.Tensor:
        """``body(0)`` for one frame of ``h``'s shape, cached until a weight changes
        (the shift of zeros is zeros, so it does not enter). Traced (torch.export, ONNX), it is
        part of the graph, uncached: a constant the runtime folds."""
        def response():
            zeros = torch.zeros((1, *h.shape[1:]), dtype=h.dtype, device=h.device)
            return self.body(zeros.contiguous(memory_format=_memory_format(h)))

        if torch.compiler.is_compiling():
            return response()
        tensors = [*self.parameters(), *self.buffers()]
        key = (tuple(h.shape[1:]), h.dtype, h.device, _memory_format(h),
               tuple((t.data_ptr(), t._version) for t in tensors))
        cache = self.__dict__.get("_zero_cache")
        if cache is None or cache[0] != key:
            with torch.no_grad():
                value = response()
            cache = (key, value)
            self.__dict__["_zero_cache"] = cache
        return cache[1]


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if is_channels_last(x) else torch.contiguous_format


# ----------------------------------------------------------------------------- AF stage
class AFStage(nn.Module):
    """One AF module (paper Fig. 2)::

        x ──► navigation_i ──► keep_i   [spatial_i ──► regions_i]       (one per ample block)
        │         ▲
        ├──► ample_0 ─► ... ─► ample_{n-1} ─► [ample_proj] ─► nearest upsample ─┐
        │                                                                        ├─► theta-fusion ─► fusion_block
        └──► focal_0(keep_0) ─► ... ─► focal_{n-1}(keep_{n-1}) ─────────────────┘

    The ample branch sees every frame at half resolution (and, in ResNets, half channels);
    the focal branch computes only the frames its navigation point keeps and, with spatial
    navigation (paper §3.3), only the selected regions of those frames. ``navigation=None``:
    every focal block uses the model's one temporal mask (``ctx.keep``, paper §4.1: the
    temporal navigation moved to the first layer when spatial navigation is on).
    """

    def __init__(self, navigation: list[Navigation] | None, ample: list[nn.Module], focal: list[nn.Module],
                 fusion: FusionGate, fusion_block: nn.Module, ample_proj: nn.Module | None = None,
                 fusion_relu: bool = True, spatial: list[SpatialNavigation] | None = None):
        super().__init__()
        assert len(ample) == len(focal)
        assert navigation is None or len(navigation) == len(ample)
        assert spatial is None or len(spatial) == len(ample)
        self.navigation = None if navigation is None else nn.ModuleList(navigation)
        self.spatial = None if spatial is None else nn.ModuleList(spatial)
        self.ample = nn.ModuleList(ample)
        self.focal = nn.ModuleList(focal)
        self.ample_proj = ample_proj
        self.fusion = fusion
        self.fusion_block = fusion_block
        self.fusion_relu = fusion_relu

    def forward(self, x: torch.Tensor, ctx: SelectionContext) -> torch.Tensor:
        # The ample branch first: it makes every navigation decision of the stage, so that in
        # sparse execution the focal blocks' counts are known (read at most once) before they run.
        x_ample, keeps, regions = x, [], []
        for i, ample in enumerate(self.ample):
            if self.navigation is None:
                keep = ctx.keep
                ctx.masks.append(keep)
            else:
                keep = decide(self.navigation[i], x_ample, ctx, self.training)
            keeps.append(keep)
            regions.append(None if self.spatial is None else
                           decide_regions(self.spatial[i], x_ample, keep, ctx, self.training))
            x_ample = ample(x_ample)
        sizes = ctx.sizes(keeps, regions, self.training) if ctx.sparse else [None] * len(keeps)
        x_focal = x
        for focal, keep, reg, size in zip(self.focal, keeps, regions, sizes):
            x_focal = focal(x_focal, keep, sparse=ctx.sparse, dense_above=ctx.dense_above, regions=reg, sizes=size)
        if self.ample_proj is not None:
            x_ample = self.ample_proj(x_ample)
        factors = nearest_factors(x_ample.shape[-2:], x_focal.shape[-2:])
        if factors is None:  # not a whole-number upsampling: materialise it
            x_ample, factors = F.interpolate(x_ample, size=x_focal.shape[-2:], mode="nearest"), (1, 1)
        theta = self.fusion(x_ample, x_focal)  # a whole-factor nearest upsampling keeps the map's mean
        fused = lerp_upsampled(x_focal, x_ample, theta, factors)  # theta*up(ample) + (1-theta)*focal
        if self.fusion_relu:
            fused = F.relu(fused, inplace=True)
        return self.fusion_block(fused)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channel counts to a multiple of 8 (MobileNet convention)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


__all__ = [
    "SELECTIONS", "FIXED_SELECTIONS", "REGION_SELECTIONS", "FIXED_REGION_SELECTIONS", "EXECUTIONS", "TEMPORAL_NAVIGATION", "TemporalShift", "Navigation",
    "SpatialNavigation", "decide_regions", "fixed_region_mask", "RegionLayout", "gather_regions", "add_regions_",
    "upsample_regions", "FusionGate", "ResidualBlock",
    "AFStage", "SelectionContext", "decide", "gumbel_keep", "fixed_policy_mask", "gather_frames",
    "scatter_frames_", "gather_shifted", "kept_index", "skipped_index", "KeptSizes", "block_sizes", "read_counts",
    "regions_kept", "nearest_factors", "lerp_upsampled", "make_divisible", "is_channels_last",
]
