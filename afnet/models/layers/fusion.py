"""The fusion of the ample and focal branches (paper Eq. 8): theta, and the lerp of the focal
map with the nearest-upsampled ample map."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from afnet.models.layers.memory import is_channels_last


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
