"""Dataset checker (``afnet check-data``): every problem, with list file, line and reason.

::

    annotation files --parse_annotations--> records + line problems
    records --check_record--> missing folder/video, missing frames, undecodable video
    -> sorted list[Problem]

Checks: malformed line; non-numeric label or label outside ``[0, num_classes)``;
missing frame folder or video file; fewer frames on disk than the list says
(frames ``template.format(1..n)`` must all exist); video that cannot be opened,
has no frames, or whose first and last frames (all frames with
``full_decode=True``) cannot be decoded.
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
from afnet.data.decoding import DecodeError, open_video
from afnet.data.presets import DatasetConfig, get_preset


def check_record(record: VideoRecord, config: DatasetConfig, *, full_decode: bool = False,
                 backend: str = "pyav") -> list[Problem]:
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
        return []
    if not os.path.isfile(record.path):
        return [problem(f"video not found: {record.path}")]
    try:
        with open_video(record.path, backend) as reader:
            n = len(reader)
            reader.get_frames(range(n) if full_decode else sorted({0, n - 1}))
    except DecodeError as exc:
        return [problem(f"cannot decode video: {exc}")]
    return []


def check_dataset(preset: str | DatasetConfig, root, annotation_files, *, kind: str = "auto",
                  class_file=None, full_decode: bool = False, backend: str = "pyav",
                  **overrides) -> list[Problem]:
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
            problems += check_record(record, config, full_decode=full_decode, backend=backend)
    return sorted(problems, key=lambda p: (p.list_file, p.line))
