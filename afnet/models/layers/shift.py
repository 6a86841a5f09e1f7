"""The temporal shift of TSM (Lin et al. 2019), and its gather of a few frames.

Frames are stacked along dim 0 as ``(B*T, C, H, W)``, video-major, as in TSN/TSM.
"""
from __future__ import annotations

import torch
from torch import nn

from afnet.models.layers.gather import gather_frames
from afnet.models.layers.memory import is_channels_last


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
