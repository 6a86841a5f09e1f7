"""Shared fixtures and helpers. Data-pipeline fixtures are prefixed ``data_``; the helpers
behind them are private to this file."""
from __future__ import annotations

import os
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(min(2, torch.get_num_threads()))



# torch's global generator (it draws the weights create_model initialises) seeded before each
# test module's fixtures and before each test: a test sees the same weights alone, with -k or
# in the whole suite, whatever ran before it.
@pytest.fixture(autouse=True, scope="module")
def _seed_module():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _seed_test():
    torch.manual_seed(0)


# Facts about the authors' released checkpoints, carried inside the repository (tests/data/README.md).
LAYOUTS = os.path.join(os.path.dirname(__file__), "data", "official_checkpoint_layouts.json")


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


@pytest.fixture
def layouts():
    import json

    with open(LAYOUTS) as f:
        return json.load(f)["layouts"]



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


@pytest.fixture
def data_video_writer():
    """``write(path, num_frames, codec=..., pix_fmt=..., gop=..., rotation=..., pts=...)``."""
    return write_video


@pytest.fixture
def data_frame_pattern():
    """``pattern(i, height, width)``: the RGB frame ``i`` that the video writer writes."""
    return frame_pattern


@pytest.fixture
def data_frame_ids():
    """``ids(clip)``: frame numbers (modulo 47) of a decoded clip of the writer's pattern."""
    return frame_ids


@pytest.fixture(scope="session")
def data_synthetic(tmp_path_factory):
    """A tiny synthetic dataset (frames + mp4) shared by the data tests."""
    from afnet.data.synthetic import make_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    return make_synthetic(out, num_train=16, num_val=8, num_classes=8, num_frames=12, size=32,
                          seed=3)
