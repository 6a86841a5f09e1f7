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
        (at most one seek per needed frame; the first packet after it must be that
        keyframe; asked by pts, else once by dts, as AVI indexes) decode forward
        (non-reference frames nobody needs are skipped by the decoder), converting
        only the needed frames to RGB (rotation applied)
    a seek failed or landed elsewhere, or a frame was passed or never came out?
        -> the reader stops seeking for good: frames still missing are decoded in one
           pass from the start of the reopened container (ASF, MPEG-PS/TS, raw
           elementary streams, SWF, GIF ... whose demuxers seek inexactly or not at all)

Nothing loops: every step either moves forward or ends in that one sequential pass.
Before any frame is decoded, the container's stream header and then the frame table are checked
against :class:`~afnet.data.limits.DecodeLimits` (frame pixels, frames, seconds), and a file
FFmpeg reads as text (its ``tty`` demuxer) or with no picture is refused as not a video.
Opening and each ``get_frames`` call have a time limit (``timeout``, default
:data:`DEFAULT_DECODE_TIMEOUT` seconds) past which :class:`DecodeTimeout` (a
:class:`DecodeError`) names the file, so one pathological file cannot stall a batch.

Frame ``i`` is the ``i``-th frame in presentation (pts) order, so containers
without a stored frame count (webm, mkv) and variable frame rate work alike;
the frame rate is never used to locate frames. Display rotation (the display
matrix, ``VideoFrame.rotation`` in PyAV 18) is applied; any pixel format
(yuv420p/444p, gray, gbrp, ...) is converted to RGB by swscale.

Frame folders (:class:`FrameFolderReader`) decode ``template.format(i + 1)``
images with PyAV's image codecs (no extra dependency).

Optional backends behind the same interface, ``"decord"`` and ``"torchcodec"``, live with the
interface, its errors and time limits in :mod:`afnet.data.readers`.
"""
from __future__ import annotations

import bisect
import itertools
import os
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from afnet._imports import require
from afnet.data.limits import DEFAULT_LIMITS, DecodeLimits, check_container, image_size, not_a_video, text_head
from afnet.data.readers import (
    BACKENDS,
    DEFAULT_DECODE_TIMEOUT,
    DecodeError,
    DecordReader,
    TorchCodecReader,
    _as_list,
    _check_indices,
    _Deadline,
    _Reader,
    _require_video_file,
    _stack,
    check_timeout,
)

av = require("av", "decoding videos and frame images")


def rotate_frame(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate ``(H, W, 3)`` by ``rotation`` degrees counter-clockwise (the display
    matrix convention of ``VideoFrame.rotation``), to how players show it."""
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


_converters = threading.local()
_inherited = []   # reformatters a forked child inherited: kept, never freed (see _forget_after_fork)


def _forget_after_fork() -> None:
    """In a forked child (a DataLoader worker), drop the parent's reformatter: its swscale
    context may run slice threads that exist only in the parent, and converting through it, or
    freeing it, would wait for them forever. It is kept referenced so that it is never freed."""
    reformatter = getattr(_converters, "reformatter", None)
    if reformatter is not None:
        _inherited.append(reformatter)
        del _converters.reformatter


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def to_rgb24(frame: av.VideoFrame) -> np.ndarray:
    """Any pixel format -> RGB ``(H, W, 3)`` uint8, as ``frame.to_ndarray(format="rgb24")``,
    through one reformatter per thread (and process). ``to_ndarray`` builds a new swscale
    context for every frame, which costs more than the conversion itself on small frames
    (0.96 against 0.03 ms a 32x32 JPEG here); a kept reformatter reuses its context while the
    frames' size and format stay the same."""
    reformatter = getattr(_converters, "reformatter", None)
    if reformatter is None:
        reformatter = _converters.reformatter = av.video.reformatter.VideoReformatter()
    return reformatter.reformat(frame, format="rgb24").to_ndarray()


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Any pixel format -> RGB ``(H, W, 3)`` uint8, display rotation applied."""
    return rotate_frame(to_rgb24(frame), frame.rotation or 0)


# ------------------------------------------------------------------ PyAV video
def _timestamp(item) -> int | None:
    return item.pts if item.pts is not None else item.dts


@dataclass(frozen=True)
class FrameTable:
    """Presentation-ordered frame timestamps of one stream and its keyframes.

    ``timed`` is False when some packet carries no timestamp at all (raw elementary
    streams such as ``.h264``): frames are then known only by their position in the
    decoder's output, ``pts`` is ``0..n-1`` and the reader never seeks."""

    pts: np.ndarray  # int64, sorted; frame i has pts[i]
    keyframes: list[int]  # sorted frame indices of keyframes
    timed: bool = True
    keyframe_dts: dict = field(default_factory=dict)  # keyframe index -> its packet's dts, if any

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    def keyframe_before(self, index: int) -> int:
        """Index of the last keyframe at or before frame ``index`` (0 if none)."""
        k = bisect.bisect_right(self.keyframes, index) - 1
        return self.keyframes[k] if k >= 0 else 0


def build_frame_table(container, stream, deadline: _Deadline | None = None) -> FrameTable:
    """Demux (no decoding) every packet of ``stream``: pts and keyframe flags."""
    stamps, keys, dts = [], [], []
    for packet in container.demux(stream):
        if deadline is not None:
            deadline.check()
        if packet.size == 0:
            continue
        stamps.append(_timestamp(packet))
        keys.append(packet.is_keyframe)
        dts.append(packet.dts)
    if None in stamps:
        return FrameTable(np.arange(len(stamps), dtype=np.int64), [0], timed=False)
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    pts = np.asarray(stamps, dtype=np.int64)[order]
    keyframes = [int(i) for i, o in enumerate(order) if keys[o]]
    keyframe_dts = {int(i): dts[o] for i, o in enumerate(order) if keys[o] and dts[o] is not None}
    return FrameTable(pts, keyframes or [0], keyframe_dts=keyframe_dts)


class PyAVReader(_Reader):
    """Random access to the frames of one video file with PyAV.

    ``frames_decoded`` counts decoded frames and ``seeks`` container seeks (to check
    that sparse sampling does not decode the whole video). ``skip_unneeded``: let the
    decoder drop non-reference frames that are not requested (see :meth:`_decode`).
    ``timeout``: seconds allowed for opening (indexing) and for each :meth:`get_frames`
    call (``None`` or 0: no limit), past which :class:`DecodeTimeout` is raised.
    ``seekable`` turns False for good once a seek fails or lands anywhere but on the
    keyframe asked for (ASF, MPEG-TS, raw elementary streams, SWF, ...); frames are then
    decoded sequentially from the start of a freshly opened container.
    """

    def __init__(self, path: str, threads: int = 1, skip_unneeded: bool = True,
                 timeout: float | None = DEFAULT_DECODE_TIMEOUT, limits: DecodeLimits = DEFAULT_LIMITS):
        self.path = _require_video_file(path)
        self.limits = limits
        self.frames_decoded = 0
        self.seeks = 0
        self.seekable = True
        self._seek_by_dts = False  # the demuxer indexes by decoding time (AVI)
        self.skip_unneeded = skip_unneeded
        self.threads = threads
        self.timeout = check_timeout(timeout)
        self._container = None
        self._sequential, self._sequential_at = None, -1  # a sequential pass under way
        self._deadline = _Deadline(self.path, self.timeout, "indexing the video")
        probe_video(self.path, limits)   # the header's limits before FFmpeg decodes any frame
        try:
            self._open()
            self.table = build_frame_table(self._container, self._stream, self._deadline)
            if self.table.num_frames == 0:
                raise DecodeError(f"{self.path}: video stream has no frames")
            limits.check_frames(self.path, self.table.num_frames)
            if self.table.timed:
                limits.check_seconds(self.path, float((self.table.pts[-1] - self.table.pts[0])
                                                      * self._stream.time_base))
            self._index_of: dict[int, int] = {}  # pts -> first frame with it
            if self.table.timed:
                for i, p in enumerate(self.table.pts.tolist()):
                    self._index_of.setdefault(p, i)
            else:
                self.seekable = False
        except av.FFmpegError as exc:
            self.close()
            raise DecodeError(f"{self.path}: cannot read video ({exc})") from exc
        except DecodeError:
            self.close()
            raise

    def _open(self) -> None:
        """(Re)open the container: positioned at its start without seeking."""
        self.close()
        try:
            self._container = av.open(self.path)
        except (av.FFmpegError, OSError, ValueError) as exc:
            if text_head(self.path) is not None:
                raise not_a_video(self.path, "FFmpeg finds no video in it") from None
            raise DecodeError(f"{self.path}: cannot open video ({exc})") from exc
        if not self._container.streams.video:
            raise not_a_video(self.path, "no video stream")
        self._stream = self._container.streams.video[0]
        check_container(self.path, self._container, self._stream, self.limits)
        self._stream.thread_type = "AUTO" if self.threads != 1 else "SLICE"
        self._stream.thread_count = self.threads

    @property
    def num_frames(self) -> int:
        return self.table.num_frames

    def frame_times(self) -> np.ndarray | None:
        """Presentation time of each frame, in seconds from the first (float64 ``(N,)``), or
        ``None`` for a stream without timestamps (raw elementary streams)."""
        if not self.table.timed:
            return None
        return (self.table.pts - self.table.pts[0]) * float(self._stream.time_base)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _position(self, pts: int):
        """Ask the demuxer for the keyframe at or before ``pts``; its packets from there."""
        self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
        self._stream.codec_context.flush_buffers()
        return self._container.demux(self._stream)

    def _seek(self, frame_index: int):
        """Packets from the keyframe ``frame_index`` on, or ``None`` when the demuxer
        cannot seek or lands anywhere else (then ``seekable`` turns False).

        The demuxer is asked for the keyframe's presentation time; if it lands elsewhere
        and the keyframe's decoding time differs, once more for that (AVI indexes by it),
        which is then used for every later seek."""
        target = int(self.table.pts[frame_index])
        dts = self.table.keyframe_dts.get(frame_index)
        asks = [dts] if self._seek_by_dts and dts is not None else [target]
        if not self._seek_by_dts and dts is not None and dts != target:
            asks.append(dts)
        for ask in asks:
            self.seeks += 1
            try:
                packets = self._position(int(ask))
                first = next((p for p in packets if p.size), None)
            except av.FFmpegError:
                break
            if first is not None and _timestamp(first) == target:
                self._seek_by_dts = ask != target
                return itertools.chain([first], packets)
        self.seekable = False
        return None

    def _decode(self, packets, wanted_pts: set):
        """Decode ``packets``; packets of frames nobody asked for are decoded with
        ``skip_frame="NONREF"``: if no other frame references them the decoder
        drops them (B-frames), saving time; reference frames are decoded as usual."""
        ctx = self._stream.codec_context
        for packet in packets:
            ts = _timestamp(packet)
            if self.skip_unneeded:
                ctx.skip_frame = "DEFAULT" if ts is None or ts in wanted_pts else "NONREF"
            yield from ctx.decode(packet)

    def _read_seeking(self, wanted: list[int], got: dict, deadline: _Deadline) -> None:
        """Fill ``got`` by seeking to the keyframe before each needed frame that lies past
        the decoder's position. Returns early (``seekable`` False) when a seek fails or
        lands wrong, or a frame is passed or never comes out; never seeks more than once
        per needed frame."""
        wanted_pts = {int(self.table.pts[i]) for i in wanted}
        pos, current, frames, seeks_left = 0, None, None, len(wanted)
        while pos < len(wanted):
            key = self.table.keyframe_before(wanted[pos])
            if frames is None or current is None or key > current or wanted[pos] <= current:
                if seeks_left == 0:
                    self.seekable = False
                    return
                seeks_left -= 1
                packets = self._seek(key)
                if packets is None:
                    return
                frames, current = self._decode(packets, wanted_pts), None
            for frame in frames:
                deadline.check()
                self.frames_decoded += 1
                index = self._index_of.get(_timestamp(frame))
                if index is None:
                    continue
                current = index
                if index > wanted[pos]:  # went past a needed frame without seeing it
                    self.seekable = False
                    return
                if index == wanted[pos]:
                    got[index] = self._rgb(frame)
                    pos += 1
                    if pos == len(wanted):
                        return
                if self.table.keyframe_before(wanted[pos]) > current:
                    break  # cheaper to seek ahead
            else:  # the stream ended before the frame came out
                self.seekable = False
                return

    def _sequential_frames(self):
        """``(index, frame)`` of every frame, decoded from the start of the freshly reopened
        container (no seek). Frames are counted in output order; a timestamp further on
        (frames the decoder dropped) moves the count there, a missing, repeated or earlier
        one does not."""
        self._open()
        ctx, index = self._stream.codec_context, -1
        for packet in self._container.demux(self._stream):
            self._deadline.check()
            for frame in ctx.decode(packet):
                known = self._index_of.get(_timestamp(frame))
                index = index + 1 if known is None else max(index + 1, known)
                self._sequential_at = index
                yield index, frame

    def _rgb(self, frame) -> np.ndarray:
        """A needed frame in RGB; its size checked first (a header may not tell it, or lie)."""
        self.limits.check_frame(self.path, frame.width, frame.height)
        return frame_to_rgb(frame)

    def _read_sequential(self, wanted: list[int], got: dict) -> None:
        """Fill ``got`` in one pass: go on from where the last sequential read stopped when
        that is before the first missing frame, else start again from the beginning."""
        todo = set(wanted) - set(got)
        first, last = min(todo), max(todo)
        if self._sequential is None or self._sequential_at >= first:
            self._sequential, self._sequential_at = self._sequential_frames(), -1
        for index, frame in self._sequential:
            self._deadline.check()
            self.frames_decoded += 1
            if index in todo:
                got[index] = self._rgb(frame)
                todo.discard(index)
            if not todo or index >= last:
                return
        self._sequential = None  # the stream ended

    def get_frames(self, indices) -> torch.Tensor:
        """Frames at ``indices`` (presentation order), uint8 ``(N, 3, H, W)``."""
        wanted_list = _as_list(indices)
        _check_indices(self.path, wanted_list, self.num_frames)
        wanted = sorted(set(wanted_list))
        self._deadline = deadline = _Deadline(self.path, self.timeout, f"decoding {len(wanted)} frame(s)")
        got: dict[int, np.ndarray] = {}
        if self.seekable:
            try:
                self._read_seeking(wanted, got, deadline)
            except av.FFmpegError:  # retried sequentially: a demuxer error after a seek
                self.seekable = False
        missing = [i for i in wanted if i not in got]
        if missing:
            try:
                self._read_sequential(missing, got)
            except av.FFmpegError as exc:
                self._sequential = None
                missing = [i for i in wanted if i not in got]
                raise DecodeError(f"{self.path}: decoding failed near frame "
                                  f"{missing[0] if missing else wanted[-1]} ({exc})") from exc
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


def decode_image(path: str, decoders: dict | None = None, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode one image file (JPEG, PNG, BMP) to RGB ``(H, W, 3)`` with PyAV.

    ``decoders``: a dict owned by the caller in which codec contexts are kept
    for reuse between images (saves creating one per image). ``limits``: the image's size is
    read from its header (or the container's stream) and checked before it is decoded.
    """
    codec = _IMAGE_CODECS.get(os.path.splitext(path)[1].lower())
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise DecodeError(f"{path}: frame file not found") from None
    if not data:  # an empty packet would put a shared decoder into its end-of-stream state
        raise DecodeError(f"{path}: cannot decode image (empty file)")
    size = image_size(data) if codec is not None else None
    if size is not None:
        limits.check_frame(path, *size)
    try:
        if codec is None:  # any other format FFmpeg's image2 demuxer reads
            with av.open(path) as container:
                if not container.streams.video:
                    raise not_a_video(path, "no picture stream")
                ctx = container.streams.video[0].codec_context
                limits.check_frame(path, ctx.width, ctx.height)
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
        if decoders is not None:
            decoders.pop(codec, None)
        raise DecodeError(f"{path}: cannot decode image (no picture in file)")
    limits.check_frame(path, frames[0].width, frames[0].height)
    return to_rgb24(frames[0])


class FrameFolderReader(_Reader):
    """Frames stored as images ``folder/template.format(i + 1)``, numbered from 1."""

    def __init__(self, path: str, template: str = "{:05d}.jpg", num_frames: int | None = None,
                 timeout: float | None = DEFAULT_DECODE_TIMEOUT, limits: DecodeLimits = DEFAULT_LIMITS):
        self.path = str(path)
        self.template = template
        self.limits = limits
        self.timeout = check_timeout(timeout)
        self._decoders: dict = {}
        if not os.path.isdir(self.path):
            raise DecodeError(f"{self.path}: frame folder not found")
        self.num_frames = num_frames if num_frames is not None else count_frames(path, template)
        if self.num_frames < 1:
            raise DecodeError(f"{self.path}: no frames named like {template!r}")
        limits.check_frames(self.path, self.num_frames)

    def frame_path(self, index: int) -> str:
        return os.path.join(self.path, self.template.format(index + 1))

    def get_frames(self, indices) -> torch.Tensor:
        wanted_list = _as_list(indices)
        _check_indices(self.path, wanted_list, self.num_frames)
        wanted = sorted(set(wanted_list))
        deadline = _Deadline(self.path, self.timeout, f"decoding {len(wanted)} frame image(s)")
        got = {}
        for i in wanted:
            deadline.check()
            got[i] = decode_image(self.frame_path(i), self._decoders, self.limits)
        return _stack(_same_size([got[i] for i in wanted_list], self.path))


def count_frames(folder: str, template: str) -> int:
    """Number of consecutive frames ``template.format(1), (2), ...`` in ``folder``."""
    names = set(os.listdir(folder))
    n = 0
    while template.format(n + 1) in names:
        n += 1
    return n


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


def open_video(path: str, backend: str = "pyav", threads: int = 1,
               timeout: float | None = DEFAULT_DECODE_TIMEOUT, limits: DecodeLimits = DEFAULT_LIMITS):
    """Open a video file with ``backend`` (one of :data:`BACKENDS`). ``timeout``: see
    :class:`PyAVReader` (the decord and torchcodec backends cannot be interrupted). ``limits``:
    checked by the PyAV reader from the headers (the other backends: after opening, by a PyAV look
    at the header first)."""
    if backend == "pyav":
        return PyAVReader(path, threads, timeout=timeout, limits=limits)
    probe_video(path, limits)
    if backend == "decord":
        return DecordReader(path, threads)
    if backend == "torchcodec":
        return TorchCodecReader(path, threads)
    raise ValueError(f"unknown video backend {backend!r}; accepted: {', '.join(BACKENDS)}")


def probe_video(path: str, limits: DecodeLimits = DEFAULT_LIMITS) -> None:
    """Open ``path``'s container and check its video stream's header (not a video, limits),
    decoding nothing: FFmpeg's stream probe is told to skip every frame (it would otherwise
    decode one to learn what the header already says: 0.5 s and 100 MB for one 8K frame), so a
    size the header does not give is left to the reader's own open."""
    path = _require_video_file(path)
    size = image_size(path)   # an image given as a video: FFmpeg's probe could not size it without decoding
    if size is not None:
        limits.check_frame(path, *size)
    try:
        container = av.open(path, options={"skip_frame": "all"})
    except (av.FFmpegError, OSError, ValueError) as exc:
        if text_head(path) is not None:
            raise not_a_video(path, "FFmpeg finds no video in it") from None
        raise DecodeError(f"{path}: cannot open video ({exc})") from exc
    with container:
        if not container.streams.video:
            raise not_a_video(path, "no video stream")
        check_container(path, container, container.streams.video[0], limits, probing=True)


def open_reader(path: str, *, template: str = "{:05d}.jpg", num_frames: int | None = None,
                backend: str = "pyav", threads: int = 1,
                timeout: float | None = DEFAULT_DECODE_TIMEOUT, limits: DecodeLimits = DEFAULT_LIMITS):
    """A frame folder (directory) or a video file, behind one reader interface.
    ``timeout``: seconds allowed for opening and for each ``get_frames`` call
    (``None`` or 0: no limit); past it :class:`DecodeTimeout` names the file. ``limits``: the
    most a sample may decode (:class:`~afnet.data.limits.DecodeLimits`), checked from headers."""
    if os.path.isdir(path):
        return FrameFolderReader(path, template, num_frames, timeout=timeout, limits=limits)
    return open_video(path, backend, threads, timeout=timeout, limits=limits)
