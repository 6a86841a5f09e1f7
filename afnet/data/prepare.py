"""Dataset preparation (``afnet prepare``): an official download -> what the presets read.

::

    official annotations --read_<dataset>--> Plan: class names + per split [Item(name, labels, source)]
        |                                    (malformed line, unknown class, missing video: a Problem, skipped)
        v
    Item.source is a video (sthv2, kinetics, minikinetics, activitynet)
        --extract_frames, --workers processes, resumable--> OUT/frames/<name>/<preset's frame template>
    Item.source is a frame folder (sthv1, jester: shipped as JPEG frames)
        --count its frames--> listed where it lies (OUT/frames links to the download's frame folder)
        v
    OUT/train_videofolder.txt, OUT/val_videofolder.txt   ``frames/<name> <num_frames> <label[,label...]>``
    OUT/category.txt                                      one class name per line, in index order

These are the files ``configs/<dataset>/dataset.yaml`` names, so ``afnet train --config
configs/sthv2/dataset.yaml data.root=OUT`` reads them and ``afnet check-data train_videofolder.txt
--root OUT --preset sthv2 --labels category.txt`` checks them.

Resumable: each video is decoded into ``<folder>.partial`` and renamed when complete, so a run
that was stopped skips the folders already done and redoes the one it was writing. A bad source
(an undecodable video, a missing file, an annotation line naming an unknown class) is named in
the report's problems and left out of the lists; the run goes on.

The official layouts read (``--src`` is the folder holding them; ``<a>|<b>`` lists the names
accepted, first found wins):

* ``sthv1``: ``something-something-v1-{train,validation}.csv`` (``id;class name``),
  ``something-something-v1-labels.csv`` (one name per line), frames
  ``20bn-something-something-v1/<id>/00001.jpg``. Classes sorted by name (TRN's and TSM's
  ``category.txt``, hence the authors' released models).
* ``jester``: the same with ``jester-v1-*`` and ``20bn-jester-v1/``; classes sorted by name.
* ``sthv2``: ``something-something-v2-{train,validation,labels}.json`` (or the download's
  ``labels/{train,validation,labels}.json``), videos ``20bn-something-something-v2/<id>.webm``;
  class = the item's ``template`` without brackets, index from the labels file.
* ``kinetics``: ``train.csv`` / ``validate.csv`` (``label,youtube_id,time_start,time_end,split``),
  clips ``{youtube_id}_{time_start:06d}_{time_end:06d}.<ext>`` anywhere under ``--src``; classes
  sorted by name (or in the order of ``labels``).
* ``minikinetics``: the Kinetics layout restricted to the classes of ``labels`` (required; their
  order is the index order) and, with ``ids``, to the listed YouTube ids (Mini-Kinetics-200's
  ``train_ytid_list.txt`` / ``val_ytid_list.txt``).
* ``activitynet``: ``activity_net.v1-3.min.json`` (``database``: ``{id: {subset, annotations:
  [{segment, label}]}}``), videos ``v_<id>.<ext>`` (or ``<id>.<ext>``) anywhere under ``--src``;
  training -> train, validation -> val; labels = every class annotated in the video
  (multi-label); classes sorted by name (or in the order of ``labels``).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from afnet.data.annotations import (
    VIDEO_EXTENSIONS,
    Problem,
    kinetics_file_name,
    list_lines,
    load_class_names,
    strip_template,
)
from afnet.data.presets import get_preset

DATASETS = ("sthv1", "sthv2", "jester", "kinetics", "minikinetics", "activitynet")
SPLITS = ("train", "val")
LIST_FILES = {"train": "train_videofolder.txt", "val": "val_videofolder.txt"}  # configs/<dataset>/dataset.yaml
CLASS_FILE = "category.txt"
FRAMES = "frames"          # OUT/frames/<name>: one frame folder per video
PARTIAL = ".partial"       # a frame folder being written
CHUNK = 16                 # frames decoded per call while extracting (bounded memory at full HD)
# a timeout argument left out: afnet.data.readers.DEFAULT_DECODE_TIMEOUT (imported when a video is read:
# it loads torch, and building the command line must not)
DEFAULT = "default"


@dataclass(frozen=True)
class Item:
    """One video to list: its frame folder ``name`` under ``OUT/frames``, its ``labels``, and
    its ``source`` (a video file to extract, or a shipped frame folder)."""

    name: str
    labels: tuple[int, ...]
    source: str
    list_file: str         # the annotation file and line (0: the whole file) naming it, for messages
    line: int = 0
    frames_given: bool = False


@dataclass
class Plan:
    """What the official annotations say: class names, the items of each split, the problems."""

    classes: list[str]
    splits: dict[str, list[Item]]
    problems: list[Problem] = field(default_factory=list)
    excluded: int = 0      # rows outside a requested subset (minikinetics), not problems
    frames_root: str | None = None   # sthv1, jester: the download's frame folder


@dataclass(frozen=True)
class PrepareReport:
    """What :func:`prepare_dataset` wrote and what it left out."""

    dataset: str
    out: Path
    class_file: Path
    num_classes: int
    lists: dict[str, Path]            # split -> list file
    listed: dict[str, int]            # split -> videos listed
    extracted: int                    # videos decoded into frame folders by this run
    reused: int                       # frame folders already complete (an earlier run) or shipped
    excluded: int                     # rows outside the requested subset (minikinetics)
    problems: tuple[Problem, ...]     # every video left out, with where and why

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "out": str(self.out), "class_file": str(self.class_file),
                "num_classes": self.num_classes, "lists": {k: str(v) for k, v in self.lists.items()},
                "listed": self.listed, "extracted": self.extracted, "reused": self.reused,
                "excluded": self.excluded, "num_problems": len(self.problems),
                "problems": [p.to_dict() for p in self.problems]}

    def summary(self) -> str:
        listed = ", ".join(f"{n} {split}" for split, n in self.listed.items())
        parts = [f"{self.dataset}: {listed} videos listed, {self.num_classes} classes",
                 f"{self.extracted} extracted, {self.reused} reused"]
        if self.excluded:
            parts.append(f"{self.excluded} outside the subset")
        parts.append(f"{len(self.problems)} skipped" if self.problems else "none skipped")
        return "; ".join(parts)


# ------------------------------------------------------------------ finding the official files
def _find(src: Path, names: tuple[str, ...], what: str) -> Path:
    """The first of ``names`` (relative to ``src``) that exists; else an error listing them."""
    for name in names:
        if (src / name).exists():
            return src / name
    raise FileNotFoundError(f"--src {src}: no {what} (looked for {', '.join(names)})")


def _frames_root(src: Path, folder: str) -> Path:
    """The download's frame folder: ``src/folder`` where it exists, else ``src`` itself."""
    return src / folder if (src / folder).is_dir() else src


def _video_index(src: Path, skip=None) -> dict[str, str]:
    """``{file name without extension: path}`` of every video under ``src`` (first found wins,
    in the order of :data:`VIDEO_EXTENSIONS`), not looking inside the folder ``skip`` (the frames
    written: ``--out`` may lie inside ``--src``)."""
    rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
    found: dict[str, tuple[int, str]] = {}
    skip = os.path.realpath(skip) if skip is not None else None
    for folder, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(folder, d)) != skip)
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in rank and (stem not in found or rank[ext.lower()] < found[stem][0]):
                found[stem] = (rank[ext.lower()], os.path.join(folder, name))
    return {stem: path for stem, (_, path) in found.items()}


def _class_names(labels, what: str) -> list[str]:
    names = load_class_names(labels)
    if not names:
        raise ValueError(f"labels {labels}: no class names ({what})")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"labels {labels}: class {dup!r} is named twice")
    return names


# ------------------------------------------------------------------ the official layouts
def _read_20bn_csv(path: Path, index: dict[str, int], frames_root: Path,
                   labels: Path) -> tuple[list[Item], list[Problem]]:
    """``id;class name`` lines (Something-Something V1, Jester)."""
    items, problems = [], []
    for number, line in list_lines(path):
        vid, sep, name = line.partition(";")
        vid, name = vid.strip(), name.strip()
        if not sep or not vid:
            problems.append(Problem(str(path), number, f"malformed line {line!r}: expected '<id>;<class name>'"))
        elif name not in index:
            problems.append(Problem(str(path), number, f"class {name!r} is not in {labels.name}"))
        else:
            items.append(Item(vid, (index[name],), str(frames_root / vid), str(path), number, True))
    return items, problems


def read_20bn_frames(src: Path, prefix: str, frame_folder: str) -> Plan:
    """Something-Something V1 (``prefix`` ``something-something-v1``) or Jester (``jester-v1``)."""
    labels = _find(src, (f"{prefix}-labels.csv",), "labels file")
    classes = sorted(line for _, line in list_lines(labels))
    index = {name: i for i, name in enumerate(classes)}
    frames_root = _frames_root(src, frame_folder)
    plan = Plan(classes, {}, frames_root=str(frames_root))
    for split, official in (("train", "train"), ("val", "validation")):
        items, problems = _read_20bn_csv(_find(src, (f"{prefix}-{official}.csv",), f"{official} list"),
                                         index, frames_root, labels)
        plan.splits[split] = items
        plan.problems += problems
    return plan


def read_sthv2(src: Path, skip=None) -> Plan:
    labels = _find(src, ("something-something-v2-labels.json", "labels/labels.json", "labels.json"),
                   "labels file")
    classes = load_class_names(labels, "labels_json")
    index = {name: i for i, name in enumerate(classes)}
    videos = _frames_root(src, "20bn-something-something-v2")
    plan = Plan(classes, {})
    for split, official in (("train", "train"), ("val", "validation")):
        path = _find(src, (f"something-something-v2-{official}.json", f"labels/{official}.json",
                           f"{official}.json"), f"{official} list")
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a JSON list of {{id, template}} items")
        items = []
        for number, entry in enumerate(entries, start=1):   # ``line``: the item's position in the list
            if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
                plan.problems.append(Problem(str(path), number, "item lacks 'id' or 'template'"))
                continue
            name = strip_template(entry["template"])
            if name not in index:
                plan.problems.append(Problem(str(path), number, f"template {name!r} is not in {labels.name}"))
                continue
            vid = str(entry["id"])
            items.append(Item(vid, (index[name],), str(videos / f"{vid}.webm"), str(path), number))
        plan.splits[split] = items
    if any(not os.path.isfile(item.source) for items in plan.splits.values() for item in items):
        found = _video_index(src, skip)   # videos kept elsewhere under --src, or in another container
        plan.splits = {split: [dataclasses.replace(item, source=found.get(item.name, item.source)) for item in items]
                       for split, items in plan.splits.items()}
    return plan


KINETICS_CSV = {
    "train": ("train.csv", "kinetics_train.csv", "kinetics400/train.csv", "annotations/train.csv",
              "kinetics_train/kinetics_train.csv"),
    "val": ("validate.csv", "val.csv", "kinetics_val.csv", "kinetics400/validate.csv", "annotations/val.csv",
            "annotations/validate.csv", "kinetics_val/kinetics_val.csv"),
}


def _kinetics_rows(path: Path) -> tuple[list[tuple[int, str, str, int, int]], list[Problem]]:
    """``(line, label, youtube_id, time_start, time_end)`` of each row of a Kinetics CSV."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    columns = ("label", "youtube_id", "time_start", "time_end")
    header = [h.strip() for h in rows[0]] if rows else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path}:1: CSV header {header} lacks {', '.join(missing)}; "
                         f"expected {','.join(columns)},split")
    col = [header.index(c) for c in columns]
    out, problems = [], []
    for number, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            problems.append(Problem(str(path), number, f"{len(row)} fields (the header has {len(header)})"))
            continue
        label, ytid, start, end = (row[i].strip() for i in col)
        try:
            out.append((number, label, ytid, int(float(start)), int(float(end))))
        except ValueError:
            problems.append(Problem(str(path), number, f"time_start/time_end {start!r}, {end!r} are not numbers"))
    return out, problems


def read_kinetics(src: Path, labels=None, ids=None, subset: bool = False, skip=None) -> Plan:
    """Kinetics, or with ``subset`` Mini-Kinetics (``labels`` required: the classes kept)."""
    paths = {split: _find(src, KINETICS_CSV[split], f"{split} CSV") for split in SPLITS}
    rows = {split: _kinetics_rows(paths[split]) for split in SPLITS}
    if labels is not None:
        classes, origin = _class_names(labels, "the classes"), Path(labels).name
    else:
        classes, origin = sorted({label for _, label, *_ in rows["train"][0]}), f"the classes of {paths['train'].name}"
    index = {name: i for i, name in enumerate(classes)}
    keep_ids = None
    if ids:
        keep_ids = set()
        for path in ids:
            keep_ids.update(line.split()[0] for _, line in list_lines(Path(path)))
    videos = _video_index(src, skip)
    plan = Plan(classes, {})
    for split in SPLITS:
        found, problems = rows[split]
        path = paths[split]
        plan.problems += problems
        items = []
        for number, label, ytid, start, end in found:
            if subset and (label not in index or (keep_ids is not None and ytid not in keep_ids)):
                plan.excluded += 1
                continue
            if label not in index:
                plan.problems.append(Problem(str(path), number, f"class {label!r} is not in {origin}"))
                continue
            name = kinetics_file_name(ytid, start, end, "")
            source = videos.get(name) or videos.get(ytid)
            if source is None:
                missing = f"video not found: no {name}.* nor {ytid}.* under {src}"
                plan.problems.append(Problem(str(path), number, missing))
                continue
            items.append(Item(name, (index[label],), source, str(path), number))
        plan.splits[split] = items
    return plan


ACTIVITYNET_JSON = ("activity_net.v1-3.min.json", "activity_net.v1-2.min.json", "activitynet.json",
                    "annotations/activity_net.v1-3.min.json")
ACTIVITYNET_SUBSETS = {"training": "train", "validation": "val"}


def read_activitynet(src: Path, labels=None, skip=None) -> Plan:
    path = _find(src, ACTIVITYNET_JSON, "ActivityNet JSON")
    try:
        database = json.loads(path.read_text(encoding="utf-8"))["database"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: expected ActivityNet's JSON with a 'database' object ({exc})") from None
    annotated = {}
    for vid, entry in database.items():
        split = ACTIVITYNET_SUBSETS.get(entry.get("subset")) if isinstance(entry, dict) else None
        if split is not None:
            annotated[vid] = (split, sorted({a["label"] for a in entry.get("annotations", [])
                                             if isinstance(a, dict) and "label" in a}))
    if labels is not None:
        classes = _class_names(labels, "the classes")
    else:
        classes = sorted({name for _, names in annotated.values() for name in names})
    index = {name: i for i, name in enumerate(classes)}
    videos = _video_index(src, skip)
    plan = Plan(classes, {split: [] for split in SPLITS})
    for vid, (split, names) in annotated.items():
        unknown = [n for n in names if n not in index]
        if not names or unknown:
            reason = "no annotated segment" if not names else f"class {unknown[0]!r} is not in {Path(labels).name}"
            plan.problems.append(Problem(str(path), 0, f"video {vid!r}: {reason}"))
            continue
        name = vid if vid.startswith("v_") else f"v_{vid}"
        source = videos.get(name) or videos.get(vid)
        if source is None:
            missing = f"video {vid!r}: not found (no {name}.* nor {vid}.* under {src})"
            plan.problems.append(Problem(str(path), 0, missing))
            continue
        plan.splits[split].append(Item(name, tuple(sorted(index[n] for n in names)), source, str(path)))
    return plan


def read_official(dataset: str, src, *, labels=None, ids=None, skip=None) -> Plan:
    """The :class:`Plan` of ``dataset``'s official files under ``src``; videos are not looked
    for inside ``skip`` (the frame folders written)."""
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"--src {src}: no such folder")
    if dataset == "sthv1":
        return read_20bn_frames(src, "something-something-v1", "20bn-something-something-v1")
    if dataset == "jester":
        return read_20bn_frames(src, "jester-v1", "20bn-jester-v1")
    if dataset == "sthv2":
        return read_sthv2(src, skip)
    if dataset == "kinetics":
        return read_kinetics(src, labels, ids, skip=skip)
    if dataset == "minikinetics":
        if labels is None:
            raise ValueError("minikinetics needs labels: the file of the 200 class names it keeps "
                             "(--labels FILE, one name per line)")
        return read_kinetics(src, labels, ids, subset=True, skip=skip)
    if dataset == "activitynet":
        return read_activitynet(src, labels, skip)
    from afnet.errors import did_you_mean

    raise ValueError(f"unknown dataset {dataset!r}{did_you_mean(dataset, DATASETS)}; accepted: {', '.join(DATASETS)}")


# ------------------------------------------------------------------ frames
def _jpeg_encoder(width: int, height: int):
    from fractions import Fraction

    import av

    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"qmin": "2", "qmax": "4"}   # about JPEG quality 95, as MMAction2's extraction writes
    ctx.open()
    return ctx


def _sampled(times, fps: float | None, num_frames: int) -> list[int]:
    """Every frame, or (``fps``) the first frame at or after each multiple of ``1 / fps`` seconds."""
    if fps is None or times is None:
        return list(range(num_frames))
    import numpy as np

    wanted = np.arange(0.0, float(times[-1]) + 1e-9, 1.0 / fps)
    return sorted(set(np.searchsorted(times, wanted - 1e-6).clip(0, num_frames - 1).tolist()))


def extract_frames(video, folder, template: str, *, fps: float | None = None, short_side: int | None = None,
                   timeout: float | None | str = DEFAULT) -> int:
    """Decode ``video`` (PyAV, rotation applied) into JPEG images ``folder/template.format(i)``,
    ``i`` from 1; every frame, or ``fps`` frames per second. ``short_side``: resize so that the
    shorter side has this many pixels. Returns the number of frames written; raises
    :class:`~afnet.data.readers.DecodeError` naming the file."""
    import av
    import numpy as np

    from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT, open_video

    timeout = DEFAULT_DECODE_TIMEOUT if timeout == DEFAULT else timeout
    folder = Path(folder)
    folder.mkdir(parents=True)
    encoder, written = None, 0
    with open_video(str(video), "pyav", timeout=timeout) as reader:
        indices = _sampled(reader.frame_times(), fps, len(reader))
        for start in range(0, len(indices), CHUNK):
            clip = reader.get_frames(indices[start:start + CHUNK]).permute(0, 2, 3, 1).numpy()
            for rgb in clip:
                h, w = rgb.shape[:2]
                scale = 1.0 if short_side is None else short_side / min(h, w)
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                if encoder is None:
                    encoder = _jpeg_encoder(*size)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame = frame.reformat(width=size[0], height=size[1], format="yuvj420p")
                written += 1
                (folder / template.format(written)).write_bytes(b"".join(bytes(p) for p in encoder.encode(frame)))
    return written


@dataclass(frozen=True)
class _Task:
    position: int
    source: str
    target: str            # OUT/frames/<name>; for a shipped frame folder, the folder itself
    template: str
    frames_given: bool
    fps: float | None
    short_side: int | None
    timeout: float | None | str


def _run_task(task: _Task) -> tuple[int, int, str | None, bool]:
    """``(position, frames, error, reused)`` of one video: count a shipped frame folder, reuse a
    complete frame folder, or extract the video into ``target.partial`` and rename it."""
    from afnet.data.decoding import count_frames

    try:
        if task.frames_given or os.path.isdir(task.target):
            if not os.path.isdir(task.target):
                return task.position, 0, f"frame folder not found: {task.target}", False
            n = count_frames(task.target, task.template)
            if n or task.frames_given:
                error = None if n else f"no frame {task.template.format(1)} in {task.target}"
                return task.position, n, error, True
            os.rmdir(task.target)   # an empty folder: extract again
        if not os.path.isfile(task.source):
            return task.position, 0, f"video not found: {task.source}", False
        partial = task.target + PARTIAL
        shutil.rmtree(partial, ignore_errors=True)
        n = extract_frames(task.source, partial, task.template, fps=task.fps, short_side=task.short_side,
                           timeout=task.timeout)
        if n == 0:
            shutil.rmtree(partial, ignore_errors=True)
            return task.position, 0, f"{task.source}: no frames decoded", False
        os.rename(partial, task.target)
        return task.position, n, None, False
    except Exception as exc:  # noqa: BLE001 - a bad source is named and skipped; the run goes on
        shutil.rmtree(task.target + PARTIAL, ignore_errors=True)
        message = str(exc) if task.source in str(exc) else f"{task.source}: {exc}"
        return task.position, 0, f"cannot extract frames: {message}", False


def _run_all(tasks: list[_Task], workers: int, progress: Callable[[int, int, int], None] | None):
    """Results of :func:`_run_task` for every task, on ``workers`` processes (1: this one)."""
    results, failed = {}, 0
    if workers <= 1 or len(tasks) <= 1:
        stream, pool = map(_run_task, tasks), None
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = multiprocessing.get_context(method).Pool(workers)
        stream = pool.imap_unordered(_run_task, tasks, chunksize=1)
    try:
        for position, n, error, reused in stream:
            results[position] = (n, error, reused)
            failed += error is not None
            if progress:
                progress(len(results), len(tasks), failed)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return results


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + PARTIAL)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _link_frames(out: Path, frames_root: str) -> None:
    """``OUT/frames`` -> the download's frame folder (a relative link: both can move together)."""
    link = out / FRAMES
    target = os.path.relpath(frames_root, out)
    if link.is_symlink() and os.path.realpath(link) == os.path.realpath(frames_root):
        return
    if link.exists() or link.is_symlink():
        raise ValueError(f"{link} exists and is not a link to {frames_root}; move it away or choose another --out")
    os.symlink(target, link, target_is_directory=True)


def prepare_dataset(dataset: str, src, out, *, workers: int = 1, labels=None, ids=None, fps: float | None = None,
                    short_side: int | None = None, timeout: float | None | str = DEFAULT,
                    progress: Callable[[int, int, int], None] | None = None) -> PrepareReport:
    """Read ``dataset``'s official files under ``src`` and write under ``out`` the frame folders,
    list files and class file its preset reads (see the module docstring).

    Args:
        dataset: one of :data:`DATASETS`.
        workers: processes decoding videos (or counting shipped frames) in parallel.
        labels: class-name file fixing the classes and their order (kinetics, activitynet); the
            classes kept (minikinetics, required).
        ids: files of YouTube ids to keep, one per line (minikinetics).
        fps: frames extracted per second (default: every frame).
        short_side: resize extracted frames so that the shorter side has this many pixels.
        timeout: seconds allowed to open a video and to decode each chunk of frames (default
            :data:`~afnet.data.readers.DEFAULT_DECODE_TIMEOUT`; ``None`` or 0: no limit).
        progress: called as ``progress(done, total, failed)`` after each video.

    Returns:
        A :class:`PrepareReport`; its ``problems`` name every video left out.
    """
    if workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if short_side is not None and short_side < 1:
        raise ValueError(f"short_side must be a positive integer, got {short_side}")
    plan = read_official(dataset, src, labels=labels, ids=ids, skip=Path(out) / FRAMES)
    template = get_preset(dataset).frame_template
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if plan.frames_root is not None:
        _link_frames(out, plan.frames_root)
    else:
        (out / FRAMES).mkdir(exist_ok=True)
    ordered = [(split, item, item.source if item.frames_given else str(out / FRAMES / item.name))
               for split in SPLITS for item in plan.splits[split]]
    first = {}   # one task per frame folder, whichever items name it
    for _, item, target in ordered:
        first.setdefault(target, item)
    tasks = [_Task(i, item.source, target, template, item.frames_given, fps, short_side, timeout)
             for i, (target, item) in enumerate(first.items())]
    done = _run_all(tasks, workers, progress)
    results = {task.target: done[task.position] for task in tasks}
    problems = list(plan.problems)
    lines = {split: [] for split in SPLITS}
    extracted = reused = 0
    for split, item, target in ordered:
        n, error, was_reused = results[target]
        if error is not None:
            problems.append(Problem(item.list_file, item.line, error, item.source))
            continue
        extracted += not was_reused
        reused += was_reused
        lines[split].append(f"{FRAMES}/{item.name} {n} {','.join(map(str, item.labels))}\n")
    class_file = out / CLASS_FILE
    _write_atomically(class_file, "".join(f"{name}\n" for name in plan.classes))
    lists = {}
    for split in SPLITS:
        lists[split] = out / LIST_FILES[split]
        _write_atomically(lists[split], "".join(lines[split]))
    return PrepareReport(dataset, out, class_file, len(plan.classes), lists,
                         {split: len(lines[split]) for split in SPLITS}, extracted, reused, plan.excluded,
                         tuple(sorted(problems, key=lambda p: (p.list_file, p.line))))
