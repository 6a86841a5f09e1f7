"""The video-model interface every network of the zoo implements.

    video (B, T, 3, H, W) ─► frames (B*T, 3, H, W) ─► forward_features ─► forward_head
                                                  (features, masks, regions)   per frame
    ─► logits (B*T, K) ─► average over the T frames ─► VideoOutput(logits (B, K), masks, regions)
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
from torch import nn

from afnet.models.layers import (
    AFStage,
    Execution,
    FixedCounts,
    Navigation,
    SelectionPolicy,
    SpatialNavigation,
    is_channels_last,
)
from afnet.models.options import selection_problems

# execution="auto" on a GPU runs masked below this batch unless the counts are static (see
# VideoModel.resolved_execution).
CUDA_SPARSE_MIN_BATCH = 32


class NavigationPoint(NamedTuple):
    """One entry of ``VideoOutput.masks``: ``name`` (e.g. ``layer1.0``, the focal block) and,
    with spatial navigation, the side of its region grid (``grid``; ``None``: temporal only)."""

    name: str
    grid: int | None = None

    @property
    def spatial(self) -> bool:
        return self.grid is not None


class VideoOutput(NamedTuple):
    """``logits``: (B, num_classes). ``masks``: one (B, T) tensor per focal block, in
    network order; 1 means the focal branch computed that frame (soft weights for
    ``selection="soft"``). Empty for the TSN/TSM baselines. ``regions``: with spatial
    navigation, one (B, T, g, g) tensor per focal block, 1 where the region is selected;
    the block computes region (i, j) of frame t where ``masks[n][b, t] * regions[n][b, t, i, j]``
    is 1. Empty without spatial navigation. ``frame_logits``: (B, T, num_classes), the
    per-frame logits that ``logits`` averages (the training objective's frame saliency reads
    them); None where a runtime does not return them (ONNX)."""

    logits: torch.Tensor
    masks: list
    regions: list = []
    frame_logits: torch.Tensor | None = None


class VideoModel(nn.Module):
    """Base class: input checks, frame stacking, per-frame head, average over frames.

    Subclasses build their layers, then implement ``forward_features(x, policy, execution)``
    returning per-frame features with the masks of their navigation points, and
    ``forward_head(features)`` returning per-frame logits.
    """

    has_navigation = False
    spatial = False   # spatial navigation (paper §3.3): set by models that have it
    shift = False     # temporal shift in every block (the create_model option)

    def __init__(self, num_classes: int, num_frames: int):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.selection = "navigation" if self.has_navigation else "all"   # the learned policy where there is one
        self.ratio: float | None = None
        self.execution = "auto"
        self.dense_above = 1.0
        self.seed = 0
        self.region_selection = "all"
        self.region_ratio: float | None = None
        self.autocast_dtype: torch.dtype | None = None

    # -------------------------------------------------------------- configuration
    def configure(self, *, selection: str | None = None, ratio: float | None = None,
                  execution: str | None = None, dense_above: float | None = None,
                  region_selection: str | None = None, region_ratio: float | None = None) -> VideoModel:
        """Choose how frames are selected and how the focal branch executes: the one place
        where a model's selection is set (:func:`create_model`, inference, export and tests
        all come here). Arguments left out keep their current value (but a ``ratio`` is
        dropped when the selection becomes ``all`` or ``soft``, which compute every frame).

        Args:
            selection: ``navigation`` (learned; the default of models with navigation),
                ``all``, ``uniform`` / ``random`` / ``normal`` (fixed policies of Table 5, need
                ``ratio``) or ``soft`` (Table 1's soft frame-weights, no Gumbel).
            ratio: share of frames kept, in (0, 1]. With ``navigation``, in eval: the static-k
                policy, exactly ``round(ratio * T)`` frames per video and point, those with the
                largest keep-minus-skip margin (training is unchanged: Gumbel, the ratio term).
            execution: ``auto`` (in eval chosen by device and batch, see
                :meth:`resolved_execution`; masked in train), ``sparse`` (eval only) or
                ``masked`` (every frame computed, as the authors' code).
            dense_above: in sparse execution, compute densely when at least this fraction of
                the batch's frames is kept (gather and scatter then cost more than they save).
                With spatial navigation each focal block instead picks, by multiply-accumulates,
                between its selected regions and its kept frames whole.
            region_selection: spatial models: ``navigation`` (learned; their default), ``all``,
                or the fixed policies of Table 5 ``random`` / ``center`` (need ``region_ratio``).
            region_ratio: share of regions computed per kept frame, in (0, 1]. With
                ``navigation``, in eval: static-k regions, exactly ``round(region_ratio * g^2)``
                per kept frame, those with the largest margin (as ``ratio`` does for frames).

        Returns:
            The model itself. Raises ValueError naming every broken rule.
        """
        selection = self.selection if selection is None else selection
        execution = self.execution if execution is None else execution
        if ratio is None:  # kept, unless the selection now computes every frame (a ratio would mean nothing)
            ratio = None if selection in ("all", "soft") else self.ratio
        region_selection = self.region_selection if region_selection is None else region_selection
        region_ratio = self.region_ratio if region_ratio is None else region_ratio
        problems = selection_problems(dict(selection=selection, ratio=ratio, execution=execution,
                                           dense_above=dense_above, region_selection=region_selection,
                                           region_ratio=region_ratio),
                                      has_navigation=self.has_navigation, spatial=self.spatial,
                                      model=getattr(self, "arch", type(self).__name__))
        if problems:
            raise ValueError("; ".join(problems))
        if dense_above is not None:
            self.dense_above = float(dense_above)
        self.selection, self.ratio, self.execution = selection, (None if ratio is None else float(ratio)), execution
        self.region_selection = region_selection
        self.region_ratio = None if region_ratio is None else float(region_ratio)
        return self

    def policy(self, temperature: float = 1.0, given: torch.Tensor | None = None) -> SelectionPolicy:
        """The :class:`~afnet.models.layers.SelectionPolicy` of a forward pass as configured
        (``temperature``: Gumbel-Softmax, training; ``given``: a (B, T) mask from outside)."""
        return SelectionPolicy(selection=self.selection, ratio=self.ratio, region_selection=self.region_selection,
                               region_ratio=self.region_ratio, temperature=float(temperature), seed=self.seed,
                               given=given)

    def fixed_counts(self, given: bool = False) -> FixedCounts:
        """The counts the policy fixes in eval (:meth:`SelectionPolicy.fixed_counts`; regions
        per kept frame of a one-region grid): ``.complete`` when every focal block knows how
        many frames (and regions) it computes before its masks are made: static-k, the fixed
        frame policies, with no region selection or a fixed region policy; not a mask
        ``given`` from outside. Sparse execution then reads nothing back from the device
        (:class:`~afnet.models.layers.KeptSizes`); otherwise it reads the counts once per AF stage."""
        outside = torch.ones(1, self.num_frames) if given else None   # any mask from outside: its counts unknown
        return self.policy(given=outside).fixed_counts(self.num_frames, training=False)

    def resolved_execution(self, batch: int, device: torch.device | str = "cpu", given: bool = False) -> str:
        """``"sparse"`` or ``"masked"``: what a forward pass of ``batch`` videos on ``device``
        runs (``given``: with a ``keep=`` mask). Training and soft selection run masked.
        ``execution="auto"`` chooses by what was measured (docs/speed.md, docs/speed-gpu.md):

        - on a CPU, sparse: it tracked the FLOPs at every ratio and batch measured;
        - on a GPU, below batch :data:`CUDA_SPARSE_MIN_BATCH`: masked for region selection
          (region-sparse lost to masked at batch 1 and 8 on an H100) and for counts read from
          the masks (a host sync per AF stage; measured when sparse read one per focal block, it
          lost, and the one read per stage has not been measured since); sparse where
          :meth:`fixed_counts` fixes the frame counts (nothing read back); sparse from batch
          32 on.
        """
        if self.execution == "sparse" and self.training:
            raise ValueError("execution='sparse' is for inference (model.eval()); training needs "
                             "'masked' so gradients reach the navigation and BN sees every frame")
        if self.training or self.selection == "soft" or self.execution == "masked":
            return "masked"
        if self.execution == "auto" and torch.device(device).type == "cuda" and batch < CUDA_SPARSE_MIN_BATCH:
            regions = self.spatial and self.region_selection != "all"
            if regions or not self.fixed_counts(given).complete:
                return "masked"
        return "sparse"

    # -------------------------------------------------------------- forward
    def check_video(self, video: torch.Tensor) -> None:
        if not isinstance(video, torch.Tensor):
            raise ValueError(f"expected a video tensor (B, T, 3, H, W), got {type(video).__name__}")
        if video.dim() != 5:
            raise ValueError(f"expected a video tensor of rank 5 (B, T, 3, H, W), got rank {video.dim()} "
                             f"with shape {tuple(video.shape)}")
        if video.shape[2] != 3:
            raise ValueError(f"expected 3 colour channels at dim 2 of (B, T, 3, H, W), got {video.shape[2]} "
                             f"in shape {tuple(video.shape)}")
        if video.shape[1] != self.num_frames:
            raise ValueError(f"model was built for num_frames={self.num_frames} (the navigation and temporal "
                             f"shift are sized by T), got a video with {video.shape[1]} frames")
        if not video.is_floating_point():
            raise ValueError(f"expected a float video tensor (normalised pixels), got dtype {video.dtype}")

    def check_keep(self, keep: torch.Tensor, batch: int, frames: int) -> None:
        if not self.navigation_points():
            raise ValueError(f"keep= given to {type(self).__name__}, which has no navigation points "
                             f"(every frame is computed in full)")
        if tuple(keep.shape) != (batch, frames):
            raise ValueError(f"keep must be (B, T) = ({batch}, {frames}), got {tuple(keep.shape)}")
        if not bool(((keep == 0) | (keep == 1)).all()):
            raise ValueError("keep must hold 0 (skip) or 1 (compute) per frame")

    def forward(self, video: torch.Tensor, temperature: float = 1.0, keep: torch.Tensor | None = None) -> VideoOutput:
        """video: float (B, T, 3, H, W). temperature: Gumbel-Softmax temperature (train mode).
        keep: optional (B, T) 0/1 frames that the focal branch computes at every navigation
        point, in place of the model's own selection: a frame policy from outside (an
        oracle from annotations, a saliency method) run through the same network."""
        self.check_video(video)
        b, t = video.shape[:2]
        if keep is not None:
            self.check_keep(keep, b, t)
        x = video.reshape(b * t, *video.shape[2:])
        if is_channels_last(next(self.parameters())):
            x = x.contiguous(memory_format=torch.channels_last)
        policy = self.policy(temperature, keep)
        execution = Execution(sparse=self.resolved_execution(b, x.device, keep is not None) == "sparse",
                              dense_above=self.dense_above)
        # no autocast context at all in fp32: a device without autocast (meta, in tests) runs too
        cast = (torch.autocast(x.device.type, dtype=self.autocast_dtype) if self.autocast_dtype is not None
                else contextlib.nullcontext())
        with cast:
            features, masks, regions = self.forward_features(x, policy, execution)
            logits = self.forward_head(features)
        frame_logits = logits.float().view(b, t, -1)
        return VideoOutput(frame_logits.mean(dim=1), masks, regions, frame_logits)

    def forward_features(self, x: torch.Tensor, policy: SelectionPolicy, execution: Execution
                         ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:  # pragma: no cover
        """Per-frame features, and the masks of the navigation points in network order: one
        (B, T) keep-mask each, and with spatial navigation one (B, T, g, g) region mask each."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def classifier(self) -> nn.Linear:
        """The final linear layer (sized by num_classes)."""
        raise NotImplementedError  # pragma: no cover

    def navigation_parameters(self) -> list[nn.Parameter]:
        """Parameters of the temporal and spatial navigation modules."""
        return [p for m in self.modules() if isinstance(m, (Navigation, SpatialNavigation)) for p in m.parameters()]

    # -------------------------------------------------------------- self-description
    def navigation_points(self) -> list[NavigationPoint]:
        """One point per entry of ``VideoOutput.masks`` (and of ``regions`` for spatial
        points), in network order: the focal blocks of the AF stages (``layer1.focal.0`` ->
        ``layer1.0``), whether each has its navigation module or all share one
        (``temporal_navigation="first"``). Empty for the TSN/TSM baselines."""
        points = []
        for name, stage in self.named_modules():
            if isinstance(stage, AFStage):
                grids = [None] * len(stage.focal) if stage.spatial is None else [s.grid for s in stage.spatial]
                points += [NavigationPoint(f"{name}.{i}", g) for i, g in enumerate(grids)]
        return points

    def model_args(self) -> dict:
        """The :func:`~afnet.models.create_model` arguments that rebuild this network
        (recorded in checkpoints): the sizes, the shift and the constructor options it was
        built with."""
        return {"num_classes": self.num_classes, "num_frames": self.num_frames, "shift": bool(self.shift),
                **getattr(self, "build_args", {})}

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, num_frames={self.num_frames}, selection={self.selection!r}, "
                f"ratio={self.ratio}, execution={self.execution!r}"
                + (f", region_selection={self.region_selection!r}, region_ratio={self.region_ratio}"
                   if self.spatial else ""))
