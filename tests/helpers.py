"""Helpers shared by the tests, imported as ``from tests.helpers import ...`` (``tests`` is a
package: pytest puts the repository root on ``sys.path``). Fixtures stay in ``conftest.py``.

Nothing here imports PyAV at import time: model-only tests run without the video extra."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC_CONFIG = REPO / "configs" / "synthetic_afnet.yaml"
# Facts about the authors' released checkpoints, carried inside the repository (tests/data/README.md).
LAYOUTS = os.path.join(os.path.dirname(__file__), "data", "official_checkpoint_layouts.json")


# ----------------------------------------------------------------------------- models
def randomize(model: torch.nn.Module, seed: int = 0, nav_std: float = 3.0) -> torch.nn.Module:
    """Give BN statistics and navigation weights non-trivial values, so that eval-mode
    navigation keeps some frames and skips others, and F(0) carries real BN shifts."""
    from afnet.models.layers import Navigation, SpatialNavigation

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
        for m in model.modules():
            if isinstance(m, (Navigation, SpatialNavigation)):
                m.conv2.weight.copy_(torch.randn(m.conv2.weight.shape, generator=g) * nav_std)
                m.conv2.bias.zero_()
    return model


def synthetic_state(layout: dict, seed: int = 0) -> dict:
    """Tensors of the documented shapes with values that make BN and navigation non-trivial."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("running_var"):
            v = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean"):
            v = torch.randn(shape, generator=g) * 0.1
        elif key.endswith("conv_gs.bias"):
            v = torch.randn(shape, generator=g)
        elif len(shape) == 1:
            v = torch.randn(shape, generator=g) * 0.1 + (1.0 if key.endswith("weight") else 0.0)
        else:
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            v = torch.randn(shape, generator=g) * fan_in ** -0.5
        state[key] = v
    return state


def balanced(model, x, seed=0):
    """Random BN statistics and navigation weights (``randomize``), then the keep biases
    set on ``x`` so that choices are mixed: random weights alone tend to select everything
    or nothing. Temporal navigation: frame t's bias is centred on its median logit gap and
    pushed to keep even frames, skip odd ones (the gap may not vary at all between videos);
    spatial navigation: about half of the regions above the median gap."""
    from afnet.models.layers import Navigation, SpatialNavigation

    randomize(model, seed=seed, nav_std=4.0).eval()
    for _ in range(2):
        for nav in [m for m in model.modules() if isinstance(m, (Navigation, SpatialNavigation))]:
            seen = []
            handle = nav.register_forward_hook(lambda m, inp, out: seen.append(out[..., 1] - out[..., 0]))
            with torch.no_grad():
                model(x)
            handle.remove()
            gap = seen[0]
            with torch.no_grad():
                if isinstance(nav, Navigation):  # gap (B, T)
                    push = torch.tensor([0.5 if t % 2 == 0 else -0.5 for t in range(gap.shape[1])])
                    nav.conv2.bias[1::2] += push - gap.median(dim=0).values
                else:
                    nav.conv2.bias[1:] -= gap.median() + 1e-3
    return model


# ----------------------------------------------------------------------------- videos
def _level(i: int) -> int:
    """Grey level that identifies frame ``i`` (modulo 47) after lossy coding (steps of 5)."""
    return 16 + 5 * (i % 47)


def frame_pattern(i: int, height: int, width: int) -> np.ndarray:
    """Frame ``i``: uniform level ``_level(i)`` with a white top-left quadrant marker."""
    frame = np.full((height, width, 3), _level(i), dtype=np.uint8)
    frame[: height // 2, : width // 2] = 255
    return frame


def write_video(path, num_frames: int = 24, *, codec: str = "libx264",
                pix_fmt: str = "yuv420p", size=(48, 64), rate: int = 25, gop: int | None = None,
                rotation: int | None = None, pts=None, fmt: str | None = None,
                options: dict | None = None) -> str:
    """Write a test video whose frame ``i`` is :func:`frame_pattern` ``(i)``.

    ``pts``: explicit presentation timestamps (time base 1/1000) for variable
    frame rate; ``rotation``: display rotation (degrees, counter-clockwise).
    """
    import av  # the video extra: only the tests that write videos need it

    height, width = size
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        opts = dict(options or {})
        if gop:
            stream.codec_context.gop_size = gop
            if codec == "libx264":
                opts.update({"keyint_min": str(gop), "sc_threshold": "0"})
        stream.options = opts
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, height, width), format="rgb24")
            if pts is not None:
                frame.pts = int(pts[i])
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


# Containers and codecs FFmpeg demuxes beyond mp4/mkv/webm/avi, each written by PyAV here:
# (file name, encoder, muxer (None: from the extension), pixel format, (height, width)).
CONTAINERS = [
    ("msmpeg4v3.asf", "msmpeg4", None, "yuv420p", (48, 64)),
    ("msmpeg4v2.wmv", "msmpeg4v2", "asf", "yuv420p", (48, 64)),
    ("wmv1.asf", "wmv1", None, "yuv420p", (48, 64)),
    ("wmv2.wmv", "wmv2", "asf", "yuv420p", (48, 64)),
    ("flv1.flv", "flv", None, "yuv420p", (48, 64)),
    ("flv1.swf", "flv", "swf", "yuv420p", (48, 64)),
    ("mpeg1_ps.mpg", "mpeg1video", "mpeg", "yuv420p", (48, 64)),
    ("mpeg2_ps.mpeg", "mpeg2video", "mpeg", "yuv420p", (48, 64)),
    ("mpeg2_dvd.vob", "mpeg2video", "vob", "yuv420p", (48, 64)),
    ("mpeg2.ts", "mpeg2video", "mpegts", "yuv420p", (48, 64)),
    ("mpeg1_es.m1v", "mpeg1video", "mpeg1video", "yuv420p", (48, 64)),
    ("mpeg2_es.m2v", "mpeg2video", "mpeg2video", "yuv420p", (48, 64)),
    ("h264_es.h264", "libx264", "h264", "yuv420p", (48, 64)),
    ("mpeg4_es.m4v", "mpeg4", "m4v", "yuv420p", (48, 64)),
    ("anim.gif", "gif", None, "rgb8", (48, 64)),
    ("theora.ogv", "libtheora", "ogg", "yuv420p", (48, 64)),
    ("vp8.ogv", "libvpx", "ogg", "yuv420p", (48, 64)),
    ("rv10.rm", "rv10", "rm", "yuv420p", (48, 64)),
    ("rv20.rm", "rv20", "rm", "yuv420p", (48, 64)),
    ("h263.3gp", "h263", "3gp", "yuv420p", (96, 128)),
    ("mpeg4.mov", "mpeg4", None, "yuv420p", (48, 64)),
    ("ffv1.nut", "ffv1", None, "yuv420p", (48, 64)),
    ("raw.y4m", "rawvideo", None, "yuv420p", (48, 64)),
]


def write_container(folder, name: str, num_frames: int = 30, gop: int = 6) -> str:
    """Write the :data:`CONTAINERS` entry ``name`` (frames :func:`frame_pattern`) into
    ``folder``; skips the test with the reason when this FFmpeg cannot write it."""
    import av

    _, codec, fmt, pix_fmt, size = next(c for c in CONTAINERS if c[0] == name)
    if codec not in av.codecs_available:
        pytest.skip(f"the FFmpeg bundled with PyAV {av.__version__} has no {codec} encoder")
    options = {"deadline": "realtime", "cpu-used": "8"} if "vpx" in codec else {}
    if codec not in ("gif", "ffv1", "rawvideo", "libx264"):
        options["b"] = "2M"  # grey levels of the pattern survive
    path = os.path.join(str(folder), name)
    try:
        return write_video(path, num_frames, codec=codec, fmt=fmt, pix_fmt=pix_fmt, size=size,
                           gop=gop, options=options)
    except (av.FFmpegError, ValueError) as exc:
        pytest.skip(f"this FFmpeg cannot write {name} ({exc})")


def frame_ids(clip) -> list[int]:
    """Recover frame numbers (modulo 47) from a decoded uint8 (N, 3, H, W) clip of the pattern."""
    h, w = clip.shape[2:]
    levels = clip[:, :, h * 3 // 4, w * 3 // 4].float().mean(dim=1)
    return [int(round((float(v) - 16) / 5)) for v in levels]


# ----------------------------------------------------------------------------- engine runs
def tiny_synthetic(base: Path, num_train: int = 48, num_val: int = 16) -> Path:
    """32x32, 8-frame synthetic frame folders, written once under ``base``."""
    from afnet.data import make_synthetic

    root = base / f"engine_synth_{num_train}_{num_val}"
    if not (root / "synthetic.json").is_file():
        make_synthetic(root, num_train=num_train, num_val=num_val, num_frames=8, size=32, videos=False)
    return root


def tiny_overrides(root: Path, run_dir: Path, **extra) -> list[str]:
    """Overrides of configs/synthetic_afnet.yaml for a run of a few seconds on :func:`tiny_synthetic`
    data. The engine tests keep their own settings where the shipped recipe (the evidence task's
    whole 32-pixel frames, bias (0, 1), lambda 16, cosine) differs: the temporal task's frames
    cropped to 28 at three scales, the released navigation bias, the paper's lambda, a step schedule."""
    items = {"data.root": root, "run_dir": run_dir, "data.batch_size": 8, "data.num_workers": 0,
             "optim.epochs": 2, "trainer.progress_bar": False, "trainer.log_every_n_steps": 1,
             "data.input_size": 28, "data.scale_size": 32, "data.scales": "[1.0, 0.875, 0.75]",
             "model.navigation_bias": "[1.0, 10.0]", "objective.ratio_weight": 0.5,
             "objective.ratio_tolerance": "null", "optim.schedule": "step", "optim.lr_steps": "[4]"}
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]
