import os
import shutil

import av
import numpy as np
import pytest
import torch

from afnet.data.decoding import (
    DecodeError,
    FrameFolderReader,
    PyAVReader,
    available_backends,
    open_video,
)

CASES = [  # (file name, codec, pixel format, container format)
    ("h264.mp4", "libx264", "yuv420p", None),
    ("mpeg4.avi", "mpeg4", "yuv420p", None),
    ("mpeg4.mkv", "mpeg4", "yuv420p", None),
    ("mjpeg.avi", "mjpeg", "yuvj420p", None),
    ("h264_444.mp4", "libx264", "yuv444p", None),
    ("h264_gray.mkv", "libx264", "gray", None),
    ("vp9_gbrp.webm", "libvpx-vp9", "gbrp", None),
    ("vp9.webm", "libvpx-vp9", "yuv420p", None),
    ("vp8.webm", "libvpx", "yuv420p", None),
]


@pytest.mark.parametrize("name, codec, pix_fmt, fmt", CASES, ids=[c[0] for c in CASES])
def test_codecs_containers_pixel_formats(tmp_path, data_video_writer, data_frame_ids, name, codec,
                                         pix_fmt, fmt):
    if codec not in av.codecs_available:
        pytest.skip(f"FFmpeg bundled with PyAV has no {codec} encoder")
    opts = {"deadline": "realtime", "cpu-used": "8"} if "vpx" in codec else {}
    if codec == "libvpx-vp9" and pix_fmt == "gbrp":
        opts["lossless"] = "1"
    if codec == "mpeg4":
        opts["b"] = "4M"
    if pix_fmt == "gray":
        opts["x264-params"] = "fullrange=on"  # swscale writes full-range grey
    path = data_video_writer(tmp_path / name, 20, codec=codec, pix_fmt=pix_fmt, gop=6,
                             options=opts)
    with PyAVReader(path) as reader:
        assert reader.num_frames == 20  # webm/mkv store no frame count: counted by demuxing
        wanted = [0, 3, 3, 11, 19, 7]
        clip = reader.get_frames(wanted)
    assert clip.dtype == torch.uint8 and clip.shape == (6, 3, 48, 64)
    assert data_frame_ids(clip) == wanted
    # RGB with the white marker top-left: grey/yuv444/gbrp all converted.
    assert int(clip[0, :, 5, 5].min()) > 200 and int(clip[0, :, 40, 60].max()) < 100


def test_sparse_decoding_does_not_decode_whole_video(tmp_path, data_video_writer, data_frame_ids):
    path = data_video_writer(tmp_path / "long.mp4", 600, gop=10, size=(32, 32))
    with PyAVReader(path) as reader:
        wanted = [int(i) for i in np.linspace(0, 599, 8)]
        clip = reader.get_frames(wanted)
        assert data_frame_ids(clip) == [i % 47 for i in wanted]
        # at most one GOP (10 frames) per needed frame, far below 600
        assert reader.frames_decoded <= 8 * 10
    # contiguous frames in one GOP: decoded once, no re-seek
    with PyAVReader(path) as reader:
        reader.get_frames(range(100, 110))
        assert reader.frames_decoded <= 20


def test_frames_match_sequential_decode(tmp_path, data_video_writer):
    path = data_video_writer(tmp_path / "b.mp4", 50, gop=12, options={"bf": "3"})
    with av.open(path) as container:
        full = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    rng = np.random.default_rng(0)
    with PyAVReader(path) as reader:
        for _ in range(5):
            idx = sorted(rng.integers(0, 50, size=8).tolist())
            clip = reader.get_frames(idx).permute(0, 2, 3, 1).numpy()
            assert all(np.array_equal(clip[k], full[i]) for k, i in enumerate(idx))


def test_variable_frame_rate(tmp_path, data_video_writer, data_frame_ids):
    pts = np.cumsum([0, 40, 40, 100, 10, 10, 10, 300, 40, 40, 33, 33, 200, 40, 40, 40])
    path = data_video_writer(tmp_path / "vfr.mkv", len(pts), pts=pts, gop=4)
    with PyAVReader(path) as reader:
        assert reader.num_frames == len(pts)
        idx = list(range(len(pts)))
        assert data_frame_ids(reader.get_frames(idx)) == idx
        assert data_frame_ids(reader.get_frames([13, 2, 7])) == [13, 2, 7]


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_applied(tmp_path, data_video_writer, rotation, data_frame_pattern):
    path = data_video_writer(tmp_path / f"rot{rotation}.mp4", 4, rotation=rotation)
    with PyAVReader(path) as reader:
        clip = reader.get_frames([0])
    # Marker (top-left quadrant of the stored 48x64 picture) rotated counter-clockwise.
    expected = np.rot90(data_frame_pattern(0, 48, 64), k=(rotation // 90) % 4)
    assert clip.shape[2:] == expected.shape[:2]
    got = clip[0].permute(1, 2, 0).numpy().astype(int)
    assert np.abs(got - expected).mean() < 4


def test_frame_folder_reader(tmp_path, data_synthetic):
    folder = data_synthetic.root / "frames" / "train" / "video_00000"
    reader = FrameFolderReader(str(folder), "{:05d}.jpg")
    assert reader.num_frames == 12
    clip = reader.get_frames([0, 11, 0])
    assert clip.shape == (3, 3, 32, 32) and torch.equal(clip[0], clip[2])
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    os.remove(broken / "00005.jpg")
    reader = FrameFolderReader(str(broken), "{:05d}.jpg", num_frames=12)
    with pytest.raises(DecodeError, match=r"broken/00005.jpg: frame file not found"):
        reader.get_frames([0, 4, 8])
    (broken / "00006.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DecodeError, match=r"00006.jpg: cannot decode image"):
        reader.get_frames([5])


def test_missing_corrupt_truncated_videos(tmp_path, data_video_writer):
    with pytest.raises(DecodeError, match=r"nope.mp4: video file not found"):
        PyAVReader(str(tmp_path / "nope.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4000))
    with pytest.raises(DecodeError, match=r"junk.mp4: cannot open video"):
        PyAVReader(str(junk))
    good = data_video_writer(tmp_path / "good.mkv", 60, gop=10)
    data = open(good, "rb").read()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(DecodeError, match=r"cut.mkv"):
        with PyAVReader(str(cut)) as reader:
            assert reader.num_frames < 60  # only what survives is indexed
            reader.get_frames([59])
    with pytest.raises(DecodeError, match=r"good.mkv: frame index 60 out of range"):
        PyAVReader(good).get_frames([60])


@pytest.mark.parametrize("backend", ["decord", "torchcodec"])
@pytest.mark.parametrize("name, codec, opts", [("a.mp4", "libx264", {"bf": "2"}),
                                               ("b.webm", "libvpx-vp9",
                                                {"deadline": "realtime", "cpu-used": "8"})])
def test_other_backends_return_same_frames(tmp_path, data_video_writer, backend, name, codec,
                                           opts, data_frame_ids):
    if backend not in available_backends():
        pytest.skip(f"{backend} not installed")
    path = data_video_writer(tmp_path / name, 40, codec=codec, gop=8, options=opts)
    idx = [0, 5, 6, 17, 30, 39, 5]
    with open_video(path, "pyav") as ref, open_video(path, backend) as other:
        assert len(ref) == len(other) == 40
        a, b = ref.get_frames(idx), other.get_frames(idx)
    assert a.shape == b.shape
    # Same frames; colour conversion may differ by rounding between libraries.
    assert (a.int() - b.int()).abs().float().mean() < 2.0
    assert data_frame_ids(b) == idx


def test_torchcodec_rotation_agrees(tmp_path, data_video_writer):
    if "torchcodec" not in available_backends():
        pytest.skip("torchcodec not installed")
    path = data_video_writer(tmp_path / "rot.mp4", 4, rotation=90)
    with open_video(path, "pyav") as a, open_video(path, "torchcodec") as b:
        assert torch.equal(a.get_frames([1]), b.get_frames([1]))


def test_inaccurate_seek_falls_back_to_decoding_from_start(tmp_path, data_video_writer,
                                                           data_frame_ids):
    """A seek that lands after the needed frame must not yield a wrong frame."""
    path = data_video_writer(tmp_path / "s.mp4", 40, gop=5)

    class LateSeekReader(PyAVReader):
        def _seek(self, frame_index):
            late = min(frame_index + 10, self.num_frames - 1)  # lands one GOP or more too late
            return super()._seek(self.table.keyframe_before(late) if frame_index else 0)

    with LateSeekReader(path) as reader:
        assert data_frame_ids(reader.get_frames([12, 13, 31])) == [12, 13, 31]


def test_rgb_conversion_reuses_one_reformatter_and_equals_pyav():
    """to_rgb24 keeps one swscale context per thread; its pixels must equal PyAV's own
    per-frame conversion for every pixel format and size, also when they change between
    calls (the kept context must be rebuilt, not reused for the wrong geometry)."""
    from afnet.data.decoding import to_rgb24

    rng = np.random.default_rng(0)
    for fmt, (h, w) in [("yuv420p", (32, 32)), ("yuvj420p", (48, 64)), ("yuv420p", (48, 64)),
                        ("yuv444p", (17, 33)), ("gray", (32, 32)), ("rgb24", (20, 30)), ("gbrp", (32, 16)),
                        ("yuv420p", (32, 32))]:
        frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24")
        frame = frame.reformat(format=fmt)
        got = to_rgb24(frame)
        assert got.shape == (h, w, 3) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, frame.to_ndarray(format="rgb24"), err_msg=f"{fmt} {h}x{w}")


def test_rgb_conversion_works_in_a_forked_child():
    """A DataLoader worker is forked from a process that has converted frames: the parent's
    kept swscale context (whose slice threads stay in the parent) must not be used there, or
    the child waits forever."""
    import time

    from afnet.data.decoding import to_rgb24

    frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 90, np.uint8), format="rgb24").reformat(format="yuv420p")
    want = to_rgb24(frame)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the conversion returns the same pixels
        os._exit(0 if np.array_equal(to_rgb24(frame), want) else 1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung converting a frame")
