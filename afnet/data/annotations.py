"""Annotation formats: list files, Kinetics CSV, Something-Something V2 JSON, class names.

Every parser turns one annotation file into :class:`VideoRecord` objects and
:class:`Problem` objects (one per bad line)::

    list file / CSV / JSON --parse_*--> (records, problems)
                                            |
          load_annotations: problems ? raise AnnotationError(file:line: reason)
                                            v
                                      list[VideoRecord]

Formats (``kind``):

* ``"frames"``: ``<relative path> <num_frames> <label>`` per line (TSN/TSM).
* ``"videos"``: ``<relative path> <label>`` per line.
* ``"kinetics_csv"``: CSV with header ``label,youtube_id,time_start,time_end[,split[,...]]``.
* ``"sthv2_json"``: JSON list of ``{"id": ..., "template": ...}`` items.

In the list formats the path is every token but the last one (videos) or two
(frames), so it may contain spaces. The label token is an integer, or several
comma-separated integers for multi-label data (ActivityNet), e.g.
``v_abc 1520 3,17``. Blank lines and lines starting with ``#`` are ignored.
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

ANNOTATION_KINDS = ("frames", "videos", "kinetics_csv", "sthv2_json")
# File extensions taken as videos: where a Kinetics clip is looked for (in this order) and what
# ``afnet predict`` picks up in a folder. Any container FFmpeg demuxes is read (afnet.data.decoding).
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v",
                    ".264", ".265", ".3g2", ".3gp", ".asf", ".divx", ".f4v", ".flv", ".gif",
                    ".h264", ".h265", ".hevc", ".m1v", ".m2t", ".m2ts", ".m2v", ".mj2", ".mjpeg",
                    ".mpeg", ".mpg", ".mts", ".mxf", ".nut", ".ogm", ".ogv", ".qt", ".rm", ".rmvb",
                    ".swf", ".ts", ".vob", ".wmv", ".y4m")


class AnnotationError(ValueError):
    """An annotation file has bad lines; the message names file, line and reason."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        shown = "\n  ".join(str(p) for p in self.problems[:10])
        more = f"\n  ... and {len(self.problems) - 10} more" if len(self.problems) > 10 else ""
        super().__init__(f"{len(self.problems)} annotation problem(s):\n  {shown}{more}")


@dataclass(frozen=True)
class Problem:
    """One problem found in a dataset: where (file, line) and what is wrong."""

    list_file: str
    line: int  # 1-based line number (0 when the whole file is at fault)
    reason: str
    path: str | None = None  # the video/folder concerned, when known

    def __str__(self) -> str:
        where = f"{self.list_file}:{self.line}" if self.line else self.list_file
        return f"{where}: {self.reason}"

    def to_dict(self) -> dict:
        return {"list_file": self.list_file, "line": self.line, "path": self.path,
                "reason": self.reason}


@dataclass(frozen=True)
class Evidence:
    """Where a video's class evidence is: its evidence ``frames`` (0-based), and where
    annotated, per frame of the video the ``regions`` cell (raster index in a ``grid x grid``
    grid over the frame) that holds it."""

    frames: tuple[int, ...]
    regions: tuple[int, ...] | None = None
    grid: int = 0


@dataclass(frozen=True)
class VideoRecord:
    """One annotated video: where it is, how many frames, its label(s), its origin."""

    path: str  # absolute path of the frame folder or video file
    labels: tuple[int, ...]
    num_frames: int | None = None  # known for frame folders; None for video files
    list_file: str = ""
    line: int = 0
    evidence: Evidence | None = None  # where the class evidence is, where annotated

    @property
    def label(self) -> int:
        return self.labels[0]

    @property
    def where(self) -> str:
        return f"{self.list_file}:{self.line}"


# ----------------------------------------------------------------------- labels
def parse_labels(token: str, num_classes: int | None, multi_label: bool = True,
                 classes_from: str | None = None) -> tuple[int, ...]:
    """``"3"`` -> ``(3,)``; ``"3,17"`` -> ``(3, 17)`` (only when ``multi_label``); raises
    ValueError with the reason. ``classes_from``: where ``num_classes`` came from (a class
    file, a preset), named in the message of a label outside the range."""
    parts = token.split(",")
    try:
        labels = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"label {token!r} is not an integer (expected e.g. '3' or, multi-label, '3,17')"
        ) from None
    if num_classes is not None:
        bad = [lab for lab in labels if not 0 <= lab < num_classes]
        if bad:
            origin = f"{num_classes} classes in {classes_from}" if classes_from else f"num_classes={num_classes}"
            raise ValueError(f"label {bad[0]} outside the class range [0, {num_classes - 1}] ({origin})")
    if len(set(labels)) != len(labels):
        raise ValueError(f"label {token!r} repeats a class")
    if len(labels) > 1 and not multi_label:
        raise ValueError(f"several labels {','.join(map(str, labels))} in a single-label dataset "
                         "(set multi_label=True, as the activitynet preset does)")
    return labels


def list_lines(list_file: Path):
    """``(line number, stripped line)`` of each line of a list file that is neither blank nor
    a ``#`` comment."""
    with open(list_file, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if line and not line.startswith("#"):
                yield number, line


# ------------------------------------------------------------------ list files
def parse_frame_list(list_file, root, num_classes=None, multi_label=False, classes_from=None):
    """Parse ``<path> <num_frames> <label>`` lines. Returns ``(records, problems)``."""
    list_file = Path(list_file)
    records, problems = [], []
    for number, line in list_lines(list_file):
        tokens = line.split()
        if len(tokens) < 3:
            problems.append(Problem(str(list_file), number,
                                    f"malformed line {line!r}: expected "
                                    "'<path> <num_frames> <label>'"))
            continue
        rel, frames_tok, label_tok = " ".join(tokens[:-2]), tokens[-2], tokens[-1]
        path = os.path.join(root, rel)
        try:
            num_frames = int(frames_tok)
            if num_frames < 1:
                raise ValueError
        except ValueError:
            problems.append(Problem(str(list_file), number,
                                    f"num_frames {frames_tok!r} is not a positive integer "
                                    "(expected '<path> <num_frames> <label>')", path))
            continue
        try:
            labels = parse_labels(label_tok, num_classes, multi_label, classes_from)
        except ValueError as exc:
            problems.append(Problem(str(list_file), number, str(exc), path))
            continue
        records.append(VideoRecord(path, labels, num_frames, str(list_file), number))
    return records, problems


def parse_video_list(list_file, root, num_classes=None, multi_label=False, classes_from=None):
    """Parse ``<path> <label>`` lines. Returns ``(records, problems)``."""
    list_file = Path(list_file)
    records, problems = [], []
    for number, line in list_lines(list_file):
        tokens = line.split()
        if len(tokens) < 2:
            problems.append(Problem(str(list_file), number,
                                    f"malformed line {line!r}: expected '<path> <label>'"))
            continue
        rel, label_tok = " ".join(tokens[:-1]), tokens[-1]
        path = os.path.join(root, rel)
        try:
            labels = parse_labels(label_tok, num_classes, multi_label, classes_from)
        except ValueError as exc:
            problems.append(Problem(str(list_file), number, str(exc), path))
            continue
        records.append(VideoRecord(path, labels, None, str(list_file), number))
    return records, problems


# --------------------------------------------------------------- Kinetics CSV
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def kinetics_file_name(youtube_id: str, time_start: int, time_end: int, ext: str = ".mp4") -> str:
    """``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`` (the Kinetics download convention)."""
    return f"{youtube_id}_{time_start:06d}_{time_end:06d}{ext}"


def resolve_kinetics_path(root, label: str, youtube_id: str, start: int, end: int) -> str:
    """Find a Kinetics clip under ``root``; first match wins, in this order:

    ``root/<label>/<name>``, ``root/<label with '_' for ' '>/<name>``, ``root/<name>``
    for each extension in :data:`VIDEO_EXTENSIONS`. When none exists the first
    candidate is returned, so that errors name the expected location.
    """
    folders = [os.path.join(root, label), os.path.join(root, label.replace(" ", "_")),
               str(root)]
    candidates = [os.path.join(folder, kinetics_file_name(youtube_id, start, end, ext))
                  for ext in VIDEO_EXTENSIONS for folder in folders]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    return candidates[0]


def parse_kinetics_csv(csv_file, root, class_names=None, num_classes=None):
    """Parse a Kinetics CSV. Class names map to indices by ``class_names`` (list
    order); without it, by the sorted set of names in this file."""
    csv_file = Path(csv_file)
    records, problems = [], []
    with open(csv_file, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return records, [Problem(str(csv_file), 0, "empty CSV (expected a header "
                                 f"{','.join(KINETICS_COLUMNS)},...)")]
    header = [h.strip() for h in rows[0]]
    missing = [c for c in KINETICS_COLUMNS if c not in header]
    if missing:
        return records, [Problem(str(csv_file), 1, f"CSV header {header} lacks column(s) "
                                 f"{missing}; expected {','.join(KINETICS_COLUMNS)}[,split]")]
    col = {name: header.index(name) for name in KINETICS_COLUMNS}
    body = [(n, r) for n, r in enumerate(rows[1:], start=2) if any(c.strip() for c in r)]
    if class_names is None:
        class_names = sorted({r[col["label"]].strip() for _, r in body if len(r) == len(header)})
    index = {name: i for i, name in enumerate(class_names)}
    for number, row in body:
        if len(row) != len(header):
            problems.append(Problem(str(csv_file), number,
                                    f"malformed row with {len(row)} fields (header has "
                                    f"{len(header)}: {','.join(header)})"))
            continue
        label = row[col["label"]].strip()
        ytid = row[col["youtube_id"]].strip()
        try:
            start, end = int(float(row[col["time_start"]])), int(float(row[col["time_end"]]))
        except ValueError:
            problems.append(Problem(str(csv_file), number,
                                    "time_start/time_end are not numbers "
                                    f"({row[col['time_start']]!r}, {row[col['time_end']]!r})"))
            continue
        path = resolve_kinetics_path(root, label, ytid, start, end)
        if label not in index:
            problems.append(Problem(str(csv_file), number,
                                    f"class name {label!r} not in the class list "
                                    f"({len(class_names)} names)", path))
            continue
        lab = index[label]
        if num_classes is not None and lab >= num_classes:
            problems.append(Problem(str(csv_file), number,
                                    f"class {label!r} has index {lab} >= num_classes="
                                    f"{num_classes}", path))
            continue
        records.append(VideoRecord(path, (lab,), None, str(csv_file), number))
    return records, problems


# -------------------------------------------------------- Something-Something V2
def strip_template(template: str) -> str:
    """``"Putting [something] on [something]"`` -> ``"Putting something on something"``."""
    return template.replace("[", "").replace("]", "")


def parse_sthv2_json(json_file, root, class_names, num_classes=None, ext=".webm"):
    """Parse a Something-Something V2 JSON list; video ``root/{id}.webm``, class =
    the template without brackets, looked up in ``class_names`` (from labels.json)."""
    json_file = Path(json_file)
    with open(json_file, encoding="utf-8") as fh:
        try:
            items = json.load(fh)
        except json.JSONDecodeError as exc:
            return [], [Problem(str(json_file), exc.lineno, f"invalid JSON: {exc.msg}")]
    if not isinstance(items, list):
        return [], [Problem(str(json_file), 0, "expected a JSON list of {id, template} items")]
    index = {name: i for i, name in enumerate(class_names)}
    records, problems = [], []
    for number, item in enumerate(items, start=1):
        # ``line`` is the item's position (1-based) in the JSON list.
        if not isinstance(item, dict) or "id" not in item or "template" not in item:
            problems.append(Problem(str(json_file), number,
                                    f"item {number} lacks key 'id' or 'template' "
                                    "(expected {'id': ..., 'template': ...})"))
            continue
        path = os.path.join(root, f"{item['id']}{ext}")
        name = strip_template(item["template"])
        if name not in index:
            problems.append(Problem(str(json_file), number,
                                    f"template {name!r} not found in labels.json", path))
            continue
        lab = index[name]
        if num_classes is not None and lab >= num_classes:
            problems.append(Problem(str(json_file), number,
                                    f"class index {lab} >= num_classes={num_classes}", path))
            continue
        records.append(VideoRecord(path, (lab,), None, str(json_file), number))
    return records, problems


# ---------------------------------------------------------------- class names
def load_class_names(path, fmt: str = "auto") -> list[str]:
    """Class names in index order.

    * ``category``: ``category.txt``, one name per line, index = line order
      (for SthV1 this is the order of the authors' released models).
    * ``classind``: ``classInd.txt``, ``<1-based index> <name>`` lines.
    * ``labels_json``: ``labels.json``, ``{name: index}`` (index int or string).

    ``auto`` picks ``labels_json`` for ``.json``, ``classind`` when the file
    name starts with ``classind`` (any case), else ``category``.
    """
    path = Path(path)
    if fmt == "auto":
        if path.suffix.lower() == ".json":
            fmt = "labels_json"
        elif path.name.lower().startswith("classind"):
            fmt = "classind"
        else:
            fmt = "category"
    if fmt == "labels_json":
        with open(path, encoding="utf-8") as fh:
            mapping = json.load(fh)
        by_index: dict[int, str] = {}
        for name, idx in mapping.items():
            try:
                i = int(idx)
            except (TypeError, ValueError):
                raise AnnotationError([Problem(str(path), 0, f"key {name!r}: index {idx!r} "
                                               "is not an integer")]) from None
            by_index[i] = name
        return _dense(by_index, path)
    if fmt == "classind":
        by_index = {}
        for number, line in list_lines(path):
            m = re.fullmatch(r"(\d+)\s+(.+)", line)
            if not m:
                raise AnnotationError([Problem(str(path), number,
                                               f"malformed line {line!r}: expected "
                                               "'<1-based index> <name>'")])
            by_index[int(m.group(1)) - 1] = m.group(2).strip()
        return _dense(by_index, path)
    if fmt == "category":
        return [line for _, line in list_lines(path)]
    raise ValueError(f"unknown class file format {fmt!r}; accepted: auto, category, "
                     "classind, labels_json")


def _dense(by_index: dict[int, str], path: Path) -> list[str]:
    missing = sorted(set(range(len(by_index))) - set(by_index))
    if missing:
        raise AnnotationError([Problem(str(path), 0, f"class indices are not 0..{len(by_index)-1}"
                                       f" (missing {missing[:5]})")])
    return [by_index[i] for i in range(len(by_index))]


# --------------------------------------------------------------------- loading
def detect_kind(annotation_file, root) -> str:
    """Guess the annotation kind: ``.csv`` -> kinetics_csv, ``.json`` -> sthv2_json;
    a list file is ``frames`` when the path of its first line (every token but the
    last two) is a directory under ``root``, else ``videos``."""
    suffix = Path(annotation_file).suffix.lower()
    if suffix == ".csv":
        return "kinetics_csv"
    if suffix == ".json":
        return "sthv2_json"
    for _, line in list_lines(Path(annotation_file)):
        tokens = line.split()
        if len(tokens) >= 3 and os.path.isdir(os.path.join(root, " ".join(tokens[:-2]))):
            return "frames"
        return "videos"
    return "frames"


def parse_annotations(annotation_file, root, *, kind="auto", num_classes=None,
                      multi_label=False, class_names=None, classes_from=None):
    """Parse any supported annotation file. Returns ``(records, problems)``. ``classes_from``:
    where ``num_classes`` came from, named by a label outside the range."""
    if kind == "auto":
        kind = detect_kind(annotation_file, root)
    if not os.path.isfile(annotation_file):
        return [], [Problem(str(annotation_file), 0, "annotation file not found")]
    if kind == "frames":
        return parse_frame_list(annotation_file, root, num_classes, multi_label, classes_from)
    if kind == "videos":
        return parse_video_list(annotation_file, root, num_classes, multi_label, classes_from)
    if kind == "kinetics_csv":
        return parse_kinetics_csv(annotation_file, root, class_names, num_classes)
    if kind == "sthv2_json":
        if class_names is None:
            raise ValueError(f"{annotation_file}: Something-Something V2 JSON needs class names "
                             "(pass class_file='labels.json'; afnet check-data: --labels labels.json)")
        return parse_sthv2_json(annotation_file, root, class_names, num_classes)
    raise ValueError(f"unknown annotation kind {kind!r}; accepted: auto, "
                     + ", ".join(ANNOTATION_KINDS))


def load_annotations(annotation_file, root, **kwargs) -> list[VideoRecord]:
    """:func:`parse_annotations`, raising :class:`AnnotationError` on any bad line."""
    records, problems = parse_annotations(annotation_file, root, **kwargs)
    if problems:
        raise AnnotationError(problems)
    if not records:
        raise AnnotationError([Problem(str(annotation_file), 0, "no videos listed")])
    return records


def _indices(value, below: int | None = None) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                           and (below is None or t < below) for t in value)


def _evidence_entry(entry) -> Evidence | str:
    """One entry of an evidence file as :class:`Evidence`, or what is wrong with it."""
    if isinstance(entry, list):
        return Evidence(tuple(sorted(set(entry)))) if _indices(entry) else "expected a list of frame indices >= 0"
    if not isinstance(entry, dict) or set(entry) - {"frames", "regions", "grid"} or "frames" not in entry:
        return 'expected a list of frame indices or {"frames": [...], "regions": [...], "grid": G}'
    if not _indices(entry["frames"]):
        return "frames: expected a list of frame indices >= 0"
    if "regions" not in entry and "grid" not in entry:
        return Evidence(tuple(sorted(set(entry["frames"]))))
    grid = entry.get("grid")
    if not (isinstance(grid, int) and not isinstance(grid, bool) and grid > 0):
        return "grid: expected a positive integer (regions per side) with regions"
    regions = entry.get("regions")
    if not _indices(regions, grid * grid) or not regions:
        return f"regions: expected one cell index in 0..{grid * grid - 1} per frame"
    if any(t >= len(regions) for t in entry["frames"]):
        return f"frames: an evidence frame beyond the {len(regions)} frames whose regions are given"
    return Evidence(tuple(sorted(set(entry["frames"]))), tuple(regions), grid)


def load_evidence(path, root) -> dict[str, Evidence]:
    """An evidence file: JSON ``{path as listed (relative to root): entry}`` naming, per video,
    where its class evidence is (``make_synthetic(task="evidence")`` writes one). An entry is
    a list of the 0-based evidence frames, or ``{"frames": [...], "regions": [cell per frame],
    "grid": G}`` with the cell (raster index in a G x G grid over the frame) holding the
    evidence. Returns ``{absolute path: Evidence}``; a malformed entry raises
    :class:`AnnotationError` naming the file and the entry."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise AnnotationError([Problem(str(path), 0, "evidence file not found")]) from None
    except json.JSONDecodeError as exc:
        raise AnnotationError([Problem(str(path), exc.lineno, f"not valid JSON: {exc.msg}")]) from None
    if not isinstance(data, dict):
        raise AnnotationError([Problem(str(path), 0, "expected a JSON object {path: [frame indices]}")])
    out, problems = {}, []
    for key, entry in data.items():
        evidence = _evidence_entry(entry)
        if isinstance(evidence, str):
            problems.append(Problem(str(path), 0, f"entry {key!r}: {evidence}, got {entry!r}"))
            continue
        out[os.path.normpath(os.path.join(root, key))] = evidence
    if problems:
        raise AnnotationError(problems)
    return out
