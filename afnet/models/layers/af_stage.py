"""The AF module (paper Fig. 2): navigation, ample and focal branches, and their fusion."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from afnet.models.layers.fusion import FusionGate, lerp_upsampled, nearest_factors
from afnet.models.layers.navigation import Navigation, SpatialNavigation
from afnet.models.layers.selection import SelectionPolicy, decide, decide_regions


@dataclass(frozen=True)
class Execution:
    """How the focal blocks of one forward pass execute: ``sparse`` (gather the kept frames)
    or masked, and ``dense_above`` (see :class:`~afnet.models.layers.block.ResidualBlock`)."""

    sparse: bool = False
    dense_above: float = 1.0


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
    every focal block uses the model's one temporal mask (``keep`` of :meth:`forward`, paper
    §4.1: the temporal navigation moved to the first layer when spatial navigation is on).
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

    def forward(self, x: torch.Tensor, policy: SelectionPolicy, execution: Execution = Execution(),
                point: int = 0, keep: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """``(output, keeps, regions)``: the stage's output, the (B, T) mask of each focal
        block and, with spatial navigation, its (B, T, g, g) region mask (else no entry).
        ``point``: the network-order index of the stage's first navigation point. ``keep``:
        the model's one temporal mask, for a stage without navigation modules."""
        # The ample branch first: it makes every navigation decision of the stage, so that in
        # sparse execution the focal blocks' counts are known (read at most once) before they run.
        x_ample, keeps, regions, focal_regions = x, [], [], []
        for i, ample in enumerate(self.ample):
            if self.navigation is not None:
                keep = decide(self.navigation[i], x_ample, policy, self.training, point + i)
            keeps.append(keep)
            if self.spatial is None:
                focal_regions.append(None)
            else:
                grid = decide_regions(self.spatial[i], x_ample, keep, policy, self.training, point + i)
                regions.append(grid)
                every = policy.region_selection == "all"   # computed as without spatial navigation
                focal_regions.append(None if every else grid.view(-1, *grid.shape[-2:]))
            x_ample = ample(x_ample)
        sizes = policy.sizes(keeps, focal_regions, self.training) if execution.sparse else [None] * len(keeps)
        x_focal = x
        for focal, k, reg, size in zip(self.focal, keeps, focal_regions, sizes):
            x_focal = focal(x_focal, k, sparse=execution.sparse, dense_above=execution.dense_above, regions=reg,
                            sizes=size)
        if self.ample_proj is not None:
            x_ample = self.ample_proj(x_ample)
        factors = nearest_factors(x_ample.shape[-2:], x_focal.shape[-2:])
        if factors is None:  # not a whole-number upsampling: materialise it
            x_ample, factors = F.interpolate(x_ample, size=x_focal.shape[-2:], mode="nearest"), (1, 1)
        theta = self.fusion(x_ample, x_focal)  # a whole-factor nearest upsampling keeps the map's mean
        fused = lerp_upsampled(x_focal, x_ample, theta, factors)  # theta*up(ample) + (1-theta)*focal
        if self.fusion_relu:
            fused = F.relu(fused, inplace=True)
        return self.fusion_block(fused), keeps, regions
