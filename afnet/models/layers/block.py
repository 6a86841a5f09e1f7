"""The residual block with the focal branch's two executions (masked, sparse), shared by the
ResNet bottleneck and the MobileNetV3 inverted residual."""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from afnet.models.layers.gather import (
    RegionLayout,
    add_regions_,
    gather_frames,
    kept_index,
    scatter_frames_,
    skipped_index,
    upsample_regions,
)
from afnet.models.layers.memory import memory_format
from afnet.models.layers.shift import gather_shifted
from afnet.models.layers.sizes import KeptSizes, block_sizes


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

    def region_body(self, x: torch.Tensor, index: torch.Tensor, local: RegionLayout,
                    dest: RegionLayout) -> torch.Tensor:  # pragma: no cover
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
        out = out.contiguous(memory_format=memory_format(x))
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
        return out.contiguous(memory_format=memory_format(x))

    def zero_response(self, h: torch.Tensor) -> torch.Tensor:
        """``body(0)`` for one frame of ``h``'s shape, cached until a weight changes
        (the shift of zeros is zeros, so it does not enter). Traced (torch.export, ONNX), it is
        part of the graph, uncached: a constant the runtime folds."""
        def response():
            zeros = torch.zeros((1, *h.shape[1:]), dtype=h.dtype, device=h.device)
            return self.body(zeros.contiguous(memory_format=memory_format(h)))

        if torch.compiler.is_compiling():
            return response()
        tensors = [*self.parameters(), *self.buffers()]
        key = (tuple(h.shape[1:]), h.dtype, h.device, memory_format(h),
               tuple((t.data_ptr(), t._version) for t in tensors))
        cache = self.__dict__.get("_zero_cache")
        if cache is None or cache[0] != key:
            with torch.no_grad():
                value = response()
            cache = (key, value)
            self.__dict__["_zero_cache"] = cache
        return cache[1]
