"""Every container FFmpeg demuxes decodes, or fails clearly; nothing loops; a time limit.

Files are written by PyAV here (tests/helpers.py ``CONTAINERS``); frame ``i`` carries its
number in its grey level (``frame_ids``), and decoded frames are compared with PyAV's own
sequential decode of the whole file.
"""
import os
import time

import av
import numpy as np
import pytest

import afnet.data.decoding as decoding
from afnet.data import VIDEO_EXTENSIONS, build_dataset, load_video
from afnet.data.dataset import SkippedSample
from afnet.data.decoding import FrameFolderReader, PyAVReader
from afnet.data.readers import DecodeError, DecodeTimeout, check_timeout
from afnet.data.sampling import sample_indices
from tests.helpers import CONTAINERS, frame_ids, write_container, write_video


def reference_frames(path) -> list[np.ndarray]:
    with av.open(path) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize("name", [c[0] for c in CONTAINERS])
def test_container_decodes_the_right_frames(tmp_path, name):
    path = write_container(tmp_path, name, 30)
    reference = reference_frames(path)
    assert len(reference) == 30
    wanted = [0, 7, 7, 13, 29, 3]  # repeated, and backwards at the end
    start = time.perf_counter()
    with PyAVReader(path) as reader:
        assert reader.num_frames == 30
        sparse = reader.get_frames(wanted)
        every = reader.get_frames(range(30))  # a second call on the same reader
    assert time.perf_counter() - start < 2
    for clip, indices in ((sparse, wanted), (every, list(range(30)))):
        got = clip.permute(0, 2, 3, 1).numpy()
        assert all(np.array_equal(got[k], reference[i]) for k, i in enumerate(indices)), name
    if not name.endswith(".gif"):  # a GIF palette does not keep the pattern's grey levels
        assert frame_ids(sparse) == wanted


def test_every_container_extension_is_a_video_extension():
    for name, *_ in CONTAINERS:
        assert os.path.splitext(name)[1] in VIDEO_EXTENSIONS
    for ext in (".3gp", ".asf", ".avi", ".flv", ".gif", ".m1v", ".mkv", ".mov", ".mp4", ".mpeg",
                ".mpg", ".ogv", ".rm", ".swf", ".vob", ".webm", ".wmv", ".m4v", ".ts"):
        assert ext in VIDEO_EXTENSIONS


@pytest.mark.parametrize("name, seeks", [("msmpeg4v3.asf", False), ("flv1.swf", False),
                                         ("mpeg2_dvd.vob", False), ("flv1.flv", True),
                                         ("rv20.rm", True)])
def test_long_file_sparse_tsn_sampling(tmp_path, name, seeks):
    """1441 frames (the ASF that used to hang a batch): 8 TSN frames in a second or two."""
    n = 1441
    path = write_container(tmp_path, name, n, gop=12)
    wanted = sample_indices(n, 8, mode="tsn", train=False).tolist()
    start = time.perf_counter()
    with PyAVReader(path) as reader:
        assert reader.num_frames == n
        clip = reader.get_frames(wanted)
        assert frame_ids(clip) == [i % 47 for i in wanted]
        assert reader.seeks <= len(wanted) + 1  # + 1: a demuxer indexing by decoding time
        if seeks:  # seeking works here: a GOP or so per frame
            assert reader.seekable and reader.frames_decoded <= 8 * 12
        else:  # one sequential pass, not one per frame
            assert not reader.seekable and reader.frames_decoded <= n + 12
        # a later call goes on from where the sequential pass stopped, or seeks
        assert frame_ids(reader.get_frames([n - 1])) == [(n - 1) % 47]
    assert time.perf_counter() - start < 4


def test_a_seek_that_lands_early_never_loops(tmp_path):
    """A demuxer that always lands on the first frame (as ASF's did) is read in one pass."""
    path = write_video(tmp_path / "s.mp4", 300, gop=10, size=(32, 32))

    class EarlySeekReader(PyAVReader):
        def _position(self, pts):
            return super()._position(int(self.table.pts[0]))

    with EarlySeekReader(path) as reader:
        wanted = [5, 95, 150, 299]
        assert frame_ids(reader.get_frames(wanted)) == [i % 47 for i in wanted]
        # the first seek (to frame 0) lands right; the second does not (asked by presentation,
        # then by decoding time): one pass from the start
        assert reader.seeks == 3 and not reader.seekable
        assert reader.frames_decoded <= 6 + 300


def test_avi_with_b_frames_seeks_by_decoding_time(tmp_path):
    """AVI indexes keyframes by decoding time: asked by presentation time it lands a GOP late."""
    path = write_video(tmp_path / "b.avi", 300, codec="mpeg4", gop=12, size=(32, 32),
                       options={"bf": "2", "b": "2M"})
    with PyAVReader(path) as reader:
        wanted = [int(i) for i in np.linspace(0, 299, 8)]
        assert frame_ids(reader.get_frames(wanted)) == [i % 47 for i in wanted]
        assert reader.seekable and reader.frames_decoded < 100


def test_a_seek_that_fails_falls_back_to_sequential(tmp_path):
    """A demuxer that cannot seek at all (SWF: "Operation not permitted")."""
    path = write_video(tmp_path / "s.mkv", 40, gop=5)

    class NoSeekReader(PyAVReader):
        def _position(self, pts):
            raise av.error.PermissionError(1, "Operation not permitted")

    with NoSeekReader(path) as reader:
        assert frame_ids(reader.get_frames([33, 2, 17])) == [33, 2, 17]
        assert reader.seeks == 1 and not reader.seekable
        assert frame_ids(reader.get_frames([39, 1])) == [39, 1]
        assert reader.seeks == 1


def test_time_limit_stops_a_slow_decode(tmp_path, monkeypatch):
    path = write_video(tmp_path / "slow.mp4", 40, gop=5)

    def slow_rgb(frame):
        time.sleep(0.05)
        return frame.to_ndarray(format="rgb24")

    monkeypatch.setattr(decoding, "frame_to_rgb", slow_rgb)
    start = time.perf_counter()
    with PyAVReader(path, timeout=0.2) as reader:
        with pytest.raises(DecodeTimeout, match=r"slow.mp4: decoding 40 frame\(s\) took longer than "
                                                 r"the decode time limit of 0.2 s"):
            reader.get_frames(range(40))
    assert time.perf_counter() - start < 2
    with PyAVReader(path, timeout=0) as reader:  # 0: no limit
        assert reader.get_frames([1, 2]).shape[0] == 2


def test_time_limit_in_the_dataset_and_load_video(tmp_path, monkeypatch):
    """Under on_error="skip" the slow video is skipped and the next one read."""
    for name in ("a_slow.mp4", "b_fine.mp4"):
        write_video(tmp_path / name, 12, gop=4)
    (tmp_path / "list.txt").write_text("a_slow.mp4 0\nb_fine.mp4 1\n")
    opened = PyAVReader._open

    def slow_open(self):
        if "slow" in self.path:
            time.sleep(0.3)
            self._deadline.check()
        opened(self)

    monkeypatch.setattr(PyAVReader, "_open", slow_open)
    data = build_dataset("synthetic", tmp_path, tmp_path / "list.txt", train=False, num_frames=4,
                         input_size=32, scale_size=32, on_error="skip", decode_timeout=0.1)
    first, second = data[0], data[1]
    assert isinstance(first, SkippedSample) and "decode time limit of 0.1 s" in first.reason
    assert second[0].shape == (1, 4, 3, 32, 32)
    strict = build_dataset("synthetic", tmp_path, tmp_path / "list.txt", train=False, num_frames=4,
                           input_size=32, scale_size=32, decode_timeout=0.1)
    with pytest.raises(DecodeTimeout, match=r"a_slow.mp4: .*\(listed at .*list.txt:1\)"):
        strict[0]
    with pytest.raises(DecodeTimeout, match="a_slow.mp4"):
        load_video(tmp_path / "a_slow.mp4", "synthetic", timeout=0.1, num_frames=4)
    assert load_video(tmp_path / "a_slow.mp4", "synthetic", timeout=None, num_frames=4,
                      input_size=32, scale_size=32).shape == (1, 4, 3, 32, 32)


def test_frame_folder_time_limit(tmp_path, data_synthetic, monkeypatch):
    folder = data_synthetic.root / "frames" / "train" / "video_00000"
    real = decoding.decode_image

    def slow(path, decoders=None, limits=decoding.DEFAULT_LIMITS):
        time.sleep(0.05)
        return real(path, decoders, limits)

    monkeypatch.setattr(decoding, "decode_image", slow)
    with pytest.raises(DecodeTimeout, match="video_00000: decoding 12 frame image"):
        FrameFolderReader(str(folder), timeout=0.1).get_frames(range(12))


def test_timeout_values_are_checked():
    assert check_timeout(None) is None and check_timeout(0) is None and check_timeout("2.5") == 2.5
    for bad in (-1, "soon", float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"decode_timeout=.*expected a number of seconds >= 0"):
            check_timeout(bad, "decode_timeout")


def test_stream_without_frames_and_not_a_video(tmp_path):
    (tmp_path / "text.wmv").write_text("hello")
    with pytest.raises(DecodeError, match="text.wmv: not a video"):
        PyAVReader(str(tmp_path / "text.wmv"))
