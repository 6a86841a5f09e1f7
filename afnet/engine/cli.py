"""``afnet train``, ``afnet eval`` and ``afnet calibrate``.

    afnet train --config configs/sthv1/table1_afnet_rt050.yaml [key=value ...] [--resume [CKPT]]
    afnet eval  --config configs/sthv1/table1_afnet_rt050.yaml --checkpoint runs/.../best.ckpt [key=value ...]
                [--clips N] [--crops 1|3] [--out DIR]
    afnet calibrate --config ... --checkpoint runs/.../best.ckpt [--videos N] [--out FILE] [key=value ...]

``key=value``: any dotted config key (``optim.lr=0.02 data.root=/data/sthv1``), values parsed
as YAML. ``--resume`` without a path continues from ``run_dir/checkpoints/last.ckpt``.
"""
from __future__ import annotations

import json


def _cmd_train(args) -> int:
    from afnet.engine import load_config, train

    overrides = list(args.overrides)
    if args.resume is not None:
        overrides.append(f"resume={args.resume}")
    result = train(load_config(args.config, overrides))
    if result.metrics:
        print(json.dumps({"run_dir": str(result.run_dir), "best_checkpoint": str(result.best_checkpoint),
                          "last_checkpoint": str(result.last_checkpoint), "metrics": result.metrics}))
    return 0


def _cmd_eval(args) -> int:
    from afnet.engine import evaluate, load_config

    overrides = list(args.overrides)
    if args.clips is not None:
        overrides.append(f"eval.num_clips={args.clips}")
    if args.crops is not None:
        overrides.append(f"eval.num_crops={args.crops}")
    metrics = evaluate(load_config(args.config, overrides), args.checkpoint, out_dir=args.out)
    print(json.dumps(metrics))
    return 0


def _cmd_calibrate(args) -> int:
    from afnet.engine import calibrate, load_config

    print(json.dumps(calibrate(load_config(args.config, list(args.overrides)), args.checkpoint, out=args.out,
                               max_videos=args.videos)))
    return 0


def register(sub) -> None:
    """Add ``train``, ``eval`` and ``calibrate`` to the ``afnet`` command's subparsers."""
    p = sub.add_parser("train", help="train a model from a YAML config (Lightning; DDP under torchrun/SLURM)")
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config keys, YAML values")
    p.add_argument("--resume", nargs="?", const="last", metavar="CKPT",
                   help="continue a run: a Lightning checkpoint, or run_dir/checkpoints/last.ckpt if no path")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="validation metrics, GFLOPs and kept ratios of a checkpoint")
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", required=True, help="best.ckpt / last.ckpt of a run, or any afnet checkpoint")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--clips", type=int, help="clips per video (default eval.num_clips, 1)")
    p.add_argument("--crops", type=int, choices=[1, 3], help="crops per clip (default eval.num_crops, 1)")
    p.add_argument("--out", help="folder for metrics.json and kept_ratio.png (default run_dir/eval)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("calibrate", help="shift a learned navigation's keep/skip threshold to keep RT of the frames")
    p.add_argument("--config", required=True, help="the run's config (RT: objective.target_ratio)")
    p.add_argument("--checkpoint", required=True, help="best.ckpt / last.ckpt of a run with learned navigation")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--videos", type=int, default=512, help="training videos to calibrate on (default 512)")
    p.add_argument("--out", help="calibrated checkpoint (default: calibrated.ckpt beside --checkpoint)")
    p.set_defaults(func=_cmd_calibrate)
