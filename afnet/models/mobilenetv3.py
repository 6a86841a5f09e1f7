"""AF-MobileNetV3 and the TSN/TSM MobileNetV3-Large baselines.

AF-MobileNetV3 applies the AF pattern to two stages of MobileNetV3-Large (inverted residuals
with squeeze-excite and h-swish). It differs from AF-ResNet: the ample branch keeps full
channels (no projection), the fusion has no ReLU, and the focal blocks use groups=2 on the
pointwise convs with a grouped 1x1 conv+BN shortcut. In the authors' release the temporal
shift is always on in this model; ``shift=True`` is therefore its default here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from afnet.models.base import VideoModel
from afnet.models.layers import AFStage, FusionGate, Navigation, ResidualBlock, TemporalShift


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channel counts to a multiple of 8 (MobileNet convention)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class IR:
    """One inverted-residual row, the columns of torchvision's ``_mobilenet_v3_conf``:
    depthwise kernel, expansion ratio, output channels, squeeze-excite, activation
    (``"RE"`` ReLU, ``"HS"`` h-swish), stride."""

    kernel: int
    expand: float
    out: int
    se: bool
    act: str
    stride: int


# MobileNetV3-Large, read off the authors' release and checkpoint layout.
AF_MBV3_LARGE = {
    "stage0": (IR(3, 1, 16, False, "RE", 1),),
    "stage1": (IR(3, 4, 24, False, "RE", 2), IR(3, 3, 24, False, "RE", 2)),
    "stage2_ample": (IR(5, 3, 40, True, "RE", 2), IR(5, 3, 40, True, "RE", 1)),
    "stage2_focal": (IR(5, 3, 40, True, "RE", 1), IR(5, 3, 40, True, "RE", 1)),
    "stage2_fusion": (IR(5, 3, 40, True, "RE", 2),),
    "stage3_ample": (IR(3, 6, 80, False, "HS", 2), IR(3, 2.5, 80, False, "HS", 1), IR(3, 2.3, 80, False, "HS", 1)),
    "stage3_focal": (IR(3, 6, 80, False, "HS", 1), IR(3, 2.5, 80, False, "HS", 1), IR(3, 2.3, 80, False, "HS", 1)),
    "stage3_fusion": (IR(3, 2.3, 80, False, "HS", 1),),
    "stage4": (IR(3, 6, 112, True, "HS", 1), IR(3, 6, 112, True, "HS", 1)),
    "stage5": (IR(5, 6, 160, True, "HS", 2), IR(5, 6, 160, True, "HS", 1), IR(5, 6, 160, True, "HS", 1)),
}

# Standard MobileNetV3-Large (Howard et al. 2019, Table 1) for the baselines.
MBV3_LARGE = (
    IR(3, 1, 16, False, "RE", 1), IR(3, 4, 24, False, "RE", 2), IR(3, 3, 24, False, "RE", 1),
    IR(5, 3, 40, True, "RE", 2), IR(5, 3, 40, True, "RE", 1), IR(5, 3, 40, True, "RE", 1),
    IR(3, 6, 80, False, "HS", 2), IR(3, 2.5, 80, False, "HS", 1), IR(3, 2.3, 80, False, "HS", 1),
    IR(3, 2.3, 80, False, "HS", 1), IR(3, 6, 112, True, "HS", 1), IR(3, 6, 112, True, "HS", 1),
    IR(5, 6, 160, True, "HS", 2), IR(5, 6, 160, True, "HS", 1), IR(5, 6, 160, True, "HS", 1))
ACTIVATIONS = {"RE": nn.ReLU, "HS": nn.Hardswish}


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = make_divisible(channels // reduction, 8)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels),
                                nn.Hardsigmoid())

    def forward(self, x):
        b, c = x.shape[:2]
        return x * self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)).view(b, c, 1, 1)


class InvertedResidual(ResidualBlock):
    """[1x1 expand] -> kxk depthwise (stride) -> [SE] -> 1x1 project, as in the authors'
    release: with no expansion (inp == hidden) the SE sits after the depthwise conv's
    activation; otherwise after its BN, followed by the activation. ``focal=True`` groups
    the pointwise convs by 2 and gives a non-identity block a grouped 1x1 conv+BN shortcut;
    otherwise a non-identity block has no residual."""

    def __init__(self, in_ch: int, row: IR, num_frames: int, *, shift: bool = True, focal: bool = False):
        super().__init__()
        stride = row.stride
        hidden = make_divisible(in_ch * row.expand, 8)
        out_ch = make_divisible(row.out, 8)
        groups = 2 if focal else 1
        self.expand = in_ch != hidden
        act = ACTIVATIONS[row.act]
        pad = (row.kernel - 1) // 2
        if self.expand:
            self.conv1 = nn.Conv2d(in_ch, hidden, 1, bias=False, groups=groups)
            self.bn1 = nn.BatchNorm2d(hidden)
            self.conv2 = nn.Conv2d(hidden, hidden, row.kernel, stride, pad, groups=hidden, bias=False)
            self.bn2 = nn.BatchNorm2d(hidden)
            self.conv3 = nn.Conv2d(hidden, out_ch, 1, bias=False, groups=groups)
            self.bn3 = nn.BatchNorm2d(out_ch)
            self.act2 = act()
        else:
            self.conv1 = nn.Conv2d(hidden, hidden, row.kernel, stride, pad, groups=hidden, bias=False)
            self.bn1 = nn.BatchNorm2d(hidden)
            self.conv2 = nn.Conv2d(hidden, out_ch, 1, bias=False, groups=groups)
            self.bn2 = nn.BatchNorm2d(out_ch)
        self.act1 = act()
        self.se = SqueezeExcite(hidden) if row.se else nn.Identity()
        if stride == 1 and in_ch == out_ch:
            self.shortcut = nn.Identity()
        elif focal:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False, groups=2),
                                          nn.BatchNorm2d(out_ch))
        else:
            self.shortcut = None
        self.time_shift = TemporalShift(num_frames) if shift else nn.Identity()
        self.act = nn.Identity()
        self.out_channels = out_ch

    def body(self, x):
        if self.expand:
            x = self.act1(self.bn1(self.conv1(x)))
            x = self.act2(self.se(self.bn2(self.conv2(x))))
            return self.bn3(self.conv3(x))
        x = self.se(self.act1(self.bn1(self.conv1(x))))
        return self.bn2(self.conv2(x))


def _blocks(in_ch: int, rows, t: int, shift: bool, focal: bool = False):
    blocks = []
    for row in rows:
        block = InvertedResidual(in_ch, row, t, shift=shift, focal=focal)
        blocks.append(block)
        in_ch = block.out_channels
    return blocks, in_ch


def _init_mobilenet(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, Navigation):
            m.reset_parameters()


class _MobileNetBase(VideoModel):
    """Stem, last 1x1 conv, per-frame head and classifier shared by AF-MobileNetV3 and the baselines."""

    def _build_stem(self) -> None:
        self.conv = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.act = nn.Hardswish()

    def _build_head(self, in_ch: int, dropout: float) -> None:
        last = make_divisible(in_ch * 6, 8)
        self.conv_last = nn.Conv2d(in_ch, last, 1, bias=False)
        self.bn_last = nn.BatchNorm2d(last)
        self.fc = nn.Sequential(nn.Linear(last, 1280), nn.Hardswish(), nn.Dropout(dropout),
                                nn.Linear(1280, self.num_classes))

    def stem(self, x):
        return self.act(self.bn(self.conv(x)))

    def forward_head(self, features):
        x = self.act(self.bn_last(self.conv_last(features)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def classifier(self) -> nn.Linear:
        return self.fc[3]


class AFMobileNetV3(_MobileNetBase):
    """AF-MobileNetV3-Large: AF modules in ``stage2`` and ``stage3`` (5 navigation points)."""

    has_navigation = True

    def __init__(self, *, num_classes: int, num_frames: int, shift: bool = True, dropout: float = 0.5,
                 navigation_bias: tuple[float, float] = (1.0, 10.0), config: dict = AF_MBV3_LARGE):
        super().__init__(num_classes, num_frames)
        self.shift = shift
        t = num_frames
        self._build_stem()
        stage0, ch = _blocks(16, config["stage0"], t, shift)
        self.stage0 = nn.Sequential(*stage0)   # the first inverted residual (16 channels)
        stage1, ch = _blocks(ch, config["stage1"], t, shift)
        self.stage1 = nn.Sequential(*stage1)
        self.stage2, ch = self._af_stage(ch, config, "stage2", t, shift, navigation_bias)
        self.stage3, ch = self._af_stage(ch, config, "stage3", t, shift, navigation_bias)
        stage4, ch = _blocks(ch, config["stage4"], t, shift)
        self.stage4 = nn.Sequential(*stage4)
        stage5, ch = _blocks(ch, config["stage5"], t, shift)
        self.stage5 = nn.Sequential(*stage5)
        self._build_head(ch, dropout)
        _init_mobilenet(self)

    @staticmethod
    def _af_stage(in_ch, config, name, t, shift, navigation_bias):
        ample, ample_ch = _blocks(in_ch, config[f"{name}_ample"], t, shift)
        navigation_ch = [in_ch] + [b.out_channels for b in ample[:-1]]
        focal, focal_ch = _blocks(in_ch, config[f"{name}_focal"], t, shift, focal=True)
        assert ample_ch == focal_ch, "ample and focal branches must end with the same channels"
        (fusion_block,), out_ch = _blocks(focal_ch, config[f"{name}_fusion"], t, shift)
        stage = AFStage([Navigation(c, t, navigation_bias) for c in navigation_ch], ample, focal,
                        FusionGate(focal_ch, 16, bias=True), fusion_block, ample_proj=None, fusion_relu=False)
        return stage, out_ch

    def forward_features(self, x, policy, execution):
        x = self.stage1(self.stage0(self.stem(x)))
        x, masks, _ = self.stage2(x, policy, execution)
        x, stage3_masks, _ = self.stage3(x, policy, execution, point=len(masks))
        return self.stage5(self.stage4(x)), masks + stage3_masks, []


class MobileNetV3(_MobileNetBase):
    """TSN (``shift=False``) / TSM (``shift=True``) MobileNetV3-Large; the shift runs in every
    block, as in AF-MobileNetV3."""

    def __init__(self, *, num_classes: int, num_frames: int, shift: bool = False, dropout: float = 0.5,
                 rows=MBV3_LARGE):
        super().__init__(num_classes, num_frames)
        self.shift = shift
        self._build_stem()
        blocks, ch = _blocks(16, rows, num_frames, shift)
        self.features = nn.Sequential(*blocks)
        self._build_head(ch, dropout)
        _init_mobilenet(self)

    def forward_features(self, x, policy, execution):
        return self.features(self.stem(x)), [], []
