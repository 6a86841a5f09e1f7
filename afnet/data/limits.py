"""Bounds on what one sample may decode, checked from headers before any pixel is decoded.

A JPEG of 8192x8192 weighs a few MB and decodes to 200 MB of RGB; a PNG of that size can
weigh 200 KB, and a video of such frames a few MB. :class:`DecodeLimits` bounds a frame's
pixels, a video's frames and its duration; a reader checks them from the container's stream
header (PyAV: the codec context's width and height, the frame count and duration the
container stores) or the image's header (:func:`image_size`, no decoding), and again on the
frame table it builds by demuxing. A sample over a limit raises :class:`LimitExceeded` (a
:class:`DecodeError`) naming the file, the value found, the limit broken and the flag or
config key that raises it.

Defaults (:data:`DEFAULT_LIMITS`): 4096x4096 pixels per frame (a 4K frame is 3840x2160), a
million frames, four hours. ``afnet predict``, ``batch-predict``, ``explain``, ``timeline`` and
``serve`` take ``--max-frame-pixels``, ``--max-frames`` and ``--max-seconds``; the dataset
takes ``data.max_frame_pixels``, ``data.max_frames`` and ``data.max_seconds`` (0: no limit).

Not-a-video: FFmpeg opens text as a video (its ``tty`` demuxer draws the characters on a
640x400 canvas) and a few binary text formats likewise; :func:`not_a_video` refuses them, and
:func:`looks_like_list_file` recognises a list of videos passed in place of a video.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass

from afnet.data.readers import DecodeError

# FFmpeg demuxers and codecs that render text or text-mode art as pictures: never a video here.
TEXT_DEMUXERS = frozenset({"tty", "bin", "xbin", "adf", "idf"})
TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv",
                  ".3gp", ".gif", ".ogv")


class LimitExceeded(DecodeError):
    """A sample over a :class:`DecodeLimits` bound; the message names the file and the limit."""


class NotAVideo(DecodeError):
    """A file that is not a video (text, or no real video stream); the message says what it is."""


@dataclass(frozen=True)
class DecodeLimits:
    """The most one sample may decode. ``None`` (or 0 where given by a user): no bound.

    ``max_frame_pixels``: width x height of one frame (or image). ``max_frames``: frames of a
    video (a frame folder's images). ``max_seconds``: a video's duration."""

    max_frame_pixels: int | None = 4096 * 4096
    max_frames: int | None = 1_000_000
    max_seconds: float | None = 4 * 3600.0

    @classmethod
    def of(cls, max_frame_pixels=None, max_frames=None, max_seconds=None) -> DecodeLimits:
        """Limits from user values: ``None`` keeps the default, 0 removes the bound; a
        negative value is a ValueError naming the argument."""
        d = DEFAULT_LIMITS
        values = {}
        for name, given in (("max_frame_pixels", max_frame_pixels), ("max_frames", max_frames),
                            ("max_seconds", max_seconds)):
            if given is None:
                values[name] = getattr(d, name)
                continue
            if not float(given) >= 0:
                raise ValueError(f"{name}={given!r}: expected a number >= 0 (0: no limit)")
            values[name] = (float(given) if name == "max_seconds" else int(given)) or None
        return cls(**values)

    def check_frame(self, path: str, width: int, height: int) -> None:
        """LimitExceeded when a ``width x height`` frame has more pixels than allowed."""
        if self.max_frame_pixels is not None and width * height > self.max_frame_pixels:
            raise LimitExceeded(f"{path}: frame of {width}x{height} = {width * height} pixels is over the limit of "
                                f"{self.max_frame_pixels} pixels per frame (--max-frame-pixels / "
                                f"data.max_frame_pixels; 0 for none)")

    def check_frames(self, path: str, frames: int) -> None:
        if self.max_frames is not None and frames > self.max_frames:
            raise LimitExceeded(f"{path}: {frames} frames is over the limit of {self.max_frames} frames per video "
                                f"(--max-frames / data.max_frames; 0 for none)")

    def check_seconds(self, path: str, seconds: float) -> None:
        if self.max_seconds is not None and seconds > self.max_seconds:
            raise LimitExceeded(f"{path}: {seconds:.0f} s long is over the limit of {self.max_seconds:g} s per video "
                                f"(--max-seconds / data.max_seconds; 0 for none)")


DEFAULT_LIMITS = DecodeLimits()


# ----------------------------------------------------------------------------- image headers
def _png_size(head: bytes):
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    return None


def _bmp_size(head: bytes):
    if head[:2] == b"BM" and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)
    return None


def _jpeg_size(f):
    """The size in the first start-of-frame marker of a JPEG, reading marker by marker."""
    f.seek(2)
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":
            byte = f.read(1)
        while byte == b"\xff":
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0x01, *range(0xD0, 0xD9)):   # markers without a length
            continue
        if marker == 0xD9:
            return None
        raw = f.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            data = f.read(5)
            if len(data) < 5:
                return None
            height, width = struct.unpack(">HH", data[1:5])
            return width, height
        f.seek(length - 2, os.SEEK_CUR)


def image_size(image: str | bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG, BMP or JPEG image (a path, or the file's bytes) from its
    header (nothing decoded), or ``None`` for another format or a header that cannot be read
    (the decoder then says why)."""
    try:
        with (io.BytesIO(image) if isinstance(image, (bytes, bytearray, memoryview)) else open(image, "rb")) as f:
            head = f.read(32)
            size = _png_size(head) or _bmp_size(head)
            if size is None and head[:2] == b"\xff\xd8":
                size = _jpeg_size(f)
    except (OSError, struct.error):
        return None
    return None if size is None else (int(size[0]), int(size[1]))


# ----------------------------------------------------------------------------- not a video
def text_head(path: str, size: int = 4096) -> str | None:
    """The start of ``path`` as text, or ``None`` when it holds bytes no text file has."""
    try:
        with open(path, "rb") as f:
            head = f.read(size)
    except OSError:
        return None
    if not head or b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:   # not a character cut at the end of the block
            return None
        text = head[:exc.start].decode("utf-8")
    printable = sum(c.isprintable() or c in "\r\n\t" for c in text)
    return text if printable >= 0.95 * max(len(text), 1) else None


def looks_like_list_file(path: str) -> bool:
    """Whether ``path`` reads as a list of videos: text whose lines (blank and ``#`` lines
    aside) start with a path with a video extension, or a path followed by numbers (the
    training lists' ``path [frames] label``)."""
    text = text_head(path)
    if text is None:
        return False
    lines = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    lines = lines[:-1] if len(lines) > 1 and not text.endswith("\n") else lines   # a line cut by the read
    if not lines:
        return False

    def listed(fields: list[str]) -> bool:
        first = fields[0].lower()
        return first.endswith(VIDEO_SUFFIXES) or (
            len(fields) > 1 and ("/" in first or "." in first) and all(f.lstrip("-").isdigit() for f in fields[1:]))
    return sum(map(listed, lines)) >= max(1, 0.8 * len(lines))


def not_a_video(path: str, what: str) -> NotAVideo:
    """The error for ``path``, which is ``what`` (e.g. "text, read by FFmpeg's tty demuxer"),
    with the hint for a list of videos."""
    hint = ""
    if looks_like_list_file(path):
        hint = "; it looks like a list of videos: did you mean --list? (afnet batch-predict --list FILE)"
    elif text_head(path) is not None:
        hint = "; it is a text file (a class file or a README?): give a video file or a frame folder"
    return NotAVideo(f"{path}: not a video ({what}){hint}")


def check_container(path: str, container, stream, limits: DecodeLimits, *, probing: bool = False) -> None:
    """Refuse a container FFmpeg opened that is not a real video, or whose header breaks a
    limit: text demuxers and codecs, a stream of no size, too large frames, too many frames,
    too long a duration. Nothing is decoded. ``probing``: the container was opened without
    decoding a frame, so a size the header does not give is left to the full open."""
    fmt = container.format.name if container.format is not None else ""
    codec = stream.codec_context.name if stream.codec_context is not None else ""
    if set(fmt.split(",")) & TEXT_DEMUXERS or codec in TEXT_CODECS:
        raise not_a_video(path, f"text, which FFmpeg reads as a picture with its {fmt} demuxer")
    width, height = stream.codec_context.width, stream.codec_context.height
    if (width <= 0 or height <= 0) and not probing:
        raise not_a_video(path, f"its {fmt} stream has no picture size")
    limits.check_frame(path, width, height)
    if stream.frames:
        limits.check_frames(path, int(stream.frames))
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1e6
    if seconds is not None:
        limits.check_seconds(path, seconds)
