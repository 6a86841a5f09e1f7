"""``afnet train``, ``afnet eval`` and ``afnet calibrate``.

    afnet train --config configs/sthv1/table1_afnet_rt050.yaml [key=value ...] [--resume [CKPT]]
    afnet eval  --checkpoint runs/.../best.ckpt [--config CONFIG] [key=value ...]
                [--clips N] [--crops 1|3] [--out DIR] [--threads N]
    afnet calibrate --checkpoint runs/.../best.ckpt [--config CONFIG] [--videos N] [--out FILE] [key=value ...]

``eval`` and ``calibrate`` take the run's config from the checkpoint unless ``--config`` is given.
stdout carries only the JSON result; progress, Lightning's bar and logs go to stderr.

``key=value``: any dotted config key (``optim.lr=0.02 data.root=/data/sthv1``), values parsed
as YAML. ``--resume`` without a path continues from ``run_dir/checkpoints/last.ckpt``.
"""
from __future__ import annotations

import json
import sys


def _config(args, overrides):
    """The run's config: ``--config``, else the one the checkpoint stores (``afnet train`` writes it)."""
    from afnet.engine import load_config

    if args.config is not None:
        return load_config(args.config, overrides)
    from afnet.checkpoint import read_checkpoint

    ckpt = read_checkpoint(args.checkpoint)
    stored = None if "package" in ckpt else ckpt.get("config")   # a package records no run (no data, no objective)
    if not isinstance(stored, dict):
        raise ValueError(f"--checkpoint {args.checkpoint} stores no run config (not written by afnet train): "
                         "give --config")
    return load_config(stored, overrides)


def _owned_process(args) -> None:
    """What a command that owns its process sets: threads, Lightning's noise off stderr."""
    from afnet.runtime import quiet_lightning, set_threads

    set_threads(args.threads)
    quiet_lightning()


def _cmd_train(args) -> int:
    from afnet.engine import load_config, train
    from afnet.runtime import quiet_lightning

    quiet_lightning()
    overrides = list(args.overrides)
    if args.resume is not None:
        overrides.append(f"resume={args.resume}")
    result = train(load_config(args.config, overrides))
    if result.metrics:
        print(json.dumps({"run_dir": str(result.run_dir), "best_checkpoint": str(result.best_checkpoint),
                          "last_checkpoint": str(result.last_checkpoint), "metrics": result.metrics}))
    return 0


def _cmd_eval(args) -> int:
    from afnet.engine import evaluate

    _owned_process(args)
    overrides = list(args.overrides)
    if args.clips is not None:
        overrides.append(f"eval.num_clips={args.clips}")
    if args.crops is not None:
        overrides.append(f"eval.num_crops={args.crops}")
    metrics = evaluate(_config(args, overrides), args.checkpoint, out_dir=args.out)
    print(json.dumps(metrics))
    return 0


def _cmd_calibrate(args) -> int:
    from afnet.engine import calibrate

    _owned_process(args)
    cfg = _config(args, list(args.overrides))
    print(f"afnet calibrate: the keep/skip thresholds of {args.checkpoint} to RT={cfg.objective.target_ratio} "
          f"on up to {args.videos} training videos ...", file=sys.stderr, flush=True)
    result = calibrate(cfg, args.checkpoint, out=args.out, max_videos=args.videos)
    print(f"afnet calibrate: keeps {result['mean_kept']:.3f} of the frames on {result['videos']} videos "
          f"(per navigation: {' '.join(f'{k:.3f}' for k in result['kept'])}) -> {result['checkpoint']}",
          file=sys.stderr)
    print(json.dumps(result))
    return 0


def register(sub) -> None:
    """Add ``train``, ``eval`` and ``calibrate`` to the ``afnet`` command's subparsers."""
    p = sub.add_parser("train", help="train a model from a YAML config (Lightning; DDP under torchrun/SLURM)")
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config keys, YAML values")
    p.add_argument("--resume", nargs="?", const="last", metavar="CKPT",
                   help="continue a run: a Lightning checkpoint, or run_dir/checkpoints/last.ckpt if no path")
    p.set_defaults(func=_cmd_train)

    config_help = "the run's YAML config (default: the one the checkpoint stores)"
    threads_help = "torch CPU threads (default: torch's)"
    p = sub.add_parser("eval", help="validation metrics, GFLOPs and kept ratios of a checkpoint")
    p.add_argument("--config", help=config_help)
    p.add_argument("--checkpoint", required=True, help="best.ckpt / last.ckpt of a run, or any afnet checkpoint")
    p.add_argument("--threads", type=int, help=threads_help)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--clips", type=int, help="clips per video (default eval.num_clips, 1)")
    p.add_argument("--crops", type=int, choices=[1, 3], help="crops per clip (default eval.num_crops, 1)")
    p.add_argument("--out", help="folder for metrics.json and kept_ratio.png (default run_dir/eval)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("calibrate", help="shift a learned navigation's keep/skip threshold to keep RT of the frames")
    p.add_argument("--config", help=config_help + "; RT: objective.target_ratio")
    p.add_argument("--checkpoint", required=True, help="best.ckpt / last.ckpt of a run with learned navigation")
    p.add_argument("--threads", type=int, help=threads_help)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--videos", type=int, default=512, help="training videos to calibrate on (default 512)")
    p.add_argument("--out", help="calibrated checkpoint (default: calibrated.ckpt beside --checkpoint)")
    p.set_defaults(func=_cmd_calibrate)
