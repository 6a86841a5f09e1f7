"""Data subcommands of the ``afnet`` CLI: ``check-data`` and ``make-synthetic``.

The main CLI calls :func:`register` with its argparse subparsers; each
subcommand's ``func(args)`` returns the process exit code.
"""
from __future__ import annotations

import argparse
import json
import sys

from afnet.data.annotations import ANNOTATION_KINDS
from afnet.data.presets import PRESETS
from afnet.overrides import OverrideError, parse_override


def _parse_override(text: str):
    try:
        return parse_override(text)
    except OverrideError as exc:
        raise argparse.ArgumentTypeError(f"--set {text!r}: {exc}") from None


def register(subparsers) -> None:
    """Add ``check-data`` and ``make-synthetic`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "check-data", help="check a dataset's annotation files, folders and videos",
        description="Report every problem (list file, line, reason); exit 1 if any.")
    p.add_argument("annotations", nargs="+",
                   help="list file(s) (.txt), Kinetics CSV (.csv) or SthV2 JSON (.json)")
    p.add_argument("--root", required=True, help="directory the listed paths are relative to")
    p.add_argument("--preset", default="sthv1", choices=sorted(PRESETS),
                   help="dataset preset (class count, frame template); default sthv1")
    p.add_argument("--kind", default="auto",
                   choices=["auto", *ANNOTATION_KINDS],
                   help="annotation format (default: guessed)")
    p.add_argument("--classes", dest="class_file", default=None,
                   help="category.txt, classInd.txt or labels.json")
    p.add_argument("--template", default=None, help="frame file template, e.g. '{:05d}.jpg'")
    p.add_argument("--num-classes", type=int, default=None)
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


def run_check_data(args) -> int:
    from afnet.data.check import check_dataset
    from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT, check_timeout

    overrides = dict(args.set)
    if args.template:
        overrides["frame_template"] = args.template
    if args.num_classes:
        overrides["num_classes"] = args.num_classes
    try:
        timeout = DEFAULT_DECODE_TIMEOUT if args.decode_timeout is None else check_timeout(
            args.decode_timeout, "--decode-timeout")
        problems = check_dataset(args.preset, args.root, args.annotations, kind=args.kind,
                                 class_file=args.class_file, full_decode=args.full_decode,
                                 backend=args.backend, timeout=timeout, **overrides)
    except ValueError as exc:
        print(f"afnet check-data: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"ok": not problems, "num_problems": len(problems),
                          "problems": [p.to_dict() for p in problems]}, indent=1))
    else:
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem(s) found" if problems else "no problems found",
              file=sys.stderr)
    return 1 if problems else 0


def run_make_synthetic(args) -> int:
    from afnet.data.synthetic import make_synthetic

    print(f"afnet make-synthetic: writing {args.num_train} training and {args.num_val} validation videos "
          f"to {args.out} ...", file=sys.stderr, flush=True)
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
