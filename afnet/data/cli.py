"""Data subcommands of the ``afnet`` CLI: ``check-data``, ``make-synthetic`` and ``prepare``.

The main CLI calls :func:`register` with its argparse subparsers; each
subcommand's ``func(args)`` returns the process exit code.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from afnet.data.annotations import ANNOTATION_KINDS
from afnet.data.presets import PRESETS
from afnet.errors import DeprecatedAlias
from afnet.overrides import OverrideError, parse_override


def _parse_override(text: str):
    try:
        return parse_override(text)
    except OverrideError as exc:
        raise argparse.ArgumentTypeError(f"--set {text!r}: {exc}") from None


def register(subparsers) -> None:
    """Add ``check-data``, ``make-synthetic`` and ``prepare`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "check-data", help="check a dataset's annotation files, folders and videos",
        description="Report every problem (list file, line, reason); exit 1 if any.")
    p.add_argument("annotations", nargs="+",
                   help="list file(s) (.txt), Kinetics CSV (.csv) or SthV2 JSON (.json); a relative path is "
                        "taken under --root, as a config's data.train_list is")
    p.add_argument("--root", required=True, help="directory the listed paths are relative to")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="dataset preset (class count, frame template); default none: the labels are checked "
                        "against --labels or --num-classes, frames named '{:05d}.jpg' unless --template")
    p.add_argument("--kind", default="auto",
                   choices=["auto", *ANNOTATION_KINDS],
                   help="annotation format (default: guessed)")
    p.add_argument("--labels", dest="class_file", default=None, metavar="FILE",
                   help="class names (category.txt, classInd.txt or labels.json): labels must index them")
    p.add_argument("--classes", dest="class_file", action=DeprecatedAlias, new="--labels", metavar="FILE")
    p.add_argument("--template", default=None, help="frame file template, e.g. '{:05d}.jpg'")
    p.add_argument("--num-classes", type=int, default=None, metavar="N", help="class count labels must be below")
    p.add_argument("--set", action="append", type=_parse_override, default=[],
                   metavar="KEY=VALUE", help="override any preset field")
    p.add_argument("--full-decode", action="store_true",
                   help="decode every frame of every video and every listed frame image "
                        "(default: the first and last frame of each)")
    p.add_argument("--decode-timeout", type=float, default=None, metavar="SECONDS",
                   help="report a video as failed when opening it, or decoding a chunk of its frames, "
                        "takes longer; default 60, 0 for no limit")
    p.add_argument("--backend", default="pyav", help="video backend (pyav, decord, torchcodec)")
    p.add_argument("--json", action="store_true", help="print problems as JSON")
    p.set_defaults(func=run_check_data)

    s = subparsers.add_parser(
        "make-synthetic", help="write a small synthetic video dataset (frames + mp4)",
        description="--task temporal (default): classes need temporal reasoning (motion direction, order "
                    "of two flashes, growing/shrinking). --task evidence (the demo's): the class glyph appears in "
                    "2-3 frames of each video; evidence.json lists those frames.")
    s.add_argument("out", help="output directory")
    s.add_argument("--num-train", type=int, default=320)
    s.add_argument("--num-val", type=int, default=96)
    s.add_argument("--num-classes", type=int, default=8)
    s.add_argument("--frames", dest="num_frames", type=int, default=16,
                   help="frames per video")
    s.add_argument("--size", type=int, default=64, help="frame side in pixels")
    s.add_argument("--difficulty", type=float, default=0.5, help="0 (easy) .. 1 (hard)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--task", choices=("temporal", "evidence"), default="temporal")
    s.add_argument("--region-grid", type=int, default=0, metavar="G",
                   help="evidence task: keep each video's glyph in one cell of a G x G grid and record it "
                        "per frame in evidence.json (region precision of spatial navigation); 0: anywhere")
    s.add_argument("--no-frames", action="store_true", help="skip the JPEG frame folders")
    s.add_argument("--no-videos", action="store_true", help="skip the mp4 files")
    s.set_defaults(func=run_make_synthetic)

    from afnet.data.prepare import DATASETS

    r = subparsers.add_parser(
        "prepare", help="official dataset download -> frame folders, list files and category.txt for training",
        description="Read a dataset's official annotation files and its videos or frames (docs/data.md, "
                    "'afnet prepare'), extract frames where the preset reads frames (in parallel, resumable: "
                    "a stopped run skips the videos done), and write OUT/train_videofolder.txt, "
                    "OUT/val_videofolder.txt and OUT/category.txt, the files configs/<dataset>/dataset.yaml "
                    "names. A bad or missing source is named and left out; the run goes on. Exit 1 if some "
                    "video was left out, 2 on user errors.")
    r.add_argument("dataset", choices=DATASETS, metavar="DATASET", help=f"one of: {', '.join(DATASETS)}")
    r.add_argument("--src", required=True, help="folder of the official download (annotations, videos or frames)")
    r.add_argument("--out", required=True, help="folder to write (the data.root of training)")
    r.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes extracting frames (default: one per CPU core)")
    r.add_argument("--labels", metavar="FILE",
                   help="class names in index order: the classes kept (minikinetics: required); kinetics, "
                        "activitynet: fixes their order (default: sorted by name)")
    r.add_argument("--ids", action="append", metavar="FILE",
                   help="minikinetics: YouTube ids to keep, one per line (train_ytid_list.txt, "
                        "val_ytid_list.txt); repeatable")
    r.add_argument("--fps", type=float, help="frames extracted per second (default: every frame)")
    r.add_argument("--short-side", type=int, metavar="PIXELS",
                   help="resize extracted frames to this shorter side (default: as decoded)")
    r.add_argument("--decode-timeout", type=float, default=None, metavar="SECONDS",
                   help="skip a video whose opening or decoding takes longer; default 60, 0 for no limit")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.set_defaults(func=run_prepare)


def run_check_data(args) -> int:
    from afnet.data.check import check_dataset
    from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT, check_timeout

    overrides = dict(args.set)
    if args.template:
        overrides["frame_template"] = args.template
    try:
        timeout = DEFAULT_DECODE_TIMEOUT if args.decode_timeout is None else check_timeout(
            args.decode_timeout, "--decode-timeout")
        result = check_dataset(args.preset, args.root, args.annotations, kind=args.kind,
                               class_file=args.class_file, num_classes=args.num_classes,
                               full_decode=args.full_decode, backend=args.backend, timeout=timeout, **overrides)
    except ValueError as exc:
        print(f"afnet check-data: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        for problem in result.problems:
            print(problem)
    print(result.summary().replace("(num_classes)", "(--num-classes)"), file=sys.stderr)
    return 0 if result.ok else 1


def run_make_synthetic(args) -> int:
    from afnet.data.synthetic import make_synthetic

    try:
        data = make_synthetic(args.out, num_train=args.num_train, num_val=args.num_val,
                              num_classes=args.num_classes, num_frames=args.num_frames,
                              size=args.size, difficulty=args.difficulty, seed=args.seed,
                              frames=not args.no_frames, videos=not args.no_videos, task=args.task,
                              region_grid=args.region_grid)
    except ValueError as exc:
        print(f"afnet make-synthetic: {exc}", file=sys.stderr)
        return 2
    for name, path in [*data.frame_lists.items(), *data.video_lists.items()]:
        print(f"{name}: {path}")
    print(f"classes: {data.category_file}")
    if args.task == "evidence":
        print(f"evidence {'frames and regions' if args.region_grid else 'frames'}: {data.root / 'evidence.json'}")
    return 0


def run_prepare(args) -> int:
    from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT, check_timeout
    from afnet.data.prepare import prepare_dataset
    from afnet.data.presets import get_preset

    timeout = DEFAULT_DECODE_TIMEOUT if args.decode_timeout is None else check_timeout(
        args.decode_timeout, "--decode-timeout")
    started = last = time.monotonic()

    def progress(done: int, total: int, failed: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 2 or done == total:
            last = now
            print(f"afnet prepare {args.dataset}: {done}/{total} videos ({failed} skipped), "
                  f"{done / max(now - started, 1e-9):.1f} videos/s", file=sys.stderr, flush=True)

    print(f"afnet prepare {args.dataset}: reading {args.src}", file=sys.stderr, flush=True)
    report = prepare_dataset(args.dataset, args.src, args.out, workers=args.workers, labels=args.labels,
                             ids=args.ids, fps=args.fps, short_side=args.short_side, timeout=timeout,
                             progress=progress)
    for problem in report.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        for split, path in report.lists.items():
            print(f"{split}: {path}")
        print(f"classes: {report.class_file}")
    print(f"afnet prepare {report.summary()}, {time.monotonic() - started:.1f} s", file=sys.stderr)
    preset = get_preset(args.dataset)
    classes = "" if report.num_classes == preset.num_classes else f" data.num_classes={report.num_classes}"
    if classes:
        print(f"note: the {args.dataset} preset has {preset.num_classes} classes, these files "
              f"{report.num_classes}: train with{classes}", file=sys.stderr)
    lists = " ".join(path.name for path in report.lists.values())
    print(f"next: afnet check-data {lists} --root {report.out} --preset {args.dataset} "
          f"--labels {report.class_file.name} --full-decode\n"
          f"      afnet train --config configs/{args.dataset}/dataset.yaml data.root={report.out}{classes}",
          file=sys.stderr)
    return 0 if report.ok else 1
