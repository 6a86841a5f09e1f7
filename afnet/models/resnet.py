"""AF-ResNet (paper §3.1) and the TSN/TSM ResNet baselines.

AF-ResNet replaces stages 1-3 with AF modules; stage 4 is a plain stage. Details from the
authors' release: bottlenecks stride on the 3x3 conv (ResNet v1.5); the ample branch halves
the channels (alpha 2) and its first block has stride 2 with a 3x3/2 average pool (plus a
1x1 conv+BN when channels change) on the shortcut; the focal branch uses groups=2 on all
three convs at stride 1; the last block of each branch has no final ReLU; after the fusion
one full bottleneck runs at stride 2 (stages 1, 2) or 1 (stage 3).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from afnet.models.base import NavigationPoint, VideoModel
from afnet.models.layers import (
    AFStage,
    FusionGate,
    Navigation,
    ResidualBlock,
    SpatialNavigation,
    TemporalShift,
    decide,
    gather_regions,
    gather_shifted,
)


def _shortcut(in_ch: int, out_ch: int, stride: int, style: str) -> nn.Module:
    """``avg``: the authors' AvgPool(3, 2, 1) then 1x1 conv+BN when channels change.
    ``conv``: torchvision's strided 1x1 conv+BN."""
    layers: list[nn.Module] = []
    if style == "avg":
        if stride != 1:
            layers.append(nn.AvgPool2d(3, stride=2, padding=1))
        if in_ch != out_ch:
            layers += [nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
    elif stride != 1 or in_ch != out_ch:
        layers += [nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)]
    return nn.Sequential(*layers) if layers else nn.Identity()


class Bottleneck(ResidualBlock):
    """1x1 -> 3x3 (stride) -> 1x1, width ``out_ch // 4``; shift on the input of the first conv."""

    def __init__(self, in_ch: int, out_ch: int, num_frames: int, stride: int = 1, groups: int = 1,
                 shortcut: str = "avg", shift: bool = False, last_relu: bool = True):
        super().__init__()
        mid = out_ch // 4
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False, groups=groups)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False, groups=groups)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1, bias=False, groups=groups)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = _shortcut(in_ch, out_ch, stride, shortcut)
        self.time_shift = TemporalShift(num_frames) if shift else nn.Identity()
        self.act = nn.ReLU(inplace=True) if last_relu else nn.Identity()

    def body(self, x):
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        return self.bn3(self.conv3(x))

    def region_body(self, x, index, local, dest):
        """The 3x3 conv reads one pixel of halo around each region. The 1x1 conv before it
        runs either on the regions cut with that halo from the input, or on the whole kept
        frames (then the halo is cut from its output, channels / 4): whichever costs fewer
        multiply-accumulates (small regions: halo pixels outnumber the region's)."""
        if self.conv2.stride != (1, 1):
            raise ValueError("region-sparse execution needs a stride-1 block (focal blocks are)")
        h, w = x.shape[-2:]
        if self._conv1_on_frames(len(local), index.numel(), *local.size, h, w):
            a = F.relu(self.bn1(self.conv1(gather_shifted(self.time_shift, x, index))), inplace=True)
            a, inside = gather_regions(a, local, halo=1)
        else:
            if isinstance(self.time_shift, TemporalShift):  # shift only the kept frames, then cut
                patches, inside = gather_regions(self.time_shift.gather(x, index), local, halo=1)
            else:  # cut the regions straight from the input
                patches, inside = gather_regions(x, dest, halo=1)
            a = F.relu(self.bn1(self.conv1(patches)), inplace=True)
        a = a * inside  # beyond the image the dense conv2 reads zero padding
        a = F.relu(self.bn2(F.conv2d(a, self.conv2.weight, self.conv2.bias, 1, 0, 1, self.conv2.groups)), inplace=True)
        return self.bn3(self.conv3(a))

    def _conv1_on_frames(self, regions, frames, rh, rw, h, w) -> bool:
        return frames * h * w < regions * (rh + 2) * (rw + 2)

    def region_macs(self, regions, frames, rh, rw, h, w):
        c1, c2, c3 = (_macs_per_pixel(c) for c in (self.conv1, self.conv2, self.conv3))
        conv1_pixels = min(frames * h * w, regions * (rh + 2) * (rw + 2))
        return conv1_pixels * c1 + regions * rh * rw * (c2 + c3)

    def frame_macs(self, h, w):
        return h * w * sum(_macs_per_pixel(c) for c in (self.conv1, self.conv2, self.conv3))


def _macs_per_pixel(conv: nn.Conv2d) -> int:
    return conv.in_channels // conv.groups * conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]


def _init_resnet(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, Bottleneck) and m.conv1.groups == 1:
            nn.init.zeros_(m.bn3.weight)  # zero-init the last BN of each full-width residual
        if isinstance(m, (Navigation, SpatialNavigation)):
            m.reset_parameters()


class _ResNetBase(VideoModel):
    """Stem, per-frame head and classifier shared by AF-ResNet and the baselines."""

    STEM_STRIDE = 4   # 7x7/2 conv, 3x3/2 max pool

    def _build_stem(self, width: int) -> None:
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)

    def _build_head(self, features: int, dropout: float) -> None:
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(features, self.num_classes)

    def stem(self, x):
        return F.max_pool2d(F.relu(self.bn1(self.conv1(x)), inplace=True), 3, stride=2, padding=1)

    def forward_head(self, features):
        return self.fc(self.dropout(F.adaptive_avg_pool2d(features, 1).flatten(1)))

    def classifier(self) -> nn.Linear:
        return self.fc


class AFResNet(_ResNetBase):
    """AF-ResNet: AF modules in stages 1-3 (``layer1``-``layer3``), plain ``layer4``.

    Spatial navigation (paper §3.3, ``spatial=True``): each focal block also gets a
    :class:`SpatialNavigation` choosing regions of a ``region_grid x region_grid`` grid (an
    int, or one per AF stage) and computes only those regions of its kept frames.
    ``temporal_navigation``: ``"block"`` (a navigation module per focal block, as released)
    or ``"first"`` (one navigation module on the stem output whose mask every focal block
    uses, as the paper does with spatial navigation); default ``"first"`` when ``spatial``.
    """

    has_navigation = True
    AF_STRIDES = (2, 2, 1)   # stride of each AF stage (its fusion block)

    def __init__(self, layers: tuple[int, int, int, int], *, num_classes: int, num_frames: int,
                 widths: tuple[int, int, int, int] = (64, 128, 256, 512), shift: bool = False,
                 alpha: int = 2, focal_groups: int = 2, dropout: float = 0.5,
                 navigation_bias: tuple[float, float] = (1.0, 10.0), spatial: bool = False,
                 region_grid: int | tuple[int, int, int] = 7, temporal_navigation: str | None = None,
                 shared_navigation: bool = False):
        super().__init__(num_classes, num_frames)
        if min(layers[:3]) < 2:
            raise ValueError("an AF stage needs at least 2 blocks (one ample/focal pair and the fusion block), "
                             f"got {layers}")
        temporal_navigation = temporal_navigation or ("first" if spatial else "block")
        grids = (region_grid,) * 3 if isinstance(region_grid, int) else tuple(region_grid)
        self.shift = shift
        self.spatial = bool(spatial)
        self.region_selection = "navigation" if spatial else "all"
        self.region_grid = grids if spatial else None
        self.temporal_navigation = temporal_navigation
        t = num_frames
        self._build_stem(widths[0])
        if temporal_navigation == "first":
            self.navigation = Navigation(widths[0], t, navigation_bias, shared_navigation)
        in_ch = widths[0]
        for i, (blocks, stride) in enumerate(zip(layers[:3], self.AF_STRIDES)):
            out_ch = widths[i] * 4
            stage = self._af_stage(in_ch, out_ch, blocks, stride, t, shift, alpha, focal_groups, navigation_bias,
                                   per_block=temporal_navigation == "block", grid=grids[i] if spatial else None,
                                   shared_navigation=shared_navigation)
            setattr(self, f"layer{i + 1}", stage)
            in_ch = out_ch
        out_ch = widths[3] * 4
        self.layer4 = nn.ModuleList(
            Bottleneck(in_ch if j == 0 else out_ch, out_ch, t, stride=2 if j == 0 else 1, shift=shift)
            for j in range(layers[3]))
        self._build_head(out_ch, dropout)
        _init_resnet(self)

    @classmethod
    def focal_map_sizes(cls, input_size: int) -> list[int]:
        """Side of the focal maps of the three AF stages for ``input_size`` inputs (each stage
        runs at its input's resolution: the stem's, then halved by each stage's stride)."""
        sizes, stride = [], cls.STEM_STRIDE
        for s in cls.AF_STRIDES:
            sizes.append(-(-input_size // stride))
            stride *= s
        return sizes

    def model_args(self) -> dict:
        args = super().model_args()
        if self.spatial:
            args.update(spatial=True, region_grid=list(self.region_grid))
        if self.spatial or self.temporal_navigation != "block":
            args["temporal_navigation"] = self.temporal_navigation
        return args

    @staticmethod
    def _af_stage(in_ch, out_ch, blocks, stride, t, shift, alpha, groups, navigation_bias, per_block=True,
                  grid=None, shared_navigation=False) -> AFStage:
        n = blocks - 1
        thin = out_ch // alpha
        ample_in = [in_ch if j == 0 else thin for j in range(n)]
        navigation = [Navigation(c, t, navigation_bias, shared_navigation) for c in ample_in] if per_block else None
        spatial = None if grid is None else [SpatialNavigation(c, grid, init_bias=navigation_bias) for c in ample_in]
        ample = [Bottleneck(in_ch if j == 0 else thin, thin, t, stride=2 if j == 0 else 1, shift=shift,
                            last_relu=j < n - 1) for j in range(n)]
        focal = [Bottleneck(in_ch if j == 0 else out_ch, out_ch, t, groups=groups, shortcut="conv", shift=shift,
                            last_relu=j < n - 1) for j in range(n)]
        ample_proj = None
        if alpha != 1:
            ample_proj = nn.Sequential(nn.Conv2d(thin, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        return AFStage(navigation, ample, focal, FusionGate(out_ch, 16, bias=False),
                       Bottleneck(out_ch, out_ch, t, stride=stride, shift=shift), ample_proj, fusion_relu=True,
                       spatial=spatial)

    def forward_features(self, x, policy, execution):
        x = self.stem(x)
        keep = decide(self.navigation, x, policy, self.training) if self.temporal_navigation == "first" else None
        masks, regions = [], []
        for stage in (self.layer1, self.layer2, self.layer3):
            x, stage_masks, stage_regions = stage(x, policy, execution, point=len(masks), keep=keep)
            masks += stage_masks
            regions += stage_regions
        for block in self.layer4:
            x = block(x)
        return x, masks, regions


class ResNet(_ResNetBase):
    """TSN (``shift=False``) / TSM (``shift=True``) ResNet: torchvision's ResNet v1.5 run per
    frame, the temporal shift on the input of every block's first conv (residual unshifted)."""

    def __init__(self, layers: tuple[int, int, int, int], *, num_classes: int, num_frames: int,
                 widths: tuple[int, int, int, int] = (64, 128, 256, 512), shift: bool = False,
                 dropout: float = 0.5):
        super().__init__(num_classes, num_frames)
        self.shift = shift
        self._build_stem(widths[0])
        in_ch = widths[0]
        for i, (blocks, stride) in enumerate(zip(layers, (1, 2, 2, 2))):
            out_ch = widths[i] * 4
            stage = nn.ModuleList(
                Bottleneck(in_ch if j == 0 else out_ch, out_ch, num_frames, stride=stride if j == 0 else 1,
                           shortcut="conv", shift=shift)
                for j in range(blocks))
            setattr(self, f"layer{i + 1}", stage)
            in_ch = out_ch
        self._build_head(in_ch, dropout)
        _init_resnet(self)

    def forward_features(self, x, policy, execution):
        x = self.stem(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x)
        return x, [], []


class NavResNet(ResNet):
    """The single-branch ablation of Table 5: the navigation module inside a plain ResNet.

    Stages 1-3 put a navigation point before every block but the first (which changes
    resolution or width); a block computes only the frames its point keeps, a skipped frame
    passing ``residual + F(0)`` on, exactly as a focal block does. There is no ample branch,
    so a skipped frame's information is carried only by the residual path. Stage 4 is plain.
    """

    has_navigation = True

    def __init__(self, layers: tuple[int, int, int, int], *, num_classes: int, num_frames: int,
                 widths: tuple[int, int, int, int] = (64, 128, 256, 512), shift: bool = False,
                 dropout: float = 0.5, navigation_bias: tuple[float, float] = (1.0, 10.0)):
        super().__init__(layers, num_classes=num_classes, num_frames=num_frames, widths=widths, shift=shift,
                         dropout=dropout)
        self.navigation = nn.ModuleList(
            nn.ModuleList(Navigation(widths[i] * 4, num_frames, navigation_bias) for _ in range(layers[i] - 1))
            for i in range(3))

    def navigation_points(self):
        """One point per navigation module (``navigation.<stage>.<block>``), network order."""
        return [NavigationPoint(f"navigation.{i}.{j}") for i, points in enumerate(self.navigation)
                for j in range(len(points))]

    def forward_features(self, x, policy, execution):
        x = self.stem(x)
        masks = []
        for stage, points in zip((self.layer1, self.layer2, self.layer3), self.navigation):
            x = stage[0](x)
            for block, navigation in zip(stage[1:], points):
                keep = decide(navigation, x, policy, self.training, point=len(masks))
                masks.append(keep)
                sizes = policy.sizes([keep], [None], self.training)[0] if execution.sparse else None
                x = block(x, keep, sparse=execution.sparse, dense_above=execution.dense_above, sizes=sizes)
        for block in self.layer4:
            x = block(x)
        return x, masks, []
