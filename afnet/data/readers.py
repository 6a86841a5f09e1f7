"""What every frame reader shares, with no PyAV in it: the reader interface (``len``,
``get_frames``, ``close``, a context manager), the errors naming the file, the time limits,
and the optional backends behind that interface (``decord``, ``torchcodec``).
:mod:`afnet.data.decoding` builds the PyAV and frame-folder readers on it and opens them."""
from __future__ import annotations

import os
import time

import numpy as np
import torch

BACKENDS = ("pyav", "decord", "torchcodec")


# Seconds a reader may spend opening one video, and on each ``get_frames`` call, before it
# gives up with DecodeTimeout (a batch then goes on with the next video).
DEFAULT_DECODE_TIMEOUT = 60.0


class DecodeError(RuntimeError):
    """A video or frame cannot be decoded; the message names the file."""


class DecodeTimeout(DecodeError):
    """Reading a video took longer than its time limit; the message names the file."""


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


def check_timeout(timeout, name: str = "timeout") -> float | None:
    """``timeout`` as seconds (``None`` when there is no limit: ``None`` or 0)."""
    if timeout is None:
        return None
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name}={timeout!r}: expected a number of seconds >= 0 (0: no limit)")
    return value or None


class _Deadline:
    """The time limit of one reading operation; :meth:`check` raises :class:`DecodeTimeout`."""

    def __init__(self, path: str, timeout: float | None, what: str):
        self.path, self.timeout, self.what = path, check_timeout(timeout), what
        self.end = None if self.timeout is None else time.monotonic() + self.timeout

    def check(self) -> None:
        if self.end is not None and time.monotonic() > self.end:
            raise DecodeTimeout(f"{self.path}: {self.what} took longer than the decode time limit of "
                                f"{self.timeout:g} s (timeout / --decode-timeout; 0 for none)")


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
