"""The resumable output of ``afnet batch-predict``: per-rank shard files of JSON lines, merged
in input order. No Lightning here: this is the job's state on disk, read before any process
starts and after all have finished.

::

    OUT.shard-<rank>.jsonl   one line per finished video (the ``afnet predict --json`` object),
                             appended by that rank, flushed and fsynced per batch
    OUT                      the merged result: one line per input video, in input order,
                             written atomically (afnet.io.atomic_write: temporary file, fsync,
                             rename) once every video has a line; the shard files are removed then

A full disk (ENOSPC, or EFBIG past RLIMIT_FSIZE) while appending cuts the shard back to its
last complete line (afnet.io.append_lines) and stops the job with one line naming the file;
while merging it leaves ``OUT`` as it was and keeps the shards: the same command resumes.

Resume: a video is done when a complete line (ending in a newline) names its path in ``OUT``
or in any shard, whatever the number of processes that wrote it. A line cut short by a kill
is ignored, and cut off before its rank appends again, so it is predicted once more and
counted once. Videos are keyed by their path as listed.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from afnet.io import atomic_write


def shard_path(out, rank: int) -> Path:
    """The shard file of global rank ``rank``."""
    return Path(f"{out}.shard-{rank}.jsonl")


def shard_files(out) -> list[Path]:
    """The shard files of ``out`` present now (any rank, any earlier run), sorted by rank."""
    out = Path(out)
    prefix = f"{out.name}.shard-"
    found = [p for p in out.parent.glob(f"{out.name}.shard-*.jsonl")
             if p.name[len(prefix):-len(".jsonl")].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(prefix):-len(".jsonl")]))


def _records(path: Path):
    """``(offset, path, ok)`` of each complete line of ``path``: a JSON object with a "path",
    ending in a newline. A cut or garbled line is skipped."""
    if not path.is_file():
        return
    offset = 0
    with open(path, "rb") as f:
        for line in f:
            start, offset = offset, offset + len(line)
            if not line.endswith(b"\n"):
                return
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("path"), str):
                yield start, row["path"], bool(row.get("ok"))


def cut_partial_line(path: Path) -> None:
    """Drop a last line without its newline (a write cut by a kill), so that the next append
    starts on a line of its own."""
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        keep, block = 0, 1 << 16
        end = size
        while end > 0:   # the last newline, read backwards block by block
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            at = chunk.rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            end = start
        f.truncate(keep)


def _index(out) -> dict[str, tuple[Path, int, bool]]:
    """path -> (file, offset, ok) of its line in ``OUT`` and the shards; a successful line wins
    over a failure (a retried video), else the first found."""
    found: dict[str, tuple[Path, int, bool]] = {}
    for file in [Path(out), *shard_files(out)]:
        for offset, path, ok in _records(file):
            if path not in found or (ok and not found[path][2]):
                found[path] = (file, offset, ok)
    return found


def unique(videos: list[str]) -> list[str]:
    """``videos`` with repeats removed (first kept): a path is predicted and written once."""
    return list(dict.fromkeys(videos))


def pending(videos: list[str], out, *, retry_failed: bool = False) -> list[tuple[int, str]]:
    """``(input position, path)`` of the videos of ``videos`` (see :func:`unique`) with no line
    yet (with ``retry_failed``, also those whose line is a failure)."""
    done = _index(out)
    return [(i, v) for i, v in enumerate(unique(videos))
            if v not in done or (retry_failed and not done[v][2])]


@dataclass
class MergeResult:
    """What :func:`merge` found: ``written`` lines (``failed`` of them failures) in ``out``;
    ``missing``: inputs with no line (then ``out`` is not written and the shards are kept)."""

    out: Path
    written: int
    failed: int
    missing: list[str]


def merge(out, videos: list[str]) -> MergeResult:
    """Write ``out``: the line of every video of ``videos`` (see :func:`unique`), in that order,
    copied as written; then remove the shards. Nothing is written while a video has no line."""
    out = Path(out)
    videos = unique(videos)
    index = _index(out)
    missing = [v for v in videos if v not in index]
    failed = sum(1 for v in videos if v in index and not index[v][2])
    if missing:
        return MergeResult(out, 0, failed, missing)
    handles = {}
    try:
        with atomic_write(out) as dst:
            for v in videos:
                file, offset, _ = index[v]
                src = handles.get(file) or handles.setdefault(file, open(file, "rb"))
                src.seek(offset)
                dst.write(src.readline())
    finally:
        for h in handles.values():
            h.close()
    for shard in shard_files(out):
        shard.unlink()
    return MergeResult(out, len(videos), failed, [])
