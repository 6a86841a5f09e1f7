"""The navigation modules: temporal (paper Eq. 2-3) and spatial (Eq. 15). Each maps an ample
feature to (skip, keep) logits; :mod:`afnet.models.layers.selection` turns them into masks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Navigation(nn.Module):
    """Paper Eq. 2-3: pool -> 1x1 conv to 2 channels (W1) -> BN -> ReLU -> reshape the T
    frames of a video into 2T channels -> 1x1 conv with groups=T and bias (W2).

    Returns logits ``(B, T, 2)`` ordered (skip, keep). The W2 bias starts at ``init_bias``,
    (1, 10) for (skip, keep) as released, so every frame starts selected. A smaller gap
    (e.g. (0, 3)) leaves the straight-through gradient unsaturated, which short training
    schedules need to move the kept ratio at all.

    ``shared`` (beyond the paper): one W2, a 1x1 conv from 2 to 2 channels with bias, for
    every frame position instead of one per position (groups=T). Without per-position
    parameters the keep/skip margins can differ between a video's frames only by what the
    frames show, so the ratio term cannot be met by position (docs/navigation.md).
    """

    def __init__(self, in_channels: int, num_frames: int, init_bias: tuple[float, float] = (1.0, 10.0),
                 shared: bool = False):
        super().__init__()
        self.num_frames = num_frames
        self.init_bias = (float(init_bias[0]), float(init_bias[1]))
        self.shared = bool(shared)
        self.conv1 = nn.Conv2d(in_channels, 2, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2)
        positions = 1 if self.shared else num_frames
        self.conv2 = nn.Conv2d(2 * positions, 2 * positions, kernel_size=1, groups=positions, bias=True)
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
        g = self.conv2(g if self.shared else g.reshape(-1, 2 * self.num_frames, 1, 1))
        return g.view(-1, self.num_frames, 2)

    def extra_repr(self) -> str:
        return f"num_frames={self.num_frames}" + (", shared" if self.shared else "")


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
