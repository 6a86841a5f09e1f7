"""An independent, functional re-statement of the authors' AF-ResNet forward pass.

It reads the authors' state-dict names directly (``module.base_model.layer1.list_gen.0...``)
and follows their code's order of operations: masked focal blocks, temporal shift before
the mask, nearest upsampling, theta fusion with ReLU, per-frame ``new_fc`` and average.
Selection is the noise-free rule (keep-logit > skip-logit). Nothing here imports
``afnet.models``, so agreement with it tests the package's layer names and wiring.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        False, 0.0, 1e-5)


def _shift(x, t):
    nt, c, h, w = x.shape
    x = x.view(nt // t, t, c, h, w)
    fold = c // 8
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


def _bottleneck(x, sd, p, t, shift, stride=1, mask=None, last_relu=True):
    """One ``Bottleneck_ample`` / ``Bottleneck_focal`` of the release. A strided block's
    shortcut is a parameter-free 3x3/2 average pool, then a 1x1 conv+BN if present."""
    w1 = sd[p + ".conv1.weight"]
    groups = x.shape[1] // w1.shape[1]
    residual = x
    if stride == 2:
        residual = F.avg_pool2d(x, 3, 2, 1)
        if (p + ".downsample.1.weight") in sd:
            residual = _bn(F.conv2d(residual, sd[p + ".downsample.1.weight"]), sd, p + ".downsample.2")
    elif (p + ".downsample.0.weight") in sd:  # focal: conv+BN only
        residual = _bn(F.conv2d(x, sd[p + ".downsample.0.weight"]), sd, p + ".downsample.1")
    out = _shift(x, t) if shift else x
    if mask is not None:
        out = out * mask
    out = F.relu(_bn(F.conv2d(out, w1, groups=groups), sd, p + ".bn1"))
    w2 = sd[p + ".conv2.weight"]
    out = F.relu(_bn(F.conv2d(out, w2, stride=stride, padding=1, groups=out.shape[1] // w2.shape[1]), sd, p + ".bn2"))
    w3 = sd[p + ".conv3.weight"]
    out = _bn(F.conv2d(out, w3, groups=out.shape[1] // w3.shape[1]), sd, p + ".bn3") + residual
    return F.relu(out) if last_relu else out


def _navigation(x, sd, p, t):
    g = F.adaptive_avg_pool2d(x, 1)
    g = F.relu(_bn(F.conv2d(g, sd[p + ".conv_pool.weight"]), sd, p + ".bn"))
    g = F.conv2d(g.view(-1, 2 * t, 1, 1), sd[p + ".conv_gs.weight"], sd[p + ".conv_gs.bias"], groups=t)
    g = g.view(-1, t, 2)
    keep = (g[..., 1] > g[..., 0]).float()
    return keep.view(-1, 1, 1, 1), keep


def _count(sd, p):
    idx = {int(k[len(p):].split(".")[0]) for k in sd if k.startswith(p)}
    return max(idx) + 1


def af_resnet_forward(sd: dict, video: torch.Tensor, shift: bool):
    """Logits (B, K) and the keep-masks (B, T) of the authors' AF-ResNet video model."""
    b, t = video.shape[:2]
    sd = {k[len("module."):]: v for k, v in sd.items()}
    x = video.reshape(b * t, *video.shape[2:])
    x = F.relu(_bn(F.conv2d(x, sd["base_model.conv1.weight"], stride=2, padding=3), sd, "base_model.bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    masks = []
    for layer, fusion_stride in (("layer1", 2), ("layer2", 2), ("layer3", 1)):
        p = f"base_model.{layer}"
        n = _count(sd, p + ".base_module.")
        little, big = x, x
        for i in range(n):
            mask, keep = _navigation(little, sd, f"{p}.list_gen.{i}", t)
            masks.append(keep)
            last = i == n - 1
            little = _bottleneck(little, sd, f"{p}.base_module.{i}", t, shift, stride=2 if i == 0 else 1,
                                 last_relu=not last)
            big = _bottleneck(big, sd, f"{p}.refine_module.{i}", t, shift, mask=mask, last_relu=not last)
        little = _bn(F.conv2d(little, sd[p + ".base_transform.0.weight"]), sd, p + ".base_transform.1")
        little = F.interpolate(little, size=big.shape[-2:])
        y = F.adaptive_avg_pool2d(little + big, 1).flatten(1)
        hidden = F.relu(F.linear(y, sd[p + ".att_gen.fc.0.weight"]))
        att = torch.sigmoid(F.linear(hidden, sd[p + ".att_gen.fc.2.weight"]))
        att = att[:, :, None, None]
        x = F.relu(att * little + (1 - att) * big)
        x = _bottleneck(x, sd, f"{p}.fusion.0", t, shift, stride=fusion_stride)
    for i in range(_count(sd, "base_model.layer4.")):
        x = _bottleneck(x, sd, f"base_model.layer4.{i}", t, shift, stride=2 if i == 0 else 1)
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    logits = F.linear(x, sd["new_fc.weight"], sd["new_fc.bias"])
    return logits.view(b, t, -1).mean(1), masks


# ----------------------------------------------------------------------------- AF-MobileNetV3
# (stride, h-swish) per block, from the release's configuration table; kernel sizes, channel
# counts and SE come from the tensors themselves.
_MBV3_ROWS = {
    "features_head": [(1, False)],
    "features_stage1": [(2, False), (2, False)],
    "features_stage2_base": [(2, False), (1, False)],
    "features_stage2_refine": [(1, False), (1, False)],
    "features_stage2_fuse": [(2, False)],
    "features_stage3_base": [(2, True), (1, True), (1, True)],
    "features_stage3_refine": [(1, True), (1, True), (1, True)],
    "features_stage3_fuse": [(1, True)],
    "features_stage4": [(1, True), (1, True)],
    "features_stage5": [(2, True), (1, True), (1, True)],
}


def _hswish(x):
    return x * F.relu6(x + 3) / 6


def _ir(x, sd, p, t, stride, hs, mask=None):
    """``InvertedResidual_ample`` (mask None) / ``InvertedResidual_focal`` of the release."""
    act = _hswish if hs else F.relu
    inp = x.shape[1]

    def conv(y, name, s=1):
        w = sd[f"{p}.{name}.weight"]
        return F.conv2d(y, w, stride=s, padding=(w.shape[-1] - 1) // 2, groups=y.shape[1] // w.shape[1])

    def se(y):
        if f"{p}.se.fc.0.weight" not in sd:
            return y
        z = F.adaptive_avg_pool2d(y, 1).flatten(1)
        z = F.relu(F.linear(z, sd[f"{p}.se.fc.0.weight"], sd[f"{p}.se.fc.0.bias"]))
        z = F.relu6(F.linear(z, sd[f"{p}.se.fc.2.weight"], sd[f"{p}.se.fc.2.bias"]) + 3) / 6
        return y * z[:, :, None, None]

    out = _shift(x, t)
    if mask is not None:
        out = out * mask
    if f"{p}.conv3.weight" in sd:  # expansion
        out = act(_bn(conv(out, "conv1"), sd, p + ".bn1"))
        out = act(se(_bn(conv(out, "conv2", stride), sd, p + ".bn2")))
        out = _bn(conv(out, "conv3"), sd, p + ".bn3")
    else:
        out = se(act(_bn(conv(out, "conv1", stride), sd, p + ".bn1")))
        out = _bn(conv(out, "conv2"), sd, p + ".bn2")
    identity = stride == 1 and inp == out.shape[1]
    if identity:
        return out + x
    if f"{p}.res_connect.0.weight" in sd:
        w = sd[f"{p}.res_connect.0.weight"]
        return out + _bn(F.conv2d(x, w, stride=stride, groups=inp // w.shape[1]), sd, p + ".res_connect.1")
    return out


def af_mobilenetv3_forward(sd: dict, video: torch.Tensor):
    """Logits (B, K) and keep-masks of the authors' AF-MobileNetV3 video model (shift always on)."""
    b, t = video.shape[:2]
    sd = {k[len("module.base_model."):]: v for k, v in sd.items()}
    x = video.reshape(b * t, *video.shape[2:])
    x = _hswish(_bn(F.conv2d(x, sd["conv.weight"], stride=2, padding=1), sd, "bn"))
    for name in ("features_head", "features_stage1"):
        for i, (s, hs) in enumerate(_MBV3_ROWS[name]):
            x = _ir(x, sd, f"{name}.{i}", t, s, hs)
    masks = []
    for stage in (2, 3):
        base, refine = x, x
        for i, ((sb, hs), (sr, _)) in enumerate(zip(_MBV3_ROWS[f"features_stage{stage}_base"],
                                                    _MBV3_ROWS[f"features_stage{stage}_refine"])):
            mask, keep = _navigation(base, sd, f"list_gen{stage}.{i}", t)
            masks.append(keep)
            base = _ir(base, sd, f"features_stage{stage}_base.{i}", t, sb, hs)
            refine = _ir(refine, sd, f"features_stage{stage}_refine.{i}", t, sr, hs, mask=mask)
        base = F.interpolate(base, size=refine.shape[-2:])
        y = F.adaptive_avg_pool2d(base + refine, 1).flatten(1)
        g = f"att_gen{stage}.fc"
        att = torch.sigmoid(F.linear(F.relu(F.linear(y, sd[g + ".0.weight"], sd[g + ".0.bias"])),
                                     sd[g + ".2.weight"], sd[g + ".2.bias"]))[:, :, None, None]
        (s, hs), = _MBV3_ROWS[f"features_stage{stage}_fuse"]
        x = _ir(att * base + (1 - att) * refine, sd, f"features_stage{stage}_fuse.0", t, s, hs)
    for name in ("features_stage4", "features_stage5"):
        for i, (s, hs) in enumerate(_MBV3_ROWS[name]):
            x = _ir(x, sd, f"{name}.{i}", t, s, hs)
    x = _hswish(_bn(F.conv2d(x, sd["conv_last.weight"]), sd, "bn_last"))
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    x = _hswish(F.linear(x, sd["fc.0.weight"], sd["fc.0.bias"]))
    logits = F.linear(x, sd["fc.3.weight"], sd["fc.3.bias"])
    return logits.view(b, t, -1).mean(1), masks
