"""Dataset checker (``afnet check-data``): every problem, with list file, line and reason.

::

    annotation files --parse_annotations--> records + line problems
    records --check_record--> missing folder/video, missing frames, undecodable frame or video
    -> sorted list[Problem]

Checks: malformed line; non-numeric label or label outside ``[0, num_classes)``;
missing frame folder or video file; fewer frames on disk than the list says
(frames ``template.format(1..n)`` must all exist); frame images or videos that
cannot be decoded: the first and last frame of each folder or video by default,
every frame with ``full_decode=True`` (frame folders: every listed image, each
bad one counted and the first named; videos: decoded in one pass, in chunks).
Reading one video or folder is limited to ``timeout`` seconds per step (default
:data:`~afnet.data.decoding.DEFAULT_DECODE_TIMEOUT`; ``None`` or 0: no limit).
"""
from __future__ import annotations

import os

from afnet.data.annotations import (
    AnnotationError,
    Problem,
    VideoRecord,
    load_class_names,
    parse_annotations,
)
from afnet.data.decoding import FrameFolderReader, open_video
from afnet.data.presets import DatasetConfig, get_preset
from afnet.data.readers import DEFAULT_DECODE_TIMEOUT, DecodeError, DecodeTimeout

CHUNK = 64  # frames decoded per call in a full decode (bounded memory)


def _frame_problem(reader: FrameFolderReader, indices) -> str | None:
    """Decode the images ``indices`` of a frame folder one by one; describe the bad ones."""
    bad, shapes = [], {}
    for i in indices:
        try:
            shapes.setdefault(tuple(reader.get_frames([i]).shape[2:]), i)
        except DecodeTimeout:
            raise
        except DecodeError as exc:
            bad.append(str(exc))
    if len(bad) == 1:
        return f"unreadable frame image {bad[0]}"
    if bad:
        return f"{len(bad)} of {len(indices)} frame images checked are unreadable; first: {bad[0]}"
    if len(shapes) > 1:
        (a, i), (b, j) = sorted(shapes.items(), key=lambda kv: kv[1])[:2]
        return (f"frame images change size in {reader.path}: {reader.frame_path(i)} is "
                f"{a[1]}x{a[0]}, {reader.frame_path(j)} is {b[1]}x{b[0]}")
    return None


def check_record(record: VideoRecord, config: DatasetConfig, *, full_decode: bool = False,
                 backend: str = "pyav", timeout: float | None = DEFAULT_DECODE_TIMEOUT) -> list[Problem]:
    """Problems of one listed video (empty list when it is fine)."""
    def problem(reason: str) -> Problem:
        return Problem(record.list_file, record.line, reason, record.path)

    if record.num_frames is not None:  # frame folder
        if not os.path.isdir(record.path):
            return [problem(f"frame folder not found: {record.path}")]
        names = set(os.listdir(record.path))
        missing = [i for i in range(1, record.num_frames + 1)
                   if config.frame_template.format(i) not in names]
        if missing:
            found = record.num_frames - len(missing)
            return [problem(f"{found} of {record.num_frames} listed frames on disk in "
                            f"{record.path} (first missing: "
                            f"{config.frame_template.format(missing[0])})")]
        n = record.num_frames
        try:
            reader = FrameFolderReader(record.path, config.frame_template, n, timeout=timeout)
            reason = _frame_problem(reader, range(n) if full_decode else sorted({0, n - 1}))
        except DecodeError as exc:
            reason = str(exc)
        return [problem(reason)] if reason else []
    if not os.path.isfile(record.path):
        return [problem(f"video not found: {record.path}")]
    try:
        with open_video(record.path, backend, timeout=timeout) as reader:
            n = len(reader)
            if full_decode:
                for start in range(0, n, CHUNK):
                    reader.get_frames(range(start, min(n, start + CHUNK)))
            else:
                reader.get_frames(sorted({0, n - 1}))
    except DecodeError as exc:
        return [problem(f"cannot decode video: {exc}")]
    return []


def check_dataset(preset: str | DatasetConfig, root, annotation_files, *, kind: str = "auto",
                  class_file=None, full_decode: bool = False, backend: str = "pyav",
                  timeout: float | None = DEFAULT_DECODE_TIMEOUT, **overrides) -> list[Problem]:
    """Walk ``annotation_files`` (one path or several) under ``root``; return every
    problem found (an empty list means the dataset is fine)."""
    config = get_preset(preset, **overrides)
    if isinstance(annotation_files, (str, os.PathLike)):
        annotation_files = [annotation_files]
    problems: list[Problem] = []
    class_names = None
    if class_file:
        try:
            class_names = load_class_names(class_file)
        except (AnnotationError, OSError) as exc:
            problems += getattr(exc, "problems", [Problem(str(class_file), 0, str(exc))])
    for annotation_file in annotation_files:
        try:
            records, bad = parse_annotations(annotation_file, root, kind=kind,
                                             num_classes=config.num_classes,
                                             multi_label=config.multi_label,
                                             class_names=class_names)
        except ValueError as exc:
            problems.append(Problem(str(annotation_file), 0, str(exc)))
            continue
        problems += bad
        for record in records:
            problems += check_record(record, config, full_decode=full_decode, backend=backend,
                                     timeout=timeout)
    return sorted(problems, key=lambda p: (p.list_file, p.line))
