"""Writers that fail safely: every file afnet writes for a long job (checkpoints, the JSON Lines
shards and their merge, ONNX exports, metrics) is either whole or absent, and a full disk stops
the job with one line naming the file.

::

    atomic_write(path)     temporary file in path's folder ──write──> flush + fsync
                           ──os.replace──> path ──fsync the folder (the rename itself survives a crash)
                           any error: the temporary file is removed, path is untouched
    append_lines(path)     whole lines appended in one write, then fsync; a write cut short
                           (disk full) is truncated back, so the file ends on a complete line

A write that fails for lack of room (ENOSPC, EDQUOT, or EFBIG past ``RLIMIT_FSIZE``) raises
:class:`DiskFull` naming the path; the command line prints it as one line and exits 1.
:func:`ignore_file_size_signal` makes ``RLIMIT_FSIZE`` give EFBIG instead of killing the
process with SIGXFSZ, so that limit reads as a full disk.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
from pathlib import Path

NO_ROOM = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})


class DiskFull(OSError):
    """No room to write ``path`` (ENOSPC, EDQUOT, EFBIG). The files written before it are intact."""

    def __init__(self, path, cause: OSError):
        reason = {errno.EFBIG: "file too large for the file size limit", errno.ENOSPC: "no space left on device"}.get(
            cause.errno, os.strerror(cause.errno or 0).lower())
        super().__init__(cause.errno, f"cannot write {path}: {reason}; the files written before it are intact: "
                                      f"free space and run the same command again to resume")
        self.path = str(path)

    def __str__(self) -> str:
        return self.strerror


def no_room(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a write that found no room."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_ROOM:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full(exc: BaseException, path) -> BaseException:
    """``exc`` as a :class:`DiskFull` naming ``path`` when it is a write that found no room, else ``exc``."""
    if isinstance(exc, DiskFull):
        return exc
    if no_room(exc):
        cause = exc
        while not (isinstance(cause, OSError) and cause.errno in NO_ROOM):
            cause = cause.__cause__ or cause.__context__
        return DiskFull(path, cause)
    return exc


def ignore_file_size_signal() -> None:
    """Past ``RLIMIT_FSIZE`` the kernel sends SIGXFSZ, whose default kills the process without a
    word; ignored, the write fails with EFBIG and is reported as a full disk."""
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def fsync_folder(folder) -> None:
    """fsync a folder, so that a rename or a new file in it survives a crash (where the OS allows)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_path(path) -> Path:
    """A temporary name for ``path`` in its folder (hidden, per process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def commit(tmp, path) -> None:
    """Make the written file ``tmp`` the file ``path``: fsync it, rename it over ``path``, fsync the folder."""
    fd = os.open(str(tmp), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_folder(Path(path).parent)


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", **kwargs):
    """Open a temporary file beside ``path`` for writing (``mode`` "wb" or "w"); when the block
    ends without error it becomes ``path`` (fsync, rename, fsync of the folder). On any error the
    temporary file is removed and ``path`` keeps what it held; no room is a :class:`DiskFull`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
        commit(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        error = disk_full(exc, path)
        if error is exc:
            raise
        raise error from None


def write_bytes(path, data: bytes) -> None:
    """``path`` holds ``data``, whole, or keeps what it held (see :func:`atomic_write`)."""
    with atomic_write(path) as f:
        f.write(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def torch_save(obj, path) -> None:
    """``torch.save(obj)`` into ``path`` atomically (see :func:`atomic_write`). Serialised in memory
    first: torch's own writer reports a failed write as a RuntimeError without its errno, a
    plain write says ENOSPC or EFBIG."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getbuffer())


def append_lines(f, lines: list[str]) -> None:
    """Append ``lines`` (each without its newline) to the open binary file ``f`` in one write
    and fsync it. A write that fails part way (disk full) is truncated back to where it began,
    so the file always ends on a complete line; no room is a :class:`DiskFull` naming the file."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    start = f.seek(0, os.SEEK_END)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(f.fileno(), view):]
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(f.fileno(), start)
        raise disk_full(exc, f.name) from None
    try:
        os.fsync(f.fileno())
    except OSError as exc:
        raise disk_full(exc, f.name) from None
