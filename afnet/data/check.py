"""Dataset checker (``afnet check-data``): every problem, with list file, line and reason.

::

    annotation files --parse_annotations--> records + line problems
    records --check_record--> missing folder/video, missing frames, undecodable frame or video
    -> CheckResult(problems sorted by file and line, samples checked, what the labels were checked against)

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
from dataclasses import dataclass

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


def resolve_under_root(path, root) -> str:
    """An annotation or class file named on the command line, found as a config's ``data.train_list``
    is: an absolute path as it is, a relative one under ``root``. A relative path that exists only
    from the current folder (how ``check-data`` read it before) is taken from there."""
    path = os.fspath(path)
    if os.path.isabs(path):
        return path
    under = os.path.join(root, path)
    return path if not os.path.exists(under) and os.path.exists(path) else under


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check_dataset` found.

    Attributes:
        problems: every problem, sorted by file and line (empty: the dataset is fine).
        num_samples: listed samples checked (lines naming a video or frame folder, bad ones included).
        num_files: annotation files read.
        num_classes: the class count labels were checked against; ``None``: not checked (no
            preset, class file or count given).
        classes_from: where that count came from: a class file, ``num_classes``, ``preset <name>``.
    """

    problems: tuple[Problem, ...]
    num_samples: int
    num_files: int
    num_classes: int | None
    classes_from: str | None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: how many problems in how many samples, and what the labels were checked against."""
        found = f"{len(self.problems)} problem(s) found" if self.problems else "no problems found"
        files = f"{self.num_files} annotation file{'s' if self.num_files != 1 else ''}"
        classes = (f"labels checked against {self.num_classes} classes ({self.classes_from})"
                   if self.num_classes is not None else
                   "label range not checked: give a preset, a class file or a class count")
        return f"{found} in {self.num_samples} samples of {files}; {classes}"

    def to_dict(self) -> dict:
        return {"ok": self.ok, "num_problems": len(self.problems), "num_samples": self.num_samples,
                "num_files": self.num_files, "num_classes": self.num_classes, "classes_from": self.classes_from,
                "problems": [p.to_dict() for p in self.problems]}


def check_dataset(preset: str | DatasetConfig | None, root, annotation_files, *, kind: str = "auto",
                  class_file=None, num_classes: int | None = None, full_decode: bool = False,
                  backend: str = "pyav", timeout: float | None = DEFAULT_DECODE_TIMEOUT,
                  **overrides) -> CheckResult:
    """Walk ``annotation_files`` (one path or several) under ``root`` and return a
    :class:`CheckResult` naming every problem found.

    Annotation and class files are found as a config finds its lists (:func:`resolve_under_root`).
    Labels are checked against, first found: ``num_classes``, the names in ``class_file``, the
    preset's count. Without any of them (``preset=None``) the label range is not checked, and the
    result says so; the frame template is then ``{:05d}.jpg`` unless ``frame_template`` is given.
    """
    if num_classes is None:
        num_classes = overrides.pop("num_classes", None)
    else:
        overrides.pop("num_classes", None)
    base = preset if preset is not None else DatasetConfig(name="custom", num_classes=num_classes or 1)
    config = get_preset(base, **overrides)
    if isinstance(annotation_files, (str, os.PathLike)):
        annotation_files = [annotation_files]
    problems: list[Problem] = []
    class_names = None
    if class_file:
        class_file = resolve_under_root(class_file, root)
        try:
            class_names = load_class_names(class_file)
        except (AnnotationError, OSError) as exc:
            problems += getattr(exc, "problems", [Problem(str(class_file), 0, str(exc))])
    if num_classes is not None:
        classes_from = "num_classes"
        if class_names is not None and len(class_names) != num_classes:
            problems.append(Problem(str(class_file), 0, f"{len(class_names)} class names, but num_classes="
                                                        f"{num_classes}"))
    elif class_names is not None:
        num_classes, classes_from = len(class_names), str(class_file)
    elif preset is not None:
        num_classes, classes_from = config.num_classes, f"preset {config.name}"
    else:
        classes_from = None
    if num_classes is not None and num_classes != config.num_classes:
        config = get_preset(config, num_classes=num_classes)
    num_samples = 0
    for annotation_file in annotation_files:
        annotation_file = resolve_under_root(annotation_file, root)
        try:
            records, bad = parse_annotations(annotation_file, root, kind=kind, num_classes=num_classes,
                                             multi_label=config.multi_label, class_names=class_names,
                                             classes_from=classes_from)
        except ValueError as exc:
            problems.append(Problem(str(annotation_file), 0, str(exc)))
            continue
        problems += bad
        num_samples += len(records) + sum(1 for p in bad if p.line)
        for record in records:
            problems += check_record(record, config, full_decode=full_decode, backend=backend,
                                     timeout=timeout)
    return CheckResult(tuple(sorted(problems, key=lambda p: (p.list_file, p.line))), num_samples,
                       len(annotation_files), num_classes, classes_from)
