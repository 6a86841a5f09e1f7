"""Decoders: given a video (file or frame folder) and frame indices, return the frames.

Every reader returns ``uint8`` clips ``(N, 3, H, W)`` (a channels-last view of
``(N, H, W, 3)`` memory) in RGB, for 0-based frame indices, repeated indices
allowed. A frame that cannot be produced raises :class:`DecodeError` naming
the file; nothing is ever replaced by another frame.

PyAV reader (default), for one call of :meth:`PyAVReader.get_frames`::

    open ──> frame table (demux packets, no decoding: pts + keyframe flags,
    │        sorted by pts = presentation order; frame i = i-th smallest pts)
    v
    for each needed frame, in order:
        nearest keyframe at or before it is past the decoder position? -> seek there
        decode forward (non-reference frames nobody needs are skipped by the
        decoder), converting only the needed frames to RGB (rotation applied)

Frame ``i`` is the ``i``-th frame in presentation (pts) order, so containers
without a stored frame count (webm, mkv) and variable frame rate work alike;
the frame rate is never used to locate frames. Display rotation (the display
matrix, ``VideoFrame.rotation`` in PyAV 18) is applied; any pixel format
(yuv420p/444p, gray, gbrp, ...) is converted to RGB by swscale.

Frame folders (:class:`FrameFolderReader`) decode ``template.format(i + 1)``
images with PyAV's image codecs (no extra dependency).

Optional backends behind the same interface: ``"decord"``, ``"torchcodec"``.
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass

import av
import numpy as np
import torch

BACKENDS = ("pyav", "decord", "torchcodec")


class DecodeError(RuntimeError):
    """A video or frame cannot be decoded; the message names the file."""


def _as_list(indices) -> list[int]:
    if isinstance(indices, torch.Tensor):
        return [int(i) for i in indices.flatten().tolist()]
    return [int(i) for i in np.asarray(indices).reshape(-1)]


def _check_indices(path: str, indices: list[int], num_frames: int) -> None:
    bad = [i for i in indices if not 0 <= i < num_frames]
    if bad:
        raise DecodeError(f"{path}: frame index {bad[0]} out of range "
                          f"(video has {num_frames} frames, valid 0..{num_frames - 1})")


def _stack(frames: list[np.ndarray]) -> torch.Tensor:
    """``(H, W, 3)`` arrays -> uint8 ``(N, 3, H, W)`` channels-last view."""
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)


def rotate_frame(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate ``(H, W, 3)`` by ``rotation`` degrees counter-clockwise (the display
    matrix convention of ``VideoFrame.rotation``), to how players show it."""
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Any pixel format -> RGB ``(H, W, 3)`` uint8, display rotation applied."""
    rgb = frame.to_ndarray(format="rgb24")
    return rotate_frame(rgb, frame.rotation or 0)


# ------------------------------------------------------------------ PyAV video
@dataclass(frozen=True)
class FrameTable:
    """Presentation-ordered frame timestamps of one stream and its keyframes."""

    pts: np.ndarray  # int64, sorted; frame i has pts[i]
    keyframes: list[int]  # sorted frame indices of keyframes

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    def keyframe_before(self, index: int) -> int:
        """Index of the last keyframe at or before frame ``index`` (0 if none)."""
        k = bisect.bisect_right(self.keyframes, index) - 1
        return self.keyframes[k] if k >= 0 else 0


def build_frame_table(container, stream) -> FrameTable:
    """Demux (no decoding) every packet of ``stream``: pts and keyframe flags."""
    stamps, keys = [], []
    for packet in container.demux(stream):
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None or packet.size == 0:
            continue
        stamps.append(ts)
        keys.append(packet.is_keyframe)
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    pts = np.asarray(stamps, dtype=np.int64)[order]
    keyframes = [int(i) for i, o in enumerate(order) if keys[o]]
    return FrameTable(pts, keyframes or [0])


class _Reader:
    """What every frame reader shares: ``len()``, ``close()`` and use as a context manager.
    Subclasses set ``path`` and ``num_frames`` and implement ``get_frames(indices)``."""

    path: str
    num_frames: int

    def __len__(self) -> int:
        return self.num_frames

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _require_video_file(path: str) -> str:
    path = str(path)
    if not os.path.isfile(path):
        raise DecodeError(f"{path}: video file not found")
    return path


class PyAVReader(_Reader):
    """Random access to the frames of one video file with PyAV.

    ``frames_decoded`` counts decoded frames (to check that sparse sampling
    does not decode the whole video). ``skip_unneeded``: let the decoder drop
    non-reference frames that are not requested (see :meth:`_decode`).
    """

    def __init__(self, path: str, threads: int = 1, skip_unneeded: bool = True):
        self.path = _require_video_file(path)
        self.frames_decoded = 0
        self.skip_unneeded = skip_unneeded
        try:
            self._container = av.open(self.path)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise DecodeError(f"{self.path}: cannot open video ({exc})") from exc
        try:
            if not self._container.streams.video:
                raise DecodeError(f"{self.path}: no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO" if threads != 1 else "SLICE"
            self._stream.thread_count = threads
            self.table = build_frame_table(self._container, self._stream)
            if self.table.num_frames == 0:
                raise DecodeError(f"{self.path}: video stream has no frames")
            self._index_of = {int(p): i for i, p in enumerate(self.table.pts)}
        except av.FFmpegError as exc:
            self.close()
            raise DecodeError(f"{self.path}: cannot read video ({exc})") from exc
        except DecodeError:
            self.close()
            raise

    @property
    def num_frames(self) -> int:
        return self.table.num_frames

    def close(self) -> None:
        self._container.close()

    def _seek(self, frame_index: int):
        """Position the demuxer on the keyframe at or before ``frame_index``."""
        self._container.seek(int(self.table.pts[frame_index]), stream=self._stream,
                             backward=True, any_frame=False)
        self._stream.codec_context.flush_buffers()
        return self._container.demux(self._stream)

    def _decode(self, packets, wanted_pts: set):
        """Decode ``packets``; packets of frames nobody asked for are decoded with
        ``skip_frame="NONREF"``: if no other frame references them the decoder
        drops them (B-frames), saving time; reference frames are decoded as usual."""
        ctx = self._stream.codec_context
        for packet in packets:
            ts = packet.pts if packet.pts is not None else packet.dts
            if self.skip_unneeded:
                ctx.skip_frame = "DEFAULT" if ts is None or ts in wanted_pts else "NONREF"
            yield from ctx.decode(packet)

    def get_frames(self, indices) -> torch.Tensor:
        """Frames at ``indices`` (presentation order), uint8 ``(N, 3, H, W)``."""
        wanted_list = _as_list(indices)
        _check_indices(self.path, wanted_list, self.num_frames)
        wanted = sorted(set(wanted_list))
        wanted_pts = {int(self.table.pts[i]) for i in wanted}
        got: dict[int, np.ndarray] = {}
        pos, current, frames = 0, None, None
        restarts = 0
        try:
            while pos < len(wanted):
                key = self.table.keyframe_before(wanted[pos])
                if restarts == 1:  # fallback: decode everything from the first frame
                    frames, restarts = self._decode(self._seek(0), wanted_pts), 2
                elif current is None or key > current or wanted[pos] <= current:
                    frames = self._decode(self._seek(key), wanted_pts)
                current, passed = None, True
                for frame in frames:
                    self.frames_decoded += 1
                    ts = frame.pts if frame.pts is not None else frame.dts
                    index = self._index_of.get(ts)
                    if index is None:
                        continue
                    current = index
                    if index in wanted and index not in got:
                        got[index] = frame_to_rgb(frame)
                    while pos < len(wanted) and wanted[pos] in got:
                        pos += 1
                    if pos == len(wanted) or index > wanted[pos]:
                        # done, or went past a needed frame without seeing it
                        passed = pos < len(wanted)
                        break
                    if restarts == 0 and self.table.keyframe_before(wanted[pos]) > current:
                        passed = False
                        break  # cheaper to seek ahead (never in the fallback)
                if passed:  # the seek landed late, or the frame never came out
                    if restarts:
                        break
                    restarts, current = 1, None
        except av.FFmpegError as exc:
            raise DecodeError(f"{self.path}: decoding failed near frame "
                              f"{wanted[min(pos, len(wanted) - 1)]} ({exc})") from exc
        missing = [i for i in wanted if i not in got]
        if missing:
            raise DecodeError(f"{self.path}: could not decode frame(s) {missing[:5]} of "
                              f"{self.num_frames} (truncated or corrupt video?)")
        return _stack(_same_size([got[i] for i in wanted_list], self.path))


def _same_size(frames: list[np.ndarray], path: str) -> list[np.ndarray]:
    shape = frames[0].shape
    if any(f.shape != shape for f in frames):
        raise DecodeError(f"{path}: frames change size mid-video "
                          f"({sorted({f.shape for f in frames})})")
    return frames


# -------------------------------------------------------------- frame folders
_IMAGE_CODECS = {".jpg": "mjpeg", ".jpeg": "mjpeg", ".png": "png", ".bmp": "bmp"}


def decode_image(path: str, decoders: dict | None = None) -> np.ndarray:
    """Decode one image file (JPEG, PNG, BMP) to RGB ``(H, W, 3)`` with PyAV.

    ``decoders``: a dict owned by the caller in which codec contexts are kept
    for reuse between images (saves creating one per image).
    """
    codec = _IMAGE_CODECS.get(os.path.splitext(path)[1].lower())
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise DecodeError(f"{path}: frame file not found") from None
    try:
        if codec is None:  # any other format FFmpeg's image2 demuxer reads
            with av.open(path) as container:
                frames = list(container.decode(video=0))
        else:
            decoders = {} if decoders is None else decoders
            ctx = decoders.get(codec)
            if ctx is None:
                ctx = decoders[codec] = av.CodecContext.create(codec, "r")
            frames = ctx.decode(av.Packet(data))
    except av.FFmpegError as exc:
        if decoders is not None:
            decoders.pop(codec, None)  # do not reuse a decoder in an error state
        raise DecodeError(f"{path}: cannot decode image ({exc})") from exc
    if not frames:
        raise DecodeError(f"{path}: cannot decode image (no picture in file)")
    return frames[0].to_ndarray(format="rgb24")


class FrameFolderReader(_Reader):
    """Frames stored as images ``folder/template.format(i + 1)``, numbered from 1."""

    def __init__(self, path: str, template: str = "{:05d}.jpg", num_frames: int | None = None):
        self.path = str(path)
        self.template = template
        self._decoders: dict = {}
        if not os.path.isdir(self.path):
            raise DecodeError(f"{self.path}: frame folder not found")
        self.num_frames = num_frames if num_frames is not None else count_frames(path, template)
        if self.num_frames < 1:
            raise DecodeError(f"{self.path}: no frames named like {template!r}")

    def frame_path(self, index: int) -> str:
        return os.path.join(self.path, self.template.format(index + 1))

    def get_frames(self, indices) -> torch.Tensor:
        wanted_list = _as_list(indices)
        _check_indices(self.path, wanted_list, self.num_frames)
        got = {i: decode_image(self.frame_path(i), self._decoders)
               for i in sorted(set(wanted_list))}
        return _stack(_same_size([got[i] for i in wanted_list], self.path))


def count_frames(folder: str, template: str) -> int:
    """Number of consecutive frames ``template.format(1), (2), ...`` in ``folder``."""
    names = set(os.listdir(folder))
    n = 0
    while template.format(n + 1) in names:
        n += 1
    return n


# ------------------------------------------------------------ other backends
class DecordReader(_Reader):
    """``decord.VideoReader`` behind the reader interface (no rotation support)."""

    def __init__(self, path: str, threads: int = 1):
        import decord

        self.path = _require_video_file(path)
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=threads)
        except decord.DECORDError as exc:
            raise DecodeError(f"{self.path}: cannot open video ({exc})") from exc
        self.num_frames = len(self._vr)

    def get_frames(self, indices) -> torch.Tensor:
        import decord

        wanted = _as_list(indices)
        _check_indices(self.path, wanted, self.num_frames)
        try:
            arr = self._vr.get_batch(wanted).asnumpy()
        except decord.DECORDError as exc:
            raise DecodeError(f"{self.path}: decoding failed ({exc})") from exc
        return torch.from_numpy(arr).permute(0, 3, 1, 2)

    def close(self) -> None:
        self._vr = None


class TorchCodecReader(_Reader):
    """``torchcodec.decoders.VideoDecoder`` (exact seek mode) behind the reader interface."""

    def __init__(self, path: str, threads: int = 1):
        from torchcodec.decoders import VideoDecoder

        self.path = _require_video_file(path)
        try:
            self._dec = VideoDecoder(self.path, seek_mode="exact", dimension_order="NHWC",
                                     num_ffmpeg_threads=threads)
        except (RuntimeError, ValueError) as exc:
            raise DecodeError(f"{self.path}: cannot open video ({exc})") from exc
        self.num_frames = int(self._dec.metadata.num_frames)

    def get_frames(self, indices) -> torch.Tensor:
        wanted = _as_list(indices)
        _check_indices(self.path, wanted, self.num_frames)
        try:
            data = self._dec.get_frames_at(wanted).data
        except (RuntimeError, IndexError) as exc:
            raise DecodeError(f"{self.path}: decoding failed ({exc})") from exc
        return data.permute(0, 3, 1, 2)

    def close(self) -> None:
        self._dec = None


def available_backends() -> list[str]:
    """Video backends importable here (``pyav`` always)."""
    found = ["pyav"]
    for name in BACKENDS[1:]:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - broken installs count as absent
            continue
        found.append(name)
    return found


def open_video(path: str, backend: str = "pyav", threads: int = 1):
    """Open a video file with ``backend`` (one of :data:`BACKENDS`)."""
    if backend == "pyav":
        return PyAVReader(path, threads)
    if backend == "decord":
        return DecordReader(path, threads)
    if backend == "torchcodec":
        return TorchCodecReader(path, threads)
    raise ValueError(f"unknown video backend {backend!r}; accepted: {', '.join(BACKENDS)}")


def open_reader(path: str, *, template: str = "{:05d}.jpg", num_frames: int | None = None,
                backend: str = "pyav", threads: int = 1):
    """A frame folder (directory) or a video file, behind one reader interface."""
    if os.path.isdir(path):
        return FrameFolderReader(path, template, num_frames)
    return open_video(path, backend, threads)
