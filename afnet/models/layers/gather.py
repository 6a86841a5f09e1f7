"""Frame and region gather / scatter along the ``(B*T, C, H, W)`` stack of frames: the kept
frames as indices (:func:`kept_index`), rows copied in and out keeping the memory format, and
the selected regions of kept frames cut with their halo (:class:`RegionLayout`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from afnet.models.layers.memory import is_channels_last
from afnet.models.layers.sizes import KeptSizes


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
    def of(regions: torch.Tensor, frame_index: torch.Tensor, shape: tuple[int, int], count: int) -> RegionLayout:
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
