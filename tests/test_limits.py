"""Decode limits checked from headers before decoding, and files that are not videos refused
(afnet/data/limits.py), through the readers, the dataset and ``afnet predict`` / ``batch-predict``."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

import afnet
from afnet.cli import main
from afnet.data.decoding import FrameFolderReader, PyAVReader, decode_image, open_reader
from afnet.data.limits import (
    DecodeLimits,
    LimitExceeded,
    NotAVideo,
    check_container,
    image_size,
    looks_like_list_file,
)
from afnet.data.synthetic import synthetic_dataset
from tests.helpers import REPO, randomize, write_video

T, K = 8, 4


def _png_header(path, width: int, height: int) -> str:
    """A PNG whose header claims ``width x height`` and whose data is a few bytes: decoding it
    would allocate the claimed size, reading its header costs nothing."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return str(path)


def _jpeg(path, width: int, height: int) -> str:
    import av

    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = width, height, "yuvj420p", 1
    frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24").reformat(
        format="yuvj420p")
    path.write_bytes(b"".join(bytes(p) for p in ctx.encode(frame)))
    return str(path)


def test_image_headers_give_the_size_without_decoding(tmp_path):
    assert image_size(_png_header(tmp_path / "a.png", 100000, 70000)) == (100000, 70000)
    assert image_size(_jpeg(tmp_path / "b.jpg", 48, 32)) == (48, 32)
    (tmp_path / "c.bmp").write_bytes(b"BM" + b"\0" * 16 + struct.pack("<ii", 640, -480) + b"\0" * 8)
    assert image_size(str(tmp_path / "c.bmp")) == (640, 480)
    (tmp_path / "d.jpg").write_bytes(b"\xff\xd8\xff")
    assert image_size(str(tmp_path / "d.jpg")) is None


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    bomb = _png_header(tmp_path / "bomb.png", 100000, 100000)
    start = time.perf_counter()
    with pytest.raises(LimitExceeded, match=r"bomb.png: frame of 100000x100000 = 10000000000 pixels is over the "
                                            r"limit of 16777216 pixels per frame \(--max-frame-pixels"):
        decode_image(bomb)
    assert time.perf_counter() - start < 1.0
    small = _jpeg(tmp_path / "s.jpg", 48, 32)
    assert decode_image(small).shape == (32, 48, 3)
    with pytest.raises(LimitExceeded, match="s.jpg: frame of 48x32"):
        decode_image(small, limits=DecodeLimits(max_frame_pixels=1000))


def test_frame_folder_limits(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        _jpeg(folder / f"{i + 1:05d}.jpg", 48, 32)
    with pytest.raises(LimitExceeded, match=r"frames: 3 frames is over the limit of 2 frames per video"):
        FrameFolderReader(str(folder), limits=DecodeLimits(max_frames=2))
    reader = FrameFolderReader(str(folder), limits=DecodeLimits(max_frame_pixels=48 * 32 - 1))
    with pytest.raises(LimitExceeded, match=r"00001.jpg: frame of 48x32"):
        reader.get_frames([0])


def test_video_limits_from_the_stream_header(tmp_path):
    video = write_video(tmp_path / "v.mp4", 30, size=(48, 64), rate=10)
    assert len(PyAVReader(video)) == 30
    for limits, words in ((DecodeLimits(max_frame_pixels=48 * 64 - 1), r"v.mp4: frame of 64x48 = 3072 pixels"),
                          (DecodeLimits(max_frames=29), r"v.mp4: 30 frames is over the limit of 29 frames"),
                          (DecodeLimits(max_seconds=2), r"v.mp4: 3 s long is over the limit of 2 s per video")):
        with pytest.raises(LimitExceeded, match=words):
            open_reader(video, limits=limits)
    no_limit = DecodeLimits.of(0, 0, 0)
    assert no_limit == DecodeLimits(None, None, None)
    assert len(open_reader(video, limits=no_limit)) == 30
    with pytest.raises(ValueError, match=r"max_frames=-1: expected a number >= 0"):
        DecodeLimits.of(max_frames=-1)


def test_text_demuxers_and_pictureless_streams_are_not_videos(tmp_path):
    (tmp_path / "list.txt").write_text("clips/a.mp4 30 2\nclips/b.mp4 12 0\n")
    codec = SimpleNamespace(name="ansi", width=640, height=400)
    tty = SimpleNamespace(format=SimpleNamespace(name="tty"), duration=None)
    stream = SimpleNamespace(codec_context=codec, frames=0, duration=None, time_base=None)
    with pytest.raises(NotAVideo, match=r"list.txt: not a video \(text, which FFmpeg reads as a picture with its "
                                        r"tty demuxer\); it looks like a list of videos: did you mean --list\?"):
        check_container(str(tmp_path / "list.txt"), tty, stream, DecodeLimits())
    mp4 = SimpleNamespace(format=SimpleNamespace(name="mov,mp4,m4a,3gp,3g2,mj2"), duration=None)
    empty = SimpleNamespace(codec_context=SimpleNamespace(name="h264", width=0, height=0), frames=0,
                            duration=None, time_base=None)
    with pytest.raises(NotAVideo, match="no picture size"):
        check_container(str(tmp_path / "list.txt"), mp4, empty, DecodeLimits())


@pytest.mark.parametrize("name, text, hint", [
    ("category.txt", "Holding something\nPushing something\n", "a text file"),
    ("readme.txt", "# afnet\n\nEfficient video recognition. See docs/.\n", "a text file"),
    ("README", "# afnet\n\nEfficient video recognition.\n", "a text file"),
    ("train.txt", "videos/a.mp4 10 3\nvideos/b.mp4 12 1\n", "did you mean --list?"),
    ("val_list.txt", "frames/v001 30 2\nframes/v002 30 0\n", "did you mean --list?"),
])
def test_text_files_are_not_videos(tmp_path, name, text, hint):
    (tmp_path / name).write_text(text)
    with pytest.raises(NotAVideo, match=rf"{name}: not a video .*{hint}"):
        open_reader(str(tmp_path / name))


def test_list_file_detection(tmp_path):
    (tmp_path / "a").write_text("x.mp4\ny.webm\n# a comment\n")
    (tmp_path / "b").write_text("1 ApplyEyeMakeup\n2 ApplyLipstick\n")
    (tmp_path / "c").write_bytes(b"\x00\x01binary")
    assert looks_like_list_file(str(tmp_path / "a"))
    assert not looks_like_list_file(str(tmp_path / "b")) and not looks_like_list_file(str(tmp_path / "c"))


def test_dataset_sample_over_a_limit_is_named(tmp_path):
    synth = afnet.data.make_synthetic(tmp_path / "d", num_train=2, num_val=1, num_classes=2, num_frames=8, size=32,
                                      seed=0, videos=False)
    ds = synthetic_dataset(synth.root, "train", train=False, limits=DecodeLimits(max_frame_pixels=100))
    with pytest.raises(LimitExceeded, match=r"frame of 32x32 = 1024 pixels is over the limit of 100"):
        ds[0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    model = randomize(afnet.create_model("af_resnet_small", num_classes=K, num_frames=T), seed=1)
    afnet.save_checkpoint(path, model, config={"data": {"preset": "synthetic", "input_size": 32}})
    return str(path)


def test_predict_refuses_text_and_large_frames_with_exit_1(tmp_path, ckpt, capsys):
    (tmp_path / "category.txt").write_text("Holding something\nPushing something\n")
    (tmp_path / "list.txt").write_text("videos/a.mp4 10 3\n")
    video = write_video(tmp_path / "v.mp4", 12, size=(48, 64))
    rc = main(["predict", str(tmp_path / "category.txt"), str(tmp_path / "list.txt"), video, "--checkpoint", ckpt,
               "--json", "--no-flops", "--max-frame-pixels", "3000"])
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 1 and [r["ok"] for r in rows] == [False, False, False]
    assert "not a video" in rows[0]["error"] and "class file" in rows[0]["error"]
    assert "did you mean --list?" in rows[1]["error"]
    assert "over the limit of 3000 pixels per frame (--max-frame-pixels" in rows[2]["error"]
    assert "3 of 3 video(s) failed" in err
    assert main(["predict", video, "--checkpoint", ckpt, "--no-flops"]) == 0
    capsys.readouterr()
    assert main(["predict", video, "--checkpoint", ckpt, "--max-frames", "-2"]) == 2
    assert "--max-frames=-2: expected a number >= 0" in capsys.readouterr().err


@pytest.mark.slow
def test_batch_predict_goes_on_past_a_text_file(tmp_path, ckpt):
    (tmp_path / "readme.txt").write_text("# afnet\n\nA library.\n")
    video = write_video(tmp_path / "v.mp4", 12, size=(48, 64))
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "afnet.cli", "batch-predict", str(tmp_path / "readme.txt"), video,
                           "--checkpoint", ckpt, "--out", str(out), "--workers", "0", "--no-flops"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["ok"] for r in rows] == [False, True]
    assert "readme.txt" in rows[0]["path"] and "not a video" in rows[0]["error"]


def test_config_keys_set_the_dataset_limits(tmp_path):
    from afnet.engine import load_config
    from afnet.engine.schema import ConfigError
    from tests.helpers import SYNTHETIC_CONFIG

    cfg = load_config(SYNTHETIC_CONFIG, [f"data.root={tmp_path}", "data.max_frame_pixels=1024", "data.max_seconds=0"])
    assert cfg.data.limits() == DecodeLimits(max_frame_pixels=1024, max_frames=1_000_000, max_seconds=None)
    assert load_config(SYNTHETIC_CONFIG, [f"data.root={tmp_path}"]).data.limits() == DecodeLimits()
    with pytest.raises(ConfigError, match=r"data.max_frames=-1; accepted: a number >= 0 \(0: no limit\)"):
        load_config(SYNTHETIC_CONFIG, [f"data.root={tmp_path}", "data.max_frames=-1"])
