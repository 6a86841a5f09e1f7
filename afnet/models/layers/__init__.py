"""The building blocks every backbone shares: one implementation of each idea, one file each.

- :mod:`.shift`: :class:`TemporalShift`, TSM, 1/8 of the channels shifted each way along time.
- :mod:`.navigation`: :class:`Navigation` (paper Eq. 2-3) and :class:`SpatialNavigation`
  (its spatial extension, Eq. 15): logits per frame / region.
- :mod:`.selection`: :class:`SelectionPolicy`, the policy of one forward pass; :func:`decide`
  and :func:`decide_regions` turn logits (or a fixed policy) into masks and return them.
- :mod:`.sizes`: :class:`KeptSizes`, what a focal block computes, known before it runs.
- :mod:`.gather`: frame and region gather / scatter (:class:`RegionLayout`).
- :mod:`.fusion`: :class:`FusionGate`, theta of paper Eq. 8, and the upsampled lerp.
- :mod:`.block`: :class:`ResidualBlock`, the masked / sparse execution of a focal block,
  shared by the ResNet bottleneck and the MobileNetV3 inverted residual.
- :mod:`.af_stage`: :class:`AFStage`, the AF module, returning its masks.
- :mod:`.memory`: channels-last or not.

Frames are stacked along dim 0 as ``(B*T, C, H, W)``, video-major, as in TSN/TSM. The names
below are those of the former single module ``layers.py``; they stay importable from here.
"""
from afnet.models.layers.af_stage import AFStage, Execution
from afnet.models.layers.block import ResidualBlock
from afnet.models.layers.fusion import FusionGate, lerp_upsampled, nearest_factors
from afnet.models.layers.gather import (
                                        RegionLayout,
                                        add_regions_,
                                        gather_frames,
                                        gather_regions,
                                        kept_index,
                                        region_size,
                                        scatter_frames_,
                                        skipped_index,
                                        upsample_regions,
)
from afnet.models.layers.memory import is_channels_last
from afnet.models.layers.navigation import Navigation, SpatialNavigation
from afnet.models.layers.selection import (
                                        FixedCounts,
                                        SelectionPolicy,
                                        decide,
                                        decide_regions,
                                        fixed_policy_mask,
                                        fixed_region_mask,
                                        frames_kept,
                                        gumbel_keep,
                                        regions_kept,
                                        static_k_keep,
)
from afnet.models.layers.shift import TemporalShift, gather_shifted
from afnet.models.layers.sizes import KeptSizes, block_sizes, read_counts
from afnet.models.options import (
                                        EXECUTIONS,
                                        FIXED_REGION_SELECTIONS,
                                        FIXED_SELECTIONS,
                                        REGION_SELECTIONS,
                                        SELECTIONS,
                                        TEMPORAL_NAVIGATION,
)

__all__ = [
    "SELECTIONS", "FIXED_SELECTIONS", "REGION_SELECTIONS", "FIXED_REGION_SELECTIONS", "EXECUTIONS",
    "TEMPORAL_NAVIGATION", "TemporalShift", "Navigation", "SpatialNavigation", "decide_regions", "fixed_region_mask",
    "RegionLayout", "gather_regions", "add_regions_", "upsample_regions", "region_size", "FusionGate",
    "ResidualBlock", "AFStage", "Execution", "SelectionPolicy", "FixedCounts", "decide", "gumbel_keep",
    "fixed_policy_mask", "frames_kept", "static_k_keep", "gather_frames", "scatter_frames_", "gather_shifted",
    "kept_index", "skipped_index", "KeptSizes", "block_sizes", "read_counts", "regions_kept", "nearest_factors",
    "lerp_upsampled", "is_channels_last",
]
