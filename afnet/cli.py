"""The ``afnet`` command line: one command, several subcommands.

    afnet demo            end-to-end demo: synthetic data, train, evaluate, table and figures
    afnet zoo             the model zoo at work (params, GFLOPs, latency, sparse vs masked)
    afnet flops           GFLOPs per video and parameter count of one configuration
    afnet check-data      walk a dataset's lists and files and report every problem
    afnet make-synthetic  write the built-in synthetic dataset (frame folders and mp4)
    afnet predict, explain, timeline, batch-predict, export, convert, serve: see afnet.inference.cli

User errors end in a one-line message and exit status 2, not a traceback. Building the
parser imports no torch, Lightning or matplotlib: each subcommand imports what it needs when
it runs, so ``afnet --help`` and argument errors answer at once.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from afnet.errors import DeprecatedAlias, OptionError, did_you_mean, flag
from afnet.io import disk_full, ignore_file_size_signal, no_room


def _set_threads(threads: int | None) -> None:
    """torch CPU threads: ``threads``, or by default min(2, torch's default)."""
    import torch

    from afnet.runtime import set_threads

    set_threads(threads, default=max(1, min(2, torch.get_num_threads())))


def _cmd_flops(args) -> int:
    import torch

    from afnet.flops import count_flops, count_params
    from afnet.models import create_model

    selection = args.selection
    if selection is None:
        selection = "uniform" if args.ratio is not None else None
    # --region-ratio implies --spatial; the rules on these options are create_model's (the registry's)
    kwargs = {"spatial": args.spatial or args.region_ratio is not None}
    if args.region_grid is not None:
        kwargs["region_grid"] = args.region_grid[0] if len(args.region_grid) == 1 else tuple(args.region_grid)
    if args.region_policy is not None or args.region_ratio is not None:
        kwargs.update(region_selection=args.region_policy or "center", region_ratio=args.region_ratio)
    model = create_model(args.model, num_classes=args.num_classes, num_frames=args.frames, shift=args.shift,
                         selection=selection, ratio=args.ratio, execution=args.execution, **kwargs).eval()
    video = torch.zeros(1, args.frames, 3, args.size, args.size)
    result = {"model": args.model, "frames": args.frames, "size": args.size, "classes": args.num_classes,
              "shift": bool(model.shift), "selection": model.selection, "ratio": model.ratio,
              "spatial": model.spatial, "region_grid": list(model.region_grid) if model.spatial else None,
              "region_selection": model.region_selection, "region_ratio": model.region_ratio,
              "execution": "masked" if args.execution == "masked" else "sparse",
              "gflops_per_video": round(count_flops(model, video), 4),
              "params": count_params(model)}
    if args.json:
        print(json.dumps(result))
    else:
        regions = ""
        if model.spatial:
            grids = "/".join(f"{g}x{g}" for g in model.region_grid)
            regions = (f", regions {grids}, region_selection={model.region_selection}"
                       f"{'' if model.region_ratio is None else f', region_ratio={model.region_ratio}'}")
        print(f"{args.model}: {result['gflops_per_video']:.3f} GFLOPs per video "
              f"({args.frames} frames, {args.size}x{args.size}, {args.num_classes} classes, selection={model.selection}"
              f"{'' if model.ratio is None else f', ratio={model.ratio}'}{regions}), "
              f"{result['params'] / 1e6:.2f} M parameters")
    return 0


def _cmd_zoo(args) -> int:
    from afnet.zoo import DEFAULT_ZOO, measure_zoo, rows_as_dicts, zoo_table

    entries = DEFAULT_ZOO if not args.models else [e for e in DEFAULT_ZOO if e[0] in args.models]
    unknown = sorted(set(args.models or ()) - {e[0] for e in DEFAULT_ZOO})
    if unknown:
        raise ValueError(f"--models: not in the zoo table: {', '.join(unknown)}"
                         f"{did_you_mean(unknown[0], [e[0] for e in DEFAULT_ZOO])}; "
                         f"choose from {', '.join(e[0] for e in DEFAULT_ZOO)}")
    import torch

    _set_threads(args.threads)
    print(f"afnet model zoo on this CPU ({torch.get_num_threads()} threads), batch 1, {args.size}x{args.size}; "
          f"AF models keep {args.ratio:.0%} of frames at every focal block (uniform policy)", file=sys.stderr)
    # a command owns its process: keep glibc from re-mmapping activations (see afnet.runtime)
    rows = measure_zoo(entries, size=args.size, ratio=args.ratio, rounds=args.rounds, tune_malloc=True,
                       progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    print(json.dumps(rows_as_dicts(rows), indent=1) if args.json else zoo_table(rows, args.ratio))
    return 0


def _cmd_demo(args) -> int:
    from afnet.demo import run_demo
    from afnet.runtime import quiet_lightning

    _set_threads(args.threads)
    # the demo prints its own progress; Lightning's per-run banners would bury it
    quiet_lightning()
    out = args.out or ("results/demo_spatial" if args.spatial else "results/demo")
    report = run_demo(out, quick=args.quick, seeds=tuple(args.seeds), spatial=args.spatial,
                      accelerator_name=args.accelerator, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print((Path(out) / "table.md").read_text())
    return 0 if report["runs"] else 1


class _Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" on a mistyped choice: a subcommand, a model, a preset."""

    def _check_value(self, action, value):
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            suggestion = did_you_mean(value, action.choices)
            if not suggestion:
                raise
            message = f"invalid choice: {value!r}{suggestion}; choose from {', '.join(map(repr, action.choices))}"
            raise argparse.ArgumentError(action, message) from exc


def build_parser() -> argparse.ArgumentParser:
    from afnet import __version__
    from afnet.models import list_models
    from afnet.models.options import EXECUTIONS, FIXED_REGION_SELECTIONS, SELECTIONS
    from afnet.models.registry import SPATIAL_MODELS

    parser = _Parser(prog="afnet", description="AFNet: efficient video recognition")
    parser.add_argument("--version", action="version", version=f"afnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("flops", help="GFLOPs per video and parameters of a model configuration")
    p.add_argument("model", choices=list_models(), metavar="NAME", help=f"one of: {', '.join(list_models())}")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=174, metavar="N", help="classifier outputs (default 174)")
    p.add_argument("--classes", dest="num_classes", type=int, metavar="N", action=DeprecatedAlias, new="--num-classes")
    p.add_argument("--shift", action="store_true", default=None, help="temporal shift (TSM) in every block")
    p.add_argument("--selection", choices=SELECTIONS)
    p.add_argument("--ratio", type=float, help="share of frames kept by a fixed policy, in (0, 1]")
    p.add_argument("--execution", choices=EXECUTIONS, default="sparse")
    g = p.add_argument_group(f"spatial navigation (paper §3.3; {', '.join(SPATIAL_MODELS)})")
    g.add_argument("--spatial", action="store_true",
                   help="build the model with spatial navigation (one temporal navigation at the first layer)")
    g.add_argument("--region-grid", type=int, nargs="+", metavar="G",
                   help="regions per side: one G, or one per AF stage (3); each must divide its stage's "
                        "feature map (af_resnet50 at 224: 56/28/14; *_small: size/4, /8, /16); default 7")
    g.add_argument("--region-ratio", type=float, metavar="R",
                   help="share of regions computed per kept frame by a fixed region policy, in (0, 1]; "
                        "implies --spatial")
    g.add_argument("--region-policy", choices=FIXED_REGION_SELECTIONS,
                   help="fixed region policy for --region-ratio (default center)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_flops)

    p = sub.add_parser("zoo", help="params, GFLOPs and measured CPU latency per video, sparse vs masked")
    p.add_argument("--models", nargs="+", metavar="NAME")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--ratio", type=float, default=0.4)
    p.add_argument("--rounds", type=int, default=3, help="timed calls per configuration (median reported)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: min(2, torch's default))")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_zoo)

    p = sub.add_parser("demo", help="end-to-end demo on synthetic data: TSN vs AFNet vs a fixed policy")
    p.add_argument("--out", help="results folder (table, JSON, figures, checkpoints); default results/demo, "
                                 "results/demo_spatial with --spatial")
    p.add_argument("--quick", action="store_true", help="a smaller version for smoke tests (fewer videos and epochs)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--spatial", action="store_true",
                   help="Table 5's spatial rows instead, on region evidence: spatial navigation vs random "
                        "regions vs a centre crop, RS 0.25")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: min(2, torch's default))")
    p.add_argument("--accelerator", choices=("auto", "cpu", "gpu"), default="auto",
                   help="where the models train: auto (default) takes the GPU where torch sees one")
    p.set_defaults(func=_cmd_demo)

    from afnet.data.cli import register as register_data_commands
    from afnet.engine.cli import register as register_engine_commands
    from afnet.inference.cli import register as register_inference_commands

    register_data_commands(sub)
    register_engine_commands(sub)
    register_inference_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ignore_file_size_signal()   # past RLIMIT_FSIZE a write fails (EFBIG), reported below, instead of a silent kill
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        # a library error names parameters (``frames``); here they are the command's flags (``--frames``)
        message = exc.spelled(flag) if isinstance(exc, OptionError) else exc
        print(f"afnet {args.command}: error: {message}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not no_room(exc):
            raise
        # a full disk: one line naming the file; what was written before is intact, the command resumes
        print(f"afnet {args.command}: error: {disk_full(exc, getattr(exc, 'filename', None) or '?')}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
