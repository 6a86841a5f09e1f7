"""Inference subcommands of the ``afnet`` CLI: ``predict``, ``explain``, ``timeline``,
``batch-predict``, ``export`` (ONNX), ``convert`` (a package) and ``serve`` (the web page). ``predict``, ``explain``,
``timeline`` and ``serve`` take ``--onnx MODEL.onnx`` in place of ``--checkpoint``.

``predict`` and ``batch-predict`` exit status: 0 all videos predicted, 1 some video failed
(each failure is reported with its path and reason; the others are still processed), 2 user error.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from afnet.data.presets import PRESETS
from afnet.errors import DeprecatedAlias
from afnet.models.options import PRECISIONS

# Options that an exported ONNX model fixed at export (its metadata records them).
_FIXED_AT_EXPORT = ("model", "frames", "num_classes", "shift", "preset", "size", "ratio", "region_ratio")


CHECKPOINT_HELP = ("project checkpoint or package (enough alone), or the authors' (then also --model, --frames, "
                   "--num-classes, --labels); a path, an http(s):// URL (cached; #sha256=HEX checks it) or "
                   "hf-hub:org/repo[/file]")


def _add_checkpoint_options(g, *, required: bool = True, flag: bool = True) -> None:
    """The options that rebuild a model from a checkpoint (``load_model_for_inference``);
    ``flag=False``: all but ``--checkpoint`` (a command taking it as its first argument)."""
    from afnet.models import list_models

    if flag:
        g.add_argument("--checkpoint", required=required, help=CHECKPOINT_HELP)
    g.add_argument("--model", choices=list_models(), metavar="NAME",
                   help=f"architecture of an authors' checkpoint: {', '.join(list_models())}")
    g.add_argument("--frames", type=int, help="frames per video T the model was trained with")
    g.add_argument("--num-classes", type=int, metavar="N", help="number of classes")
    g.add_argument("--classes", dest="num_classes", type=int, metavar="N", action=DeprecatedAlias, new="--num-classes")
    g.add_argument("--labels", help="class names: category.txt, classInd.txt or labels.json")
    g.add_argument("--shift", action="store_true", default=None,
                   help="temporal shift (authors' checkpoints; default: the model's)")
    g.add_argument("--preset", choices=sorted(PRESETS),
                   help="evaluation sampling and transforms (default: the checkpoint's config, else sthv2)")
    g.add_argument("--size", type=int, help="crop side in pixels (default: checkpoint config, else preset)")
    g.add_argument("--ratio", type=float, metavar="R",
                   help="frames the focal branch computes per video and navigation point, a fixed budget: "
                        "learned navigation keeps exactly round(R*T), those it ranks highest (static-k); a "
                        "fixed policy (uniform, random) keeps round(R*T) its way (default: as trained)")


def _add_device_option(g, default: str = "auto") -> None:
    g.add_argument("--device", default=default, metavar="DEVICE",
                   help=f"where the model computes: cpu, cuda, cuda:N, mps or auto (default {default}; auto: the GPU "
                        f"where torch sees one, else the CPU). fp32 on a GPU is full fp32 (no TF32)")


def _add_model_options(p: argparse.ArgumentParser, *, onnx: bool = False, device: bool = True) -> None:
    from afnet.models.options import COMPILE_MODES

    g = p.add_argument_group("model")
    _add_checkpoint_options(g, required=not onnx)
    g.add_argument("--region-ratio", type=float, metavar="R",
                   help="spatial models: regions each kept frame computes, a fixed budget: learned region "
                        "navigation computes exactly round(R*g^2), those it ranks highest (static-k regions); "
                        "a fixed region policy (random, center) computes round(R*g^2) its way (default: as "
                        "trained)")
    if onnx:
        g.add_argument("--onnx", metavar="MODEL.onnx",
                       help="an exported model (afnet export) run by ONNX Runtime, in place of --checkpoint: "
                            "frames, input size, normalisation, labels and frame selection come from its metadata")
    g.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default: the same answer on every CPU), bf16 (autocast; warns where the CPU "
                        "has no native bf16, which runs it several times slower), or auto (bf16 only where "
                        "native: AVX-512 BF16 / AMX CPUs, CUDA)")
    if device:
        _add_device_option(g)
    g.add_argument("--compile", nargs="?", const="default", choices=COMPILE_MODES, metavar="MODE",
                   help="compile the forward with torch.compile (MODE default; reduce-overhead replays CUDA graphs, "
                        "for static-k at small batch); the first call compiles. Default: eager")
    g.add_argument("--backend", default="pyav", help="video decoder: pyav (default), decord, torchcodec")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; batch-predict: the cores left by the decoding "
                        "workers, shared among the processes)")
    g.add_argument("--top-k", type=int, default=5, help="classes shown per video (default 5)")
    g.add_argument("--decode-timeout", type=float, default=None, metavar="SECONDS",
                   help="give up on a video whose opening or decoding takes longer (it is reported as "
                        "failed and the others go on); default 60, 0 for no limit")
    lim = p.add_argument_group("limits (checked from the file's headers before decoding; 0: no limit)")
    lim.add_argument("--max-frame-pixels", type=int, default=None, metavar="N",
                     help="refuse a video or image whose frames have more pixels (width x height; default "
                          "16777216 = 4096x4096)")
    lim.add_argument("--max-frames", type=int, default=None, metavar="N",
                     help="refuse a video with more frames (default 1000000)")
    lim.add_argument("--max-seconds", type=float, default=None, metavar="S",
                     help="refuse a video that lasts longer (default 14400 = 4 h)")


def register(subparsers) -> None:
    """Add ``predict``, ``timeline``, ``batch-predict``, ``explain``, ``export`` and ``serve`` to an
    argparse subparsers object."""
    p = subparsers.add_parser(
        "predict", help="classify videos; show frames (and regions) kept, GFLOPs and latency per video",
        description="Classify video files, frame folders or folders of videos (searched recursively); per "
                    "navigation point, the frames the focal branch computed and, for spatial models, the "
                    "regions it selected. Exit 1 if some video failed (each named with its reason), 2 on "
                    "user errors.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="video file, frame folder or folder of videos")
    _add_model_options(p, onnx=True)
    p.add_argument("--json", action="store_true", help="JSON Lines on stdout, one object per video")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when several videos and stderr is a terminal)")
    p.add_argument("--no-flops", dest="flops", action="store_false",
                   help="skip the GFLOPs count (a second, untimed model call per video)")
    _add_window_options(p, required=False)
    p.set_defaults(func=run_predict)

    t = subparsers.add_parser(
        "timeline", help="long videos: class scores over time, frames kept and GFLOPs per window (PNG)",
        description="Predict every window of a long or untrimmed video (--window seconds every --stride "
                    "seconds) and draw the timeline: the top classes' scores per window with the segments "
                    "(runs of windows with the same top-1; --smooth, --min-segment) shaded, the frames each "
                    "navigation point kept, and GFLOPs per window. The text (or --json) timeline goes to "
                    "stdout. An unreadable video: one line on stderr, exit 1.")
    t.add_argument("video", help="video file or frame folder (with --fps)")
    t.add_argument("--out", required=True, help="output image (.png)")
    t.add_argument("--draw-classes", type=int, default=5, help="classes whose scores are drawn (default 5)")
    t.add_argument("--json", action="store_true", help="the timeline as one JSON object on stdout")
    _add_model_options(t, onnx=True)
    _add_window_options(t, required=True)
    t.set_defaults(func=run_timeline, flops=True)

    b = subparsers.add_parser(
        "batch-predict", help="predict a corpus: sharded over processes (Lightning), resumable, JSON Lines",
        description="Predict many videos into one JSON Lines file (the afnet predict --json schema, one line "
                    "per video, input order). DataLoader workers decode while the model computes; --devices N "
                    "runs N processes (Lightning DDP; torchrun and SLURM work too), each writing its shard "
                    "OUT.shard-RANK.jsonl, merged into OUT at the end. A re-run skips the videos that already "
                    "have a line, so a killed job resumes where it stopped. A bad video is an error line; the "
                    "job goes on. Exit 1 if some video failed, 2 on user errors.")
    b.add_argument("paths", nargs="*", metavar="PATH",
                   help="video file, frame folder, folder of videos, or a glob pattern (quoted: 'clips/**/*.mp4')")
    b.add_argument("--list", dest="lists", action="append", default=[], metavar="FILE",
                   help="a file of video paths, one per line (first field; training lists work); repeatable")
    b.add_argument("--root", help="folder the list files' relative paths are joined to (default: as written)")
    b.add_argument("--out", required=True, help="output JSON Lines file (also the job's state: delete it and "
                                                "its shards to start afresh)")
    _add_model_options(b, device=False)   # where it computes: --accelerator
    d = b.add_argument_group("processes")
    d.add_argument("--devices", type=int, default=1, help="processes per node: CPU processes or GPUs (default 1)")
    d.add_argument("--num-nodes", type=int, default=1, help="nodes (torchrun or SLURM; default 1)")
    d.add_argument("--accelerator", default="auto", help="cpu, gpu, ... (Lightning's; default auto)")
    d.add_argument("--workers", type=int, default=1,
                   help="DataLoader worker processes per device decoding ahead of the model (default 1; 0: "
                        "decode in the model's process)")
    d.add_argument("--batch-size", type=int, default=4,
                   help="videos per loader batch, written and fsynced together (default 4; one model call per video)")
    b.add_argument("--retry-failed", action="store_true", help="also predict again the videos whose line is an error")
    b.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="videos/s and ETA on stderr (default: when stderr is a terminal)")
    b.add_argument("--no-flops", dest="flops", action="store_false",
                   help="skip the GFLOPs count (a second, untimed model call per video)")
    b.set_defaults(func=run_batch_predict)

    e = subparsers.add_parser(
        "explain", help="draw the sampled frames and which ones the focal branch computed (PNG)",
        description="One row of sampled frames, then one row per navigation point with skipped "
                    "frames greyed out and crossed (paper Fig. 6). Spatial models: frames shown as the "
                    "model saw them (the crop), kept frames with the region grid and their unselected "
                    "regions greyed out and hatched.")
    e.add_argument("video", help="video file or frame folder")
    e.add_argument("--out", required=True, help="output image (.png)")
    e.add_argument("--evidence-file", metavar="JSON",
                   help="the videos' evidence frames ({path relative to the file's folder: [frame indices]}, as "
                        "afnet make-synthetic --task evidence writes): marks them and gives each point's precision")
    _add_model_options(e, onnx=True)
    e.set_defaults(func=run_explain)

    from afnet.models.options import EXECUTIONS

    x = subparsers.add_parser(
        "export", help="write a checkpoint as an ONNX model (sparse static-k or masked execution) with its metadata",
        description="Export a checkpoint (ours or the authors') to ONNX by tracing the model's own forward. "
                    "sparse: the focal branch computes only the frames it keeps (gather and scatter in the "
                    "graph; static shapes, so a fixed count per video: --ratio R with learned navigation, the "
                    "static-k policy, or a uniform policy); masked: every frame computed, skipped ones zeroed "
                    "(any deterministic selection, the learned threshold included). The metadata records "
                    "frames, input size, normalisation, labels and frame selection; afnet predict --onnx runs "
                    "the file. The export is checked in ONNX Runtime against PyTorch on a random video (exit 1 "
                    "if it differs).")
    g = x.add_argument_group("model")
    _add_checkpoint_options(g)
    _add_device_option(g, "cpu")   # where the check's PyTorch side runs (the export traces on the CPU)
    x.add_argument("--out", required=True, help="the ONNX file to write (e.g. model.onnx)")
    x.add_argument("--execution", choices=EXECUTIONS, default="auto",
                   help="sparse or masked; default auto: sparse where the count of frames kept per video is "
                        "fixed (--ratio, uniform policy), else masked")
    x.add_argument("--opset", type=int, help="ONNX opset (default: torch's recommended)")
    x.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the comparison with PyTorch in ONNX Runtime")
    x.set_defaults(func=run_export)

    c = subparsers.add_parser(
        "convert", help="write a checkpoint as a self-describing package: model.safetensors + config.json",
        description="Write any checkpoint the other commands load (a run's best.ckpt, the authors' released "
                    "files with --model/--frames/--classes/--labels) as a package folder: the weights in "
                    "safetensors and a config.json of architecture, frames, labels, frame selection and "
                    "preprocessing (input size, mean, std). Every --checkpoint, afnet.pipeline and "
                    "create_model(pretrained=...) take the folder, its URL (ending in /) or hf-hub:org/repo.")
    c.add_argument("checkpoint", metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    c.add_argument("out_dir", metavar="OUT_DIR", help="the package folder to write (created)")
    _add_checkpoint_options(c.add_argument_group("model"), flag=False)
    c.set_defaults(func=run_convert)

    v = subparsers.add_parser(
        "serve", help="a local web page: upload or point to a video, see top-5, GFLOPs, latency and the "
                      "frames (regions) each focal block computed",
        description="Load the model once and serve a web page (FastAPI) at http://HOST:PORT/: upload a video "
                    "or give a path under --video-root, and see the top-5, GFLOPs, latency and the explain "
                    "figure of the frames (and regions) each focal block computed. JSON at POST /api/predict. "
                    "Binds to localhost unless --host says otherwise. A bad upload gets a clear message; the "
                    "server keeps running.")
    _add_model_options(v, onnx=True)
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    v.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    v.add_argument("--video-root", default=".", metavar="DIR",
                   help="folder the page's video paths are read from (paths outside it are refused; default: "
                        "the current folder)")
    v.add_argument("--max-upload-mb", type=float, default=200.0,
                   help="largest upload accepted; a larger one gets 413 before it is read (default 200 MB)")
    v.add_argument("--max-queue", type=int, default=16, metavar="N",
                   help="requests admitted at once (waiting for the model or running on it); one more gets 503 "
                        "with Retry-After (default 16)")
    v.set_defaults(func=run_serve)


def _add_window_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    g = p.add_argument_group("long videos" + ("" if required else " (a timeline per video instead of one answer)"))
    g.add_argument("--window", type=float, required=required, metavar="SECONDS",
                   help="predict every window of this length (T frames sampled inside each, as for a clip)")
    g.add_argument("--stride", type=float, required=required, metavar="SECONDS",
                   help="seconds between window starts (overlapping windows share decoded frames)")
    g.add_argument("--fps", type=float, help="frame rate placing frames in time (frame folders; overrides timestamps)")
    g.add_argument("--smooth", metavar="METHOD:K",
                   help="smooth the segments: majority:K (each window takes the most frequent top-1 of the K "
                        "windows centred on it) or mean:K (the top-1 of their mean scores); K odd; default none")
    g.add_argument("--min-segment", type=float, metavar="SECONDS",
                   help="merge segments shorter than this into the neighbour whose class scores higher on "
                        "them (after --smooth); default: off")


def _decode_timeout(args):
    from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT, check_timeout

    if args.decode_timeout is None:
        return DEFAULT_DECODE_TIMEOUT
    return check_timeout(args.decode_timeout, "--decode-timeout")


def _limits(args):
    from afnet.data.limits import DecodeLimits

    try:
        return DecodeLimits.of(args.max_frame_pixels, args.max_frames, args.max_seconds)
    except ValueError as exc:
        raise ValueError("--" + str(exc).replace("_", "-", 2)) from None


def _load(args, device: str | None = None, *, tune_malloc: bool = True):
    from afnet.inference.model import load_model_for_inference
    from afnet.runtime import set_threads

    set_threads(args.threads)
    if args.top_k < 1:
        raise ValueError(f"--top-k must be positive, got {args.top_k}")
    onnx = getattr(args, "onnx", None)
    if onnx is not None:
        from afnet.inference.onnx import load_onnx_for_inference

        fixed = [f"--{name.replace('_', '-')}" for name in _FIXED_AT_EXPORT if getattr(args, name) is not None]
        if args.checkpoint is not None:
            raise ValueError("give --checkpoint or --onnx, not both")
        if args.precision != "fp32":
            fixed.append("--precision")  # the exported graph is fp32
        if args.compile is not None:
            raise ValueError(f"--compile is for --checkpoint: {onnx} runs in ONNX Runtime")
        if getattr(args, "device", "cpu") not in ("auto", "cpu"):
            raise ValueError(f"--device {args.device}: {onnx} runs in ONNX Runtime on the CPU")
        if fixed:
            raise ValueError(f"{', '.join(fixed)}: fixed in {onnx} when it was exported (its metadata); "
                             f"export the checkpoint again to change")
        return load_onnx_for_inference(onnx, args.labels, threads=args.threads)
    if args.checkpoint is None:
        raise ValueError("give the model: --checkpoint FILE, or --onnx MODEL.onnx")
    # a command owns its process: keep glibc from re-mmapping activations (see afnet.runtime); not the server,
    # whose many request threads would each keep their allocator arena's peak for good (its RSS would grow);
    # and fp32 is fp32 (no TF32 on a GPU)
    if args.precision == "fp32":
        from afnet.runtime import full_fp32

        full_fp32()
    return load_model_for_inference(args.checkpoint, args.model, args.frames, args.num_classes, args.labels,
                                    preset=args.preset, size=args.size, shift=args.shift, ratio=args.ratio,
                                    region_ratio=args.region_ratio, precision=args.precision,
                                    tune_malloc=tune_malloc, device=device or getattr(args, "device", "cpu"),
                                    compile=args.compile)


def _progress_bar(items, show: bool):
    """A tqdm bar on stderr over ``items`` when ``show`` and tqdm (extra ``train``) is
    installed, else ``None``."""
    if not show:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(items, desc="predict", unit="video", file=sys.stderr)


def _windowed(args) -> bool:
    """Whether ``predict`` makes timelines: ``--window`` and ``--stride`` together, or neither."""
    given = [flag for flag, v in (("--window", args.window), ("--stride", args.stride)) if v is not None]
    if len(given) == 1:
        raise ValueError(f"{given[0]} needs {({'--window', '--stride'} - set(given)).pop()} too")
    for name, value in (("--fps", args.fps), ("--smooth", args.smooth), ("--min-segment", args.min_segment)):
        if value is not None and not given:
            raise ValueError(f"{name} needs --window and --stride")
    if given:
        _check_smoothing(args)
    return bool(given)


def _check_smoothing(args) -> None:
    """--smooth and --min-segment's errors before the model loads."""
    from afnet.inference.timeline import check_min_segment, parse_smooth

    parse_smooth(args.smooth)
    check_min_segment(args.min_segment)


def run_predict(args) -> int:
    from afnet.inference.predict import find_videos, predict_video
    from afnet.inference.report import format_prediction, format_timeline, to_json_line

    timeout, limits = _decode_timeout(args), _limits(args)
    windowed = _windowed(args)
    im = _load(args)
    if windowed:
        from afnet.inference.timeline import predict_timeline

        def predict(path):
            return predict_timeline(path, im, window=args.window, stride=args.stride, top_k=args.top_k,
                                    flops=args.flops, fps=args.fps, backend=args.backend, timeout=timeout,
                                    limits=limits, smooth=args.smooth, min_segment=args.min_segment)
    else:
        def predict(path):
            return predict_video(path, im, top_k=args.top_k, flops=args.flops, backend=args.backend, timeout=timeout,
                                 limits=limits)
    videos = find_videos(args.paths, im.config.frame_template)
    show = args.progress if args.progress is not None else (len(videos) > 1 and sys.stderr.isatty())
    if not args.json:
        c = im.config
        regions = ""
        if im.model.spatial:
            regions = f", spatial regions {'/'.join(f'{g}x{g}' for g in im.model.region_grid)}"
        print(f"{im.arch} ({im.source} checkpoint {im.checkpoint}): {im.num_frames} frames, "
              f"{c.input_size}x{c.input_size}, preset {c.name}{regions}, {len(videos)} video(s)", file=sys.stderr)
    failed = 0
    bar = _progress_bar(videos, show)
    for path in videos if bar is None else bar:
        result = predict(path)
        failed += not result.ok
        text = to_json_line(result) if args.json else (format_timeline if windowed else format_prediction)(result)
        if bar is not None:
            bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)
        if not result.ok and args.json:
            print(f"afnet predict: {result.path}: {result.error}", file=sys.stderr)
    if bar is not None:
        bar.close()
    if failed:
        print(f"afnet predict: {failed} of {len(videos)} video(s) failed", file=sys.stderr)
        return 1
    return 0


def run_timeline(args) -> int:
    from afnet.inference.report import format_timeline, to_json_line
    from afnet.inference.timeline import draw_timeline, predict_timeline

    timeout = _decode_timeout(args)
    if args.draw_classes < 1:
        raise ValueError(f"--draw-classes must be positive, got {args.draw_classes}")
    _check_smoothing(args)
    im = _load(args)
    timeline = predict_timeline(args.video, im, window=args.window, stride=args.stride, top_k=args.top_k,
                                fps=args.fps, backend=args.backend, timeout=timeout, limits=_limits(args),
                                smooth=args.smooth, min_segment=args.min_segment)
    if not timeline.ok:
        print(f"afnet timeline: error: {timeline.path}: {timeline.error}", file=sys.stderr)
        return 1
    drawn = draw_timeline(timeline, args.out, classes=args.draw_classes)
    print(to_json_line(timeline) if args.json else format_timeline(timeline))
    print(f"{drawn['path']}: {len(timeline.windows)} windows, classes drawn: {', '.join(drawn['classes'])}",
          file=sys.stderr)
    return 0


def run_batch_predict(args) -> int:
    import torch

    from afnet.inference.corpus import default_threads, predict_corpus
    from afnet.inference.predict import find_videos, read_video_list
    from afnet.runtime import quiet_lightning

    # the cores are shared among the processes and their decoding workers (one thread each)
    if args.threads is None:
        torch.set_num_threads(default_threads(args.devices, args.workers))
    quiet_lightning()   # the banners of every rank would bury the progress
    timeout = _decode_timeout(args)
    if not args.paths and not args.lists:
        raise ValueError("give the videos: PATH (file, folder or glob) and/or --list FILE")
    # loaded where Lightning will run it, so that --precision auto decides by that device
    gpu = args.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    im = _load(args, device="cuda" if gpu else "cpu")
    videos = find_videos(args.paths, im.config.frame_template)
    for list_file in args.lists:
        videos += read_video_list(list_file, args.root)
    started = time.perf_counter()
    merged = predict_corpus(videos, im, args.out, devices=args.devices, num_nodes=args.num_nodes,
                            accelerator=args.accelerator, workers=args.workers, batch_size=args.batch_size,
                            top_k=args.top_k, flops=args.flops, backend=args.backend, timeout=timeout,
                            retry_failed=args.retry_failed, limits=_limits(args),
                            progress=args.progress if args.progress is not None else sys.stderr.isatty())
    if merged is None:   # another rank: rank 0 reports
        return 0
    if merged.missing:
        print(f"afnet batch-predict: {len(merged.missing)} video(s) have no line yet (first: {merged.missing[0]}); "
              f"the shards are kept: run the same command again", file=sys.stderr)
        return 1
    print(f"afnet batch-predict: {merged.written} video(s) in {merged.out} ({merged.failed} failed), "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 1 if merged.failed else 0


def run_explain(args) -> int:
    from afnet.data.decoding import DecodeError
    from afnet.inference.explain import draw_explanation, explain_video

    timeout = _decode_timeout(args)
    evidence = None
    if args.evidence_file:
        from afnet.data.annotations import AnnotationError, load_evidence

        try:
            table = load_evidence(args.evidence_file, os.path.dirname(os.path.abspath(args.evidence_file)))
        except AnnotationError as exc:
            print(f"afnet explain: error: {exc}", file=sys.stderr)
            return 2
        entry = table.get(os.path.normpath(os.path.abspath(args.video)))
        if entry is None:
            print(f"afnet explain: error: --evidence-file {args.evidence_file}: no entry for {args.video} "
                  f"(its keys are paths relative to the file's folder)", file=sys.stderr)
            return 2
        evidence = entry.frames
    im = _load(args)
    try:
        explanation = explain_video(args.video, im, top_k=args.top_k, backend=args.backend,
                                    timeout=timeout, evidence=evidence, limits=_limits(args))
    except DecodeError as exc:
        print(f"afnet explain: error: {exc}", file=sys.stderr)
        return 1
    layout = draw_explanation(explanation, args.out)
    print(f"{layout.path}: {layout.title}; {layout.rows - 1} navigation point(s) x {layout.cols} frames")
    if evidence is not None:
        print("navigation precision: " + ", ".join(f"{n} {q:.2f}" for n, q in
                                                   zip(explanation.prediction.points, explanation.precision())))
    return 0


def run_export(args) -> int:
    from afnet.inference.onnx import describe, export_onnx
    from afnet.runtime import resolve_device

    if args.check:
        resolve_device(args.device)   # a device that is not there: said before the work starts
    print(f"afnet export: tracing {args.checkpoint} into {args.out}"
          f"{', then checking it in ONNX Runtime' if args.check else ''} ...", file=sys.stderr, flush=True)
    report = export_onnx(args.checkpoint, args.out, args.model, args.frames, args.num_classes, args.labels,
                         preset=args.preset, size=args.size, shift=args.shift, ratio=args.ratio,
                         execution=args.execution, opset=args.opset, check=args.check, device=args.device)
    print(f"{report.path}: {describe(report.metadata)}; {report.size_mb:.1f} MB")
    if report.max_rel_diff is None:
        return 0
    masks = "masks identical" if report.masks_equal else "masks DIFFER"
    print(f"checked in ONNX Runtime on a random video: logits within {report.max_rel_diff:.1e} relative of "
          f"PyTorch's, {masks}")
    if not report.masks_equal or report.max_rel_diff > 1e-4:
        print(f"afnet export: the exported graph does not compute what PyTorch computes ({masks}, relative "
              f"difference {report.max_rel_diff:.1e}); please report it", file=sys.stderr)
        return 1
    return 0


def run_convert(args) -> int:
    from afnet.inference.model import convert_checkpoint
    from afnet.package import read_config

    out = convert_checkpoint(args.checkpoint, args.out_dir, args.model, args.frames, args.num_classes, args.labels,
                             preset=args.preset, size=args.size, shift=args.shift, ratio=args.ratio)
    config = read_config(out)
    args_, prep = config["model_args"], config["preprocessing"]
    print(f"{out}: {config['arch']}, {args_['num_frames']} frames, {args_['num_classes']} classes"
          f"{' (named)' if config['labels'] else ''}, {prep['input_size']}px {prep['name']}")
    return 0


def run_serve(args) -> int:
    from afnet._imports import require
    from afnet.inference.serve import create_app

    uvicorn = require("uvicorn", "afnet serve")
    if not os.path.isdir(args.video_root):
        raise FileNotFoundError(f"--video-root: no such folder: {args.video_root}")
    if args.max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if args.max_queue < 1:
        raise ValueError(f"--max-queue must be positive, got {args.max_queue}")
    limits = _limits(args)
    im = _load(args, tune_malloc=False)
    app = create_app(im, video_root=args.video_root, max_upload_mb=args.max_upload_mb, top_k=args.top_k,
                     backend=args.backend, timeout=_decode_timeout(args), limits=limits, max_queue=args.max_queue)
    print(f"afnet serve: {im.arch} ({im.source} {im.checkpoint}) at http://{args.host}:{args.port}/ "
          f"(videos by path from {os.path.abspath(args.video_root)}); Ctrl-C stops", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
