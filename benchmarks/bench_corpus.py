"""Corpus-scale and long-video inference, measured: throughput, identical results, resume after
SIGKILL, timelines of long videos (boundaries, peak memory).

    python benchmarks/bench_corpus.py --out docs/corpus-bench.md            # full size (15-40 min on 2 cores)
    python benchmarks/bench_corpus.py --out /tmp/corpus.md --quick          # plumbing check (about 2 min)
    python benchmarks/bench_corpus.py --out long.md --parts long --threads 1 # long videos only
    python benchmarks/bench_corpus.py --out tp.md --parts throughput --arms loop batch2 --repeats 3

1. A model that recognises the synthetic evidence task (``afnet.demo``'s recipe): af_resnet_small
   pre-trained on glyph images, then trained on 8-frame evidence clips with learned navigation at
   RT=0.5 (``--checkpoint`` skips this; a model trained before in ``--work`` is reused).
2. Throughput on ``--videos`` synthetic videos: the single-file loop (``afnet predict --json``),
   ``afnet batch-predict`` in 1 process and in 2 (``--devices 2``); videos/s end to end (process
   start, model load and Lightning's start included) and in the steady state (first to last
   output line). Then the 2-process output against the loop's: top-k classes and masks per video.
3. Resume: ``batch-predict --devices 2`` killed with SIGKILL (the whole process group) once half
   the videos have a line, then run again: every video exactly once, equal to an uninterrupted run.
4. Long videos of known class segments (``--minutes``, default 5 and 10): ``afnet predict --window
   --stride --json`` in a child process; segment boundaries found against the true ones, peak RSS
   of the child (``ru_maxrss``), frames decoded; the timeline figure of the longest. Then the
   segments smoothed: ``--smoothing`` end to end (``--smooth`` / ``--min-segment``), and each of
   ``--sweep`` by ``segments_of`` on the raw run's window scores (``--top-k 8``: every class).

``--parts`` runs some of 2-4 (the model is trained or reused first); ``--arms`` and ``--repeats``
choose the throughput runs and alternate them in rounds, so that each arm meets the same load.

Every command runs as a child process; the Markdown tables (with the protocol: CPU model and flags,
torch version, threads, workers, load averages before and after) are printed and written to ``--out``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

PARTS = ("throughput", "resume", "long")
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
AFNET = [sys.executable, "-m", "afnet.cli"]
# a child that runs one afnet command and reports its peak resident memory on its last stderr line
RSS_CHILD = ("import json, resource, sys\nfrom afnet.cli import main\nrc = main(sys.argv[1:])\nsys.stdout.flush()\n"
             "print(json.dumps({'rc': rc, 'maxrss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), "
             "file=sys.stderr)\n")


def log(msg: str) -> None:
    print(f"[bench_corpus {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_protocol() -> str:
    import lightning
    import torch

    from afnet.runtime import cpu_description

    cores = len(os.sched_getaffinity(0))
    omp = os.environ.get("OMP_NUM_THREADS")
    return (f"CPU: {cpu_description()}, {cores} usable cores; "
            f"torch {torch.__version__}, lightning {lightning.__version__}, Python {platform.python_version()}"
            + ("" if omp is None else f"; OMP_NUM_THREADS={omp} in the environment (torch's default threads)"))


def load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


# ------------------------------------------------------------------ 1. a model
def train_model(work: Path, quick: bool, difficulty: float, pretrain_epochs: int = 15,
                epochs: int = 4) -> tuple[str, dict]:
    """af_resnet_small trained on the evidence task with learned navigation at RT=0.5, with the
    demo's recipe (glyph pre-training, then video training). Returns (checkpoint, info)."""
    import logging

    from afnet.data import make_synthetic
    from afnet.data.synthetic import make_glyph_images
    from afnet.demo import FULL, RUNS, DemoSize, demo_config, pretrain_backbone
    from afnet.engine import load_config, train

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    if quick:
        sz = DemoSize(num_train=32, num_val=16, size=32, video_frames=8, epochs=1, rt_begin=0, rt_end=1, t_end=1,
                      batch_size=8, num_images=64, num_val_images=32, pretrain_epochs=1, pretrain_target=0.5)
    else:   # the demo's recipe (afnet.demo.FULL), fewer validation videos, at most 15 pre-training epochs
        # (--pretrain-epochs); --epochs beyond the demo's 4 train longer at the final ratio
        sz = dataclasses.replace(FULL, num_val=300, pretrain_epochs=pretrain_epochs, epochs=epochs)
    record = work / "model.json"
    if record.is_file() and Path(json.loads(record.read_text())["checkpoint"]).is_file():
        saved = json.loads(record.read_text())
        log(f"model: reusing {saved['checkpoint']} (delete {record} to train again)")
        return saved["checkpoint"], saved["info"]
    start = time.time()
    data = make_synthetic(work / "train_data", num_train=sz.num_train, num_val=sz.num_val, num_frames=8, size=32,
                          seed=0, task="evidence", videos=False, difficulty=difficulty)
    images = make_glyph_images(work / "images", num_train=sz.num_images, num_val=sz.num_val_images, size=32,
                               difficulty=difficulty)
    log(f"pre-training af_resnet_small on {sz.num_images} glyph images")
    backbone, pretrained = pretrain_backbone(work, images, sz, "af_resnet_small")
    run = next(r for r in RUNS if r.label == "AFNet RT=0.5")
    label = run.label
    log(f"training {label} on {sz.num_train} evidence videos, {sz.epochs} epochs")
    cfg = demo_config(work, data.root, sz, 0, run, backbone)
    cfg["trainer"]["stop_at"] = None
    trained = train(load_config(cfg))
    m = trained.metrics
    info = {"label": label, "difficulty": difficulty, "pretrain_top1": pretrained["top1"], "top1": m.get("top1"),
            "kept_ratio": m.get("mean_kept_ratio"), "seconds": round(time.time() - start), "train_videos": sz.num_train,
            "epochs": sz.epochs, "images": sz.num_images}
    log(f"model: val top-1 {info['top1']:.1%}, kept {info['kept_ratio']:.2f}, {info['seconds']} s")
    record.write_text(json.dumps({"checkpoint": str(trained.best_checkpoint), "info": info}))
    return str(trained.best_checkpoint), info


# ------------------------------------------------------------------ videos
def write_corpus(folder: Path, count: int, frames: int, size: int) -> list[str]:
    """``count`` evidence-task videos (8 classes in turn) of ``frames`` frames at 8 fps."""
    from afnet.data.synthetic import render_evidence_video, write_mp4

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        path = folder / f"v{i:04d}.mp4"
        if not path.is_file():
            rng = np.random.default_rng([7, i])
            clips = [render_evidence_video(i % 8, rng, size=size, num_frames=8)[0] for _ in range(frames // 8)]
            write_mp4(path, np.concatenate(clips), fps=8)
        made.append(str(path))
    return made


def long_segments(minutes: float) -> list[tuple[int, float]]:
    """(class, seconds) of a long video: ten segments of uneven lengths (multiples of 2 s), the
    classes in a fixed order, scaled to ``minutes``."""
    base = [(0, 44), (3, 76), (5, 60), (1, 30), (6, 90), (2, 56), (7, 46), (4, 74), (0, 64), (5, 60)]   # 600 s
    scale = minutes * 60 / 600
    return [(c, 2 * max(1, round(s * scale / 2))) for c, s in base]


def write_long(path: Path, segments, fps: int, difficulty: float) -> None:
    """Segments back to back, each made of 2-second evidence clips (8 frames at 4 fps) of its class."""
    from afnet.data.synthetic import render_evidence_video, write_mp4

    if path.is_file():
        return
    rng = np.random.default_rng(11)
    per_clip = 8
    clips = []
    for label, seconds in segments:
        for _ in range(int(seconds * fps) // per_clip):
            clips.append(render_evidence_video(label, rng, size=32, num_frames=per_clip, difficulty=difficulty)[0])
    write_mp4(path, np.concatenate(clips), fps=fps)


# ------------------------------------------------------------------ running commands
class LineWatch(threading.Thread):
    """Polls the line count of some files every 20 ms: the times of the first and last line."""

    def __init__(self, files):
        super().__init__(daemon=True)
        self.files, self.first, self.last, self.count, self.stop = files, None, None, 0, False
        self.first_count = 0

    def lines(self) -> int:
        total = 0
        for f in self.files():
            try:
                total += Path(f).read_bytes().count(b"\n")
            except OSError:
                pass
        return total

    def run(self) -> None:
        while not self.stop:
            n = self.lines()
            if n > self.count:
                now = time.perf_counter()
                if self.first is None:
                    self.first, self.first_count = now, n
                self.last, self.count = now, n
            time.sleep(0.02)


def timed(cmd, out_files, stdout=None) -> dict:
    """Run ``cmd``; wall-clock, steady-state rate (between the first and last output line) and loads."""
    before = load()
    watch = LineWatch(out_files)
    watch.start()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=ENV, cwd=REPO, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    wall = time.perf_counter() - start
    watch.stop = True
    watch.join()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-3000:]}")
    steady = ((watch.count - watch.first_count) / (watch.last - watch.first)
              if watch.count > watch.first_count and watch.last > watch.first else None)
    return {"wall": wall, "steady": steady, "load_before": before, "load_after": load(), "stderr": proc.stderr}


ARMS = ("loop", "loop1", "batch1", "batch1t1", "batch2")


def throughput(work: Path, ckpt: str, videos: list[str], folder: Path, arms=ARMS,
               repeats: int = 1) -> tuple[list[str], dict]:
    """The ``arms`` in turn, ``repeats`` rounds (loop, batch2, loop, batch2, ...: each arm sees the
    machine's load as the others do); the tables show every run, the ratios use the medians."""
    cores = len(os.sched_getaffinity(0))
    n = len(videos)
    spec = {"loop": [], "loop1": ["--threads", "1"], "batch1": (1, ["--threads", str(cores)]), "batch1t1": (1, []),
            "batch2": (2, [])}
    runs, rounds = {}, {}
    loop_out = work / "loop.jsonl"
    for _ in range(repeats):
        for key in arms:
            out = work / f"{key}.jsonl"
            if key.startswith("loop"):
                log(f"throughput: afnet predict (single-file loop) {' '.join(spec[key])} on {n} videos")
                with open(out, "w") as f:
                    run = timed(AFNET + ["predict", str(folder), "--checkpoint", ckpt, "--json", *spec[key]],
                                lambda out=out: [out], f)
            else:
                devices, threads = spec[key]
                for p in [out, *out.parent.glob(out.name + ".shard-*")]:
                    p.unlink(missing_ok=True)
                log(f"throughput: afnet batch-predict --devices {devices} {' '.join(threads)}")
                run = timed(AFNET + ["batch-predict", str(folder), "--checkpoint", ckpt, "--out", str(out),
                                     "--devices", str(devices), "--workers", "1", "--accelerator", "cpu",
                                     "--no-progress", *threads],
                            lambda out=out: [*out.parent.glob(out.name + ".shard-*"), out])
                run["out"] = out
            rounds.setdefault(key, []).append(run)
    for key, done in rounds.items():   # the median run by wall-clock stands for the arm
        runs[key] = sorted(done, key=lambda r: r["wall"])[len(done) // 2]
    if "loop" not in runs or "batch2" not in runs:
        raise ValueError("--arms needs loop and batch2 (the comparisons)")
    loop_rows = [json.loads(x) for x in loop_out.read_text().splitlines()]
    decode = np.mean([r["decode_ms"] for r in loop_rows if r["ok"]])
    model = np.mean([r["latency_ms"] for r in loop_rows if r["ok"]])
    default = int(os.environ.get("OMP_NUM_THREADS") or cores)   # torch's default threads in the children
    labels = {"loop": f"`afnet predict` (the single-file loop; 1 process, {default} thread(s), torch's default)",
              "loop1": "`afnet predict --threads 1` (the loop, 1 thread)",
              "batch1": f"`afnet batch-predict --threads {cores}` (1 process, {cores} threads, + 1 decoding worker)",
              "batch1t1": f"`afnet batch-predict` (1 process, {max(1, cores - 1)} thread(s) by default, + 1 decoding worker)",
              "batch2": "`afnet batch-predict --devices 2` (2 processes x 1 thread, + 1 decoding worker each)"}
    lines = ["| run | videos | wall s | videos/s end to end | videos/s steady | load before -> after |",
             "|---|---|---|---|---|---|"]
    for round_ in range(repeats):
        for key in arms:
            r = rounds[key][round_]
            steady = "-" if r["steady"] is None else f"{r['steady']:.1f}"
            label = labels[key] + ("" if repeats == 1 else f", round {round_ + 1}")
            lines.append(f"| {label} | {n} | {r['wall']:.1f} | {n / r['wall']:.1f} | {steady} | "
                         f"{r['load_before']} -> {r['load_after']} |")
    if repeats > 1:
        lines += ["", "Median of the rounds (by wall-clock), end to end and steady videos/s: " +
                  "; ".join(f"{key} {n / r['wall']:.1f} and {r['steady'] or 0:.1f}" for key, r in runs.items()) + "."]
    lines.append(f"`batch-predict --devices 2` / the loop: {runs['loop']['wall'] / runs['batch2']['wall']:.2f}x end "
                 f"to end, {(runs['batch2']['steady'] or 0) / (runs['loop']['steady'] or 1):.2f}x steady"
                 + ("" if repeats == 1 else " (medians; per round: " + ", ".join(
                     f"{a['wall'] / b['wall']:.2f}x and {(b['steady'] or 0) / (a['steady'] or 1):.2f}x"
                     for a, b in zip(rounds["loop"], rounds["batch2"])) + ")") + ".")
    lines += ["", f"Per video in the loop: decoding + transforms {decode:.1f} ms, model call {model:.1f} ms "
                  f"(plus the untimed GFLOPs count, a second model call)."]
    # an estimate, not a measurement: wall = start-up + videos / steady rate, start-up = wall - n / steady
    startup = {k: r["wall"] - n / r["steady"] for k, r in runs.items() if r["steady"]}
    short = {"loop": "the loop", "loop1": "the loop --threads 1", "batch1": f"batch-predict --threads {cores}",
             "batch1t1": "batch-predict", "batch2": "batch-predict --devices 2"}
    lines += ["", "Start-up, estimated as wall - videos / steady rate (s): " +
              ", ".join(f"{short[k]} {v:.1f}" for k, v in startup.items()) + "."]
    if "loop" in startup and "batch2" in startup:
        gain = 1 / runs["loop"]["steady"] - 1 / runs["batch2"]["steady"]   # seconds saved per video
        extra = startup["batch2"] - startup["loop"]
        even = "always (no extra start-up)" if extra <= 0 else (
            "never (not faster per video)" if gain <= 0 else f"from about {extra / gain:.0f} videos")
        lines.append(f"`batch-predict --devices 2` against the loop: {extra:+.1f} s start-up, "
                     f"{gain * 1e3:+.1f} ms per video saved in the steady state: it pays off {even} "
                     f"(of these videos, on this machine; estimated from the rates above).")

    two = {r["path"]: r for r in map(json.loads, Path(runs["batch2"]["out"]).read_text().splitlines())}
    same_classes = sum(1 for r in loop_rows if [t["class"] for t in r["top"]] == [t["class"] for t in two[r["path"]]["top"]])
    same_masks = sum(1 for r in loop_rows if r["masks"] == two[r["path"]]["masks"])
    diff = max((abs(a["score"] - b["score"]) for r in loop_rows for a, b in zip(r["top"], two[r["path"]]["top"])),
               default=0.0)
    order = [r["path"] for r in map(json.loads, Path(runs["batch2"]["out"]).read_text().splitlines())]
    identical = {"videos": n, "same_classes": same_classes, "same_masks": same_masks, "max_score_diff": diff,
                 "same_order": order == [r["path"] for r in loop_rows]}
    lines += ["", "| identical results: 2-process merged output vs the loop | |", "|---|---|",
              f"| videos, one line each, in the loop's order | {len(order)} of {n}, "
              f"{'same order' if identical['same_order'] else 'ORDER DIFFERS'} |",
              f"| top-k classes (in order) equal | {same_classes} of {n} |",
              f"| masks (every navigation point) equal | {same_masks} of {n} |",
              f"| largest score difference | {diff:.1e} |"]
    return lines, {"runs": {k: {x: v for x, v in r.items() if x not in ("stderr", "out")} for k, r in runs.items()},
                   "decode_ms": decode, "model_ms": model, "identical": identical, "startup_s": startup}


def resume(work: Path, ckpt: str, videos: list[str], folder: Path, reference: Path) -> tuple[list[str], dict]:
    out = work / "resumed.jsonl"
    for p in [out, *out.parent.glob(out.name + ".shard-*")]:
        p.unlink(missing_ok=True)
    cmd = AFNET + ["batch-predict", str(folder), "--checkpoint", ckpt, "--out", str(out), "--devices", "2",
                   "--accelerator", "cpu", "--batch-size", "1", "--no-progress"]
    log("resume: batch-predict --devices 2, SIGKILL at half way")
    proc = subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    shards = lambda: list(out.parent.glob(out.name + ".shard-*"))  # noqa: E731
    lines = lambda: sum(p.read_bytes().count(b"\n") for p in shards())  # noqa: E731
    while lines() < len(videos) // 2 and proc.poll() is None:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = lines()
    log(f"resume: killed with {killed_at} of {len(videos)} lines; re-running")
    start = time.perf_counter()
    again = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True)
    rerun_s = time.perf_counter() - start
    rows = [json.loads(x) for x in out.read_text().splitlines()] if out.is_file() else []
    paths = [r["path"] for r in rows]
    ref = {r["path"]: r for r in map(json.loads, reference.read_text().splitlines())}
    equal = sum(1 for r in rows if (r["top"], r["masks"]) == (ref[r["path"]]["top"], ref[r["path"]]["masks"]))
    info = {"videos": len(videos), "killed_at": killed_at, "rerun_rc": again.returncode, "rerun_s": rerun_s,
            "lines": len(rows), "unique": len(set(paths)), "in_order": paths == videos, "equal": equal}
    table = ["| resume after SIGKILL (2 processes) | |", "|---|---|",
             f"| videos | {len(videos)} |",
             f"| lines in the shards when killed | {killed_at} ({killed_at / len(videos):.0%}) |",
             f"| re-run (same command): exit status, seconds | {again.returncode}, {rerun_s:.1f} |",
             f"| final lines / distinct videos / in input order | {len(rows)} / {len(set(paths))} / "
             f"{'yes' if info['in_order'] else 'NO'} |",
             f"| equal (top-k and masks) to the uninterrupted 2-process run | {equal} of {len(rows)} |"]
    return table, info


# smoothings compared on the long videos: "none", "majority:K", "mean:K", "min:S" (--min-segment S), or
# one of each joined by "+" (applied in that order)
SMOOTHINGS = ("majority:3", "majority:5", "majority:7", "majority:9", "mean:3", "mean:5", "mean:7", "mean:9",
              "min:4", "min:8", "min:12", "min:16", "min:24", "majority:3+min:12", "mean:3+min:12")


def smoothing_args(spec: str) -> dict:
    """``"majority:5+min:8"`` -> ``{"smooth": "majority:5", "min_segment": 8.0}``."""
    out = {"smooth": None, "min_segment": None}
    for part in spec.split("+"):
        if part.startswith("min:"):
            out["min_segment"] = float(part[4:])
        elif part != "none":
            out["smooth"] = part
    return out


def smoothing_flags(spec: str) -> list[str]:
    """``"majority:5+min:8"`` -> ``["--smooth", "majority:5", "--min-segment", "8"]``."""
    flags = smoothing_args(spec)
    return (([] if flags["smooth"] is None else ["--smooth", flags["smooth"]]) +
            ([] if flags["min_segment"] is None else ["--min-segment", f"{flags['min_segment']:g}"]))


def resegment(t: dict, spec: str) -> list[dict]:
    """The segments of a raw timeline JSON (``--top-k`` = every class) under ``spec``, from its
    window scores (rounded to 1e-6 in the JSON) by the library's ``segments_of``."""
    import torch

    from afnet.inference.predict import VideoPrediction
    from afnet.inference.timeline import WindowPrediction, segments_of

    classes = len(t["windows"][0]["top"])
    windows = []
    for w in t["windows"]:
        probs = torch.zeros(classes, dtype=torch.float64)
        for c in w["top"]:
            probs[c["class"]] = c["score"]
        windows.append(WindowPrediction(w["start"], w["end"], VideoPrediction(t["path"], ok=True, top=w["top"],
                                                                              probs=probs)))
    return [{"start": s.start, "end": s.end, "class": s.label}
            for s in segments_of(windows, t["duration"], lambda c: None, **smoothing_args(spec))]


def boundary_errors(segments: list[dict], truth: list[float], stride: float) -> dict:
    """Found against true boundaries: each true one's distance to the nearest found, and the
    found ones farther than a stride from every true one."""
    found = [s["start"] for s in segments[1:]]
    errors = [min(abs(b - f) for f in found) if found else float("inf") for b in truth]
    spurious = sum(1 for f in found if min(abs(b - f) for b in truth) > stride + 1e-6)
    return {"segments": len(segments), "found": found, "errors": errors, "spurious": spurious,
            "within": sum(e <= stride + 1e-6 for e in errors)}


def long_videos(work: Path, ckpt: str, minutes: list[float], window: float, stride: float, fps: int,
                difficulty: float, figure: Path | None, threads: list[str], smoothing: str,
                sweep: list[str]) -> tuple[list[str], dict]:
    info = {}
    for m in minutes:
        segments = long_segments(m)
        path = work / f"long_{m:g}min.mp4"
        log(f"long video: writing {m:g} min at {fps} fps")
        write_long(path, segments, fps, difficulty)
        out = work / f"long_{m:g}min.json"
        log(f"long video: afnet predict --window {window:g} --stride {stride:g} on {m:g} min")
        before = load()
        start = time.perf_counter()
        with open(out, "w") as f:
            proc = subprocess.run([sys.executable, "-c", RSS_CHILD, "predict", str(path), "--checkpoint", ckpt,
                                   "--window", str(window), "--stride", str(stride), "--json", "--top-k", "8", *threads],
                                  env=ENV, cwd=REPO, stdout=f, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        child = json.loads(proc.stderr.strip().splitlines()[-1])
        if child["rc"] != 0:
            raise RuntimeError(proc.stderr[-3000:])
        t = json.loads(out.read_text())
        truth = np.cumsum([s for _, s in segments])[:-1].tolist()
        raw = boundary_errors(t["segments"], truth, stride)
        found, errors, spurious = raw["found"], raw["errors"], raw["spurious"]
        # the chosen smoothing end to end (the command with --smooth / --min-segment), the others
        # from the raw run's window scores
        smoothed = {spec: boundary_errors(resegment(t, spec), truth, stride) for spec in sweep}
        chosen = None
        if smoothing != "none":
            extra = smoothing_flags(smoothing)
            log(f"long video: afnet predict ... {' '.join(extra)} on {m:g} min")
            began = time.perf_counter()
            proc = subprocess.run(AFNET + ["predict", str(path), "--checkpoint", ckpt, "--window", str(window),
                                           "--stride", str(stride), "--json", "--top-k", "8", *threads, *extra],
                                  env=ENV, cwd=REPO, capture_output=True, text=True, check=True)
            ts = json.loads(proc.stdout)
            chosen = boundary_errors(ts["segments"], truth, stride) | {
                "wall": time.perf_counter() - began, "recorded": {"smooth": ts["smooth"], "min_segment": ts["min_segment"]},
                "same_as_from_scores": [(s["start"], s["class"]) for s in ts["segments"]] ==
                                       [(round(s["start"], 4), s["class"]) for s in resegment(t, smoothing)]}
        # per window: the true class at its centre (windows straddling a bound excluded)
        edges = np.concatenate([[0.0], np.cumsum([s for _, s in segments])])
        labels = [c for c, _ in segments]
        clean, right = 0, 0
        for w in t["windows"]:
            k = int(np.searchsorted(edges, w["start"], side="right")) - 1
            if w["end"] <= edges[k + 1] + 1e-6:
                clean += 1
                right += w["top"][0]["class"] == labels[k]
        info[m] = {"seconds": t["duration"], "frames": t["frames"], "windows": len(t["windows"]),
                   "decoded": t["decoded_frames"], "sampled": sum(len(w["frame_indices"]) for w in t["windows"]),
                   "wall": wall, "maxrss_mb": child["maxrss_kb"] / 1024, "truth": truth, "found": found,
                   "errors": errors, "spurious": spurious, "window_accuracy": right / max(clean, 1), "clean_windows": clean,
                   "segments_true": len(segments), "segments_found": len(t["segments"]),
                   "load": f"{before} -> {load()}", "kept": np.mean([np.mean(w["kept_ratio"]) for w in t["windows"]]),
                   "smoothed": smoothed, "chosen": chosen}
    table = [f"| video | frames | windows | frames decoded (sampled by windows) | wall s | peak RSS MB | "
             f"segments true / found | true bounds found within one stride ({stride:g} s) | largest error s | "
             f"bounds found farther than a stride from any true one | "
             f"window top-1 (windows inside one segment) | load before -> after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, r in info.items():
        within = sum(e <= stride + 1e-6 for e in r["errors"])
        table.append(f"| {m:g} min ({r['seconds']:.0f} s) | {r['frames']} | {r['windows']} | {r['decoded']} ({r['sampled']}) | "
                     f"{r['wall']:.1f} | {r['maxrss_mb']:.0f} | {r['segments_true']} / {r['segments_found']} | "
                     f"{within} of {len(r['errors'])} | {max(r['errors']):.1f} | {r['spurious']} | {r['window_accuracy']:.1%} of "
                     f"{r['clean_windows']} | {r['load']} |")
    table += ["", f"Segments, raw and smoothed (`--smooth`, `--min-segment`; `min:S` is `--min-segment S`): "
                  f"{smoothing} end to end (`afnet predict --window {window:g} --stride {stride:g} "
                  f"{' '.join(smoothing_flags(smoothing))}`), the others from the raw run's window scores "
                  f"by the same `segments_of`:", "",
              "| video | smoothing | segments true / found | true bounds found within one stride | largest error s | "
              "bounds found farther than a stride from any true one |", "|---|---|---|---|---|---|"]
    for m, r in info.items():
        rows = [("raw (off)", {"segments": r["segments_found"], "errors": r["errors"], "spurious": r["spurious"],
                               "within": sum(e <= stride + 1e-6 for e in r["errors"])})]
        if r["chosen"] is not None:
            same = "" if r["chosen"]["same_as_from_scores"] else " (DIFFERS from the scores' result)"
            rows.append((f"**{smoothing}, end to end**{same}", r["chosen"]))
        rows += [(spec, e) for spec, e in r["smoothed"].items()]
        for label, e in rows:
            table.append(f"| {m:g} min | {label} | {r['segments_true']} / {e['segments']} | {e['within']} of "
                         f"{len(e['errors'])} | {max(e['errors']):.1f} | {e['spurious']} |")
    longest = max(info)
    r = info[longest]
    table += ["", f"Boundaries of the {longest:g}-minute video, true -> found (s): " +
              ", ".join(f"{b:.0f} -> {min(r['found'], key=lambda f: abs(f - b)):.1f}" if r["found"] else f"{b:.0f} -> -"
                        for b in r["truth"])]
    if figure is not None:
        log(f"long video: afnet timeline figure of the {longest:g}-minute video -> {figure}")
        figure.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(AFNET + ["timeline", str(work / f"long_{longest:g}min.mp4"), "--checkpoint", ckpt,
                                "--window", str(window), "--stride", str(stride), "--out", str(figure),
                                "--json", "--top-k", "8", "--draw-classes", "8", *threads],
                       env=ENV, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return table, {str(k): v for k, v in info.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="Markdown file for the tables")
    p.add_argument("--work", default="/tmp/afnet_bench_corpus", help="videos, model, outputs (kept for re-runs)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the plumbing, not the numbers")
    p.add_argument("--checkpoint", help="use this model instead of training one (evidence task, 8 classes, 32 px)")
    p.add_argument("--pretrain-epochs", type=int, default=15,
                   help="most glyph pre-training epochs of the model trained here (default 15; it stops at 95%% "
                        "glyph top-1)")
    p.add_argument("--epochs", type=int, default=4, help="video training epochs of the model trained here (default 4)")
    p.add_argument("--videos", type=int, help="videos in the throughput and resume runs (default 200; quick 16)")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS),
                   help="throughput runs (default all): loop (afnet predict), loop1 (--threads 1), batch1 "
                        "(batch-predict --threads CORES), batch1t1 (batch-predict), batch2 (--devices 2); "
                        "loop and batch2 at least")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds of the throughput arms, in turn (default 1); the ratios use the medians")
    p.add_argument("--frames", type=int, default=48, help="frames per throughput video (8 fps; default 48)")
    p.add_argument("--size", type=int, default=64, help="side of the throughput videos (default 64)")
    p.add_argument("--minutes", type=float, nargs="+", help="long video lengths (default 5 10; quick 0.5 1)")
    p.add_argument("--window", type=float, default=4.0)
    p.add_argument("--stride", type=float, default=2.0)
    p.add_argument("--fps", type=int, default=4, help="frame rate of the long videos (default 4)")
    p.add_argument("--threads", type=int, help="--threads of the long-video commands (default: torch's)")
    p.add_argument("--smoothing", default="min:12",
                   help="segment smoothing run end to end on the long videos: majority:K, mean:K, min:S "
                        "(--min-segment S) or two joined by + (default min:12, the one docs/corpus.md "
                        "chose by this sweep; none: skip)")
    p.add_argument("--sweep", nargs="*", default=list(SMOOTHINGS),
                   help="smoothings computed from the raw run's window scores (default: a sweep of each kind)")
    p.add_argument("--figure", help="timeline figure of the longest video (PNG)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                   help="what to measure (default all): throughput, resume (needs throughput's 2-process "
                        "output), long")
    p.add_argument("--difficulty", type=float, default=0.0,
                   help="the evidence task's difficulty for the model's data and the long videos (default 0: "
                        "least noise and fewest distractors, so that a small model learns it in minutes)")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n = args.videos or (16 if args.quick else 200)
    minutes = args.minutes or ([0.5, 1.0] if args.quick else [5.0, 10.0])
    protocol = cpu_protocol()
    started = time.time()
    load_start = load()

    if args.checkpoint:
        ckpt, model = args.checkpoint, {"label": "given", "top1": None}
    else:
        ckpt, model = train_model(work / "model", args.quick, args.difficulty, args.pretrain_epochs, args.epochs)
    t_lines = r_lines = l_lines = []
    t_info = r_info = l_info = None
    if "throughput" in args.parts or "resume" in args.parts:
        folder = work / f"corpus_{n}_{args.frames}f_{args.size}px"
        videos = write_corpus(folder, n, args.frames, args.size)
    if "throughput" in args.parts:
        t_lines, t_info = throughput(work, ckpt, videos, folder, args.arms, args.repeats)
    if "resume" in args.parts:
        if not (work / "batch2.jsonl").is_file():
            p.error(f"resume compares with the throughput part's output {work / 'batch2.jsonl'}: run it first")
        r_lines, r_info = resume(work, ckpt, videos, folder, work / "batch2.jsonl")
    if "long" in args.parts:
        l_lines, l_info = long_videos(work, ckpt, minutes, args.window, args.stride, args.fps, args.difficulty,
                                      Path(args.figure) if args.figure else None,
                                      [] if args.threads is None else ["--threads", str(args.threads)],
                                      args.smoothing, args.sweep)

    cores = len(os.sched_getaffinity(0))
    cmd = "python benchmarks/bench_corpus.py " + " ".join(sys.argv[1:] if argv is None else argv)
    model_line = ("given checkpoint" if model["top1"] is None else
                  f"{model['label']} (af_resnet_small, 8 frames, 32 px) trained here in {model['seconds']} s: glyph "
                  f"pre-training on {model['images']} images (top-1 {model['pretrain_top1']:.1%}), then {model['epochs']} epochs on {model['train_videos']} "
                  f"evidence videos; val top-1 {model['top1']:.1%}, kept ratio {model['kept_ratio']:.2f}")
    text = [f"`{cmd}` ({time.time() - started:.0f} s in all; load average {load_start} at the start, {load()} at the end)",
            "", f"- {protocol}",
            f"- model: {model_line}",
            *([f"- threads: the loop uses torch's default ({os.environ.get('OMP_NUM_THREADS') or cores}) unless `--threads`; `batch-predict` gives each "
            f"process the cores its decoding workers leave, shared among the processes: (cores - devices x workers) "
            f"// devices, at least 1 ({max(1, cores - 1)} with 1 process, {max(1, (cores - 2) // 2)} with 2), and each "
            f"decoding worker 1; warm-up: the first model call per input shape in each process is untimed (inside the "
            f"runs); the end-to-end rate includes process start, model load and, for `batch-predict`, Lightning's "
            f"start (and the second process's); the steady rate is between the first and the last output line.",
            f"- throughput videos: {n} evidence-task mp4 (H.264), {args.frames} frames at 8 fps, {args.size}x{args.size} "
            f"(read at 32x32), one clip of 8 frames per video, GFLOPs counted (a second model call)."]
              if "throughput" in args.parts or "resume" in args.parts else []),
            *([f"- long videos: `afnet predict --window` with torch's default threads ({cores})" if args.threads is None
               else f"- long videos: `afnet predict --window ... --threads {args.threads}`"] if "long" in args.parts else []),
            *(["", "### Throughput", "", *t_lines] if t_lines else []),
            *(["", "### Resume", "", *r_lines] if r_lines else []),
            *(["", f"### Long videos (window {args.window:g} s, stride {args.stride:g} s, {args.fps} fps, 32x32, "
                   f"evidence task at difficulty {args.difficulty:g})", "", *l_lines] if l_lines else [])]
    report = "\n".join(text) + "\n"
    print(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        {"model": model, "throughput": t_info, "resume": r_info, "long": l_info}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
