"""Inference at corpus scale and on long videos: shard assignment, the shard files (resume,
merge), window arithmetic, timelines; end to end, a 2-process sharded run and a SIGKILL'd one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import afnet
from afnet.cli import main
from afnet.data.synthetic import render_video, write_mp4
from afnet.errors import OptionError, flag
from afnet.inference import load_model_for_inference, predict_video
from afnet.inference.corpus import ShardBatches, predict_corpus
from afnet.inference.predict import VideoPrediction, find_videos, predict_sample, read_video_list
from afnet.inference.report import JSON_FIELDS, TIMELINE_FIELDS, to_json_line
from afnet.inference.shards import cut_partial_line, merge, pending, shard_files, shard_path
from afnet.inference.timeline import (
    WindowPrediction,
    draw_timeline,
    mean_scores,
    parse_smooth,
    predict_timeline,
    segments_of,
    window_bounds,
    window_frames,
    window_indices,
)
from tests.helpers import randomize

REPO = Path(__file__).resolve().parents[1]
T, K = 8, 4
NAMES = ["left", "right", "red-blue", "blue-red"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    """af_resnet_small (T=8, K=4) whose navigation keeps some frames and skips others; 32 pixels."""
    path = tmp_path_factory.mktemp("corpus_ckpt") / "small.pt"
    model = randomize(afnet.create_model("af_resnet_small", num_classes=K, num_frames=T), seed=1)
    afnet.save_checkpoint(path, model, class_names=NAMES,
                          config={"data": {"preset": "synthetic", "input_size": 32, "scale_size": 32}})
    return str(path)


@pytest.fixture(scope="module")
def im(ckpt):
    return load_model_for_inference(ckpt)


def _write(path: Path, label: int, frames: int, seed: int, fps: int = 8) -> str:
    write_mp4(path, render_video(label, np.random.default_rng(seed), size=32, num_frames=frames), fps=fps)
    return str(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    """A folder of 14 tiny mp4 (various lengths) and one file that is not a video."""
    root = tmp_path_factory.mktemp("corpus")
    made = [_write(root / f"v{i:02d}.mp4", i % 4, 10 + i, seed=i) for i in range(14)]
    (root / "v07_bad.mp4").write_text("not a video")
    return root, sorted(made + [str(root / "v07_bad.mp4")])


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> str:
    """4 s at 8 fps: 2 s of class 0, then 2 s of class 1."""
    parts = [render_video(c, np.random.default_rng(c), size=32, num_frames=16) for c in (0, 1)]
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_mp4(path, np.concatenate(parts), fps=8)
    return str(path)


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _same(got: dict, want: dict) -> bool:
    """The same prediction: every key but the timings."""
    timings = ("latency_ms", "decode_ms")
    return {k: v for k, v in got.items() if k not in timings} == {k: v for k, v in want.items() if k not in timings}


def _single_process(paths, im) -> list[dict]:
    """``afnet predict --json`` objects, one thread (as each process of the sharded runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [json.loads(to_json_line(predict_video(p, im))) for p in paths]
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------ shards
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_assignment_is_complete_and_disjoint(world):
    for size in range(0, 12):
        for batch_size in (1, 3):
            shards = [list(ShardBatches(size, rank, world, batch_size)) for rank in range(world)]
            assert [len(s) for s in shards] == [len(ShardBatches(size, r, world, batch_size)) for r in range(world)]
            items = [sum(batches, []) for batches in shards]
            assert sorted(sum(items, [])) == list(range(size))      # complete, nothing repeated (no padding)
            assert max(map(len, items)) - min(map(len, items)) <= 1
            assert all(len(b) <= batch_size for s in shards for b in s)
            assert all(batches == [[]] for batches, got in zip(shards, items) if not got)   # one empty batch
    with pytest.raises(ValueError, match="rank 2 outside a world of 2"):
        ShardBatches(5, 2, 2)


def _line(path: str, ok: bool = True, label: int = 0) -> str:
    p = VideoPrediction(path, ok=ok, error=None if ok else "cannot open video",
                        top=[{"class": label, "name": NAMES[label], "score": 0.9}] if ok else [])
    return to_json_line(p) + "\n"


def test_resume_skips_done_videos_and_merge_keeps_input_order(tmp_path):
    out = tmp_path / "preds.jsonl"
    videos = [f"clips/{c}.mp4" for c in "abcdef"]
    shard_path(out, 0).write_text(_line("clips/c.mp4") + _line("clips/a.mp4", ok=False))
    # rank 1 was killed in the middle of writing e's line
    shard_path(out, 1).write_text(_line("clips/b.mp4", label=2) + _line("clips/e.mp4")[:17])
    assert [p.name for p in shard_files(out)] == ["preds.jsonl.shard-0.jsonl", "preds.jsonl.shard-1.jsonl"]

    assert pending(videos, out) == [(3, "clips/d.mp4"), (4, "clips/e.mp4"), (5, "clips/f.mp4")]
    assert pending(videos, out, retry_failed=True)[0] == (0, "clips/a.mp4")
    assert pending(videos + ["clips/d.mp4"], out) == pending(videos, out)      # a repeated input counts once

    before = merge(out, videos)       # d, e, f have no line: nothing is written, the shards stay
    assert before.missing == ["clips/d.mp4", "clips/e.mp4", "clips/f.mp4"] and not out.exists()

    cut_partial_line(shard_path(out, 1))       # as the rank does before appending again
    assert shard_path(out, 1).read_text() == _line("clips/b.mp4", label=2)
    with open(shard_path(out, 1), "a") as f:
        f.write(_line("clips/e.mp4") + _line("clips/a.mp4", label=1))    # a retried failure now succeeds
    shard_path(out, 3).write_text(_line("clips/d.mp4") + _line("clips/f.mp4"))  # a run with more processes
    result = merge(out, videos + ["clips/b.mp4"])
    rows = _rows(out)
    assert [r["path"] for r in rows] == videos                                # input order, once each
    assert rows[0]["ok"] and rows[0]["top"][0]["class"] == 1                  # the success wins over the failure
    assert rows[1]["top"][0]["class"] == 2
    assert (result.written, result.failed, result.missing) == (6, 0, [])
    assert shard_files(out) == []
    assert pending(videos, out) == []                                         # the merged file counts as done
    assert merge(out, videos).written == 6 and _rows(out) == rows             # merging again changes nothing


def test_inputs_from_a_folder_a_list_and_a_glob(corpus, tmp_path):
    root, made = corpus
    listed = tmp_path / "list.txt"
    listed.write_text("# comment\n\nv03.mp4 3\nv01.mp4 1\n")
    assert read_video_list(listed, str(root)) == [str(root / "v03.mp4"), str(root / "v01.mp4")]
    assert find_videos([str(root / "v1*.mp4")]) == [m for m in made if os.path.basename(m).startswith("v1")]
    assert find_videos([str(tmp_path / "**" / "*.mp4")]) == [str(tmp_path / "**" / "*.mp4")]  # no match: a failure
    assert find_videos([root]) == made
    with pytest.raises(FileNotFoundError, match="video list not found: .*nope.txt"):
        read_video_list(tmp_path / "nope.txt")


# ------------------------------------------------------------------ windows
def test_window_arithmetic_at_the_ends():
    assert window_bounds(10, 4, 3) == [(0, 4), (3, 7), (6, 10)]                   # the grid ends at the end
    assert window_bounds(10.5, 4, 3) == [(0, 4), (3, 7), (6, 10), (6.5, 10.5)]   # one more, flush with the end
    assert window_bounds(10, 2, 5) == [(0, 2), (5, 7), (8, 10)]                   # stride > window: gaps, end covered
    assert window_bounds(3, 4, 1) == [(0.0, 3.0)] == window_bounds(3, 3, 1)      # not longer than a window: one
    bounds = window_bounds(1.0, 0.5, 0.1)                                         # float steps do not add a window
    assert len(bounds) == 6 and bounds[-1] == pytest.approx((0.5, 1.0))
    for bad, name in (((10, 0, 1), "window"), ((10, 1, -1), "stride"), ((10, float("nan"), 1), "window")):
        with pytest.raises(OptionError, match=f"^{name} must be") as caught:   # the parameter's name ...
            window_bounds(*bad)
        assert caught.value.spelled(flag).startswith(f"--{name} must be")      # ... the command's flag

    times = np.arange(20) / 5.0                       # 20 frames at 5 fps: 4 s
    assert window_frames(times, 0, 1) == (0, 5)       # [0, 1) s: frames 0-4
    assert window_frames(times, 3, 4) == (15, 20)     # the last window reaches the last frame
    assert window_frames(times, 1.01, 1.02) == (5, 6)  # shorter than a frame interval: the nearest frame
    config = afnet.data.get_preset("synthetic", num_frames=4)
    ix = window_indices(times, window_bounds(4.0, 1.0, 1.0), config)
    assert [i.tolist() for i in ix] == [[[0, 1, 3, 4]], [[5, 6, 8, 9]], [[10, 11, 13, 14]], [[15, 16, 18, 19]]]


def _window(start, end, probs) -> WindowPrediction:
    probs = torch.tensor(probs)
    top = [{"class": int(c), "name": NAMES[int(c)], "score": float(probs[c])}
           for c in probs.argsort(descending=True, stable=True)]
    return WindowPrediction(start, end, VideoPrediction("v", ok=True, top=top, probs=probs))


def test_video_scores_and_segments_by_hand():
    windows = [_window(0, 2, [0.7, 0.2, 0.1, 0.0]), _window(1, 3, [0.6, 0.3, 0.1, 0.0]),
               _window(2, 4, [0.2, 0.5, 0.3, 0.0]), _window(3, 5, [0.1, 0.4, 0.1, 0.4]),
               _window(4, 6, [0.1, 0.2, 0.2, 0.5])]
    video = mean_scores(torch.stack([w.prediction.probs for w in windows]))
    assert video.tolist() == pytest.approx([0.34, 0.32, 0.16, 0.18])   # (0.7+0.6+0.2+0.1+0.1)/5, ...
    segments = segments_of(windows, 6.5, lambda c: NAMES[c])
    # top-1: 0, 0, 1, 1 (tie 0.4/0.4 goes to the first class), 3; centres 1, 2, 3, 4, 5
    assert [(s.start, s.end, s.label) for s in segments] == [(0.0, 2.5, 0), (2.5, 4.5, 1), (4.5, 6.5, 3)]
    assert [s.score for s in segments] == pytest.approx([0.65, 0.45, 0.5])
    with pytest.raises(ValueError):
        mean_scores(torch.empty(0, 4))


def _flicker(classes, flips) -> list[WindowPrediction]:
    """Windows of 2 s every 1 s (centres 1, 2, ...): top-1 ``classes[i]`` at 0.7 (0.1 for the
    others), but ``flips[i] = {class: score}`` where given."""
    windows = []
    for i, c in enumerate(classes):
        probs = [0.1] * K
        probs[c] = 0.7
        for other, score in flips.get(i, {}).items():
            probs[other] = score
        windows.append(_window(i, i + 2, probs))
    return windows


def test_smoothing_removes_flicker_and_is_off_by_default():
    name = lambda c: NAMES[c]  # noqa: E731
    # 2 s of class 0 with a one-window flicker to 1, then 2 with a flicker to 3; duration 13 s
    windows = _flicker([0, 0, 0, 1, 0, 0, 0, 2, 2, 3, 2, 2], {3: {1: 0.5, 0: 0.4}, 9: {3: 0.5, 2: 0.4}})
    raw = [(s.start, s.end, s.label) for s in segments_of(windows, 13.0, name)]
    assert raw == [(0.0, 3.5, 0), (3.5, 4.5, 1), (4.5, 7.5, 0), (7.5, 9.5, 2), (9.5, 10.5, 3), (10.5, 13.0, 2)]
    assert [(s.start, s.end, s.label) for s in segments_of(windows, 13.0, name, smooth="none")] == raw   # off
    clean = [(0.0, 7.5, 0), (7.5, 13.0, 2)]
    for how in ({"smooth": "majority:3"}, {"smooth": "mean:3"}, {"min_segment": 2.5},
                {"smooth": "majority:5", "min_segment": 2.0}):
        segments = segments_of(windows, 13.0, name, **how)
        assert [(s.start, s.end, s.label) for s in segments] == clean, how
    # a segment's score: the mean of its windows' scores for its class, flicker windows included
    assert segments[0].score == pytest.approx((0.7 * 6 + 0.4) / 7)

    # between two classes: majority keeps a three-way tie (the window's own top-1); --min-segment
    # joins the neighbour whose class scores higher on it (2: 0.35 against 0: 0.1)
    windows = _flicker([0, 0, 0, 1, 2, 2, 2], {3: {1: 0.45, 2: 0.35, 0: 0.1}})
    assert [s.label for s in segments_of(windows, 8.0, name, smooth="majority:3")] == [0, 1, 2]
    merged = segments_of(windows, 8.0, name, min_segment=1.5)
    assert [(s.start, s.end, s.label) for s in merged] == [(0.0, 3.5, 0), (3.5, 8.0, 2)]
    assert len(segments_of(windows, 8.0, name, min_segment=100)) == 1   # never fewer than one


def test_smoothing_rejects_bad_values_naming_the_flag(ckpt, capsys):
    for bad in ("median:3", "majority:4", "majority", "mean:0", "mean:x", "mean:-3"):
        with pytest.raises(OptionError, match="^smooth must be none, majority:K or mean:K") as caught:
            parse_smooth(bad)
        assert caught.value.spelled(flag).startswith("--smooth must be")
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(OptionError, match="^min_segment must be a positive number of seconds"):
            segments_of(_flicker([0, 1], {}), 3.0, str, min_segment=bad)
    missing = "missing.mp4"   # the values are checked before the model loads or the video is read
    for args, message in ((["--smooth", "median:3"], "--smooth must be none, majority:K or mean:K"),
                          (["--min-segment", "0"], "--min-segment must be a positive number of seconds")):
        for command in (["predict", missing, "--window", "2", "--stride", "1"],
                        ["timeline", missing, "--window", "2", "--stride", "1", "--out", "x.png"]):
            assert main([*command, "--checkpoint", "nope.ckpt", *args]) == 2
            assert message in capsys.readouterr().err
    assert main(["predict", missing, "--checkpoint", ckpt, "--smooth", "mean:3"]) == 2
    assert "--smooth needs --window and --stride" in capsys.readouterr().err


def test_timeline_reuses_frames_and_equals_predict_per_window(im, long_video, monkeypatch):
    """Each window is predicted as ``afnet predict`` predicts a clip of its frames; frames shared by
    overlapping windows are decoded once; the video's scores are the mean of the windows'."""
    from afnet.data.decoding import PyAVReader

    asked = []
    get_frames = PyAVReader.get_frames
    monkeypatch.setattr(PyAVReader, "get_frames", lambda self, ix: asked.extend(list(ix)) or get_frames(self, ix))
    t = predict_timeline(long_video, im, window=1.0, stride=0.5, top_k=K, chunk=12)
    assert t.ok and t.num_frames == 32 and t.duration == pytest.approx(4.0)
    assert [(w.start, w.end) for w in t.windows] == window_bounds(4.0, 1.0, 0.5)
    assert len(asked) == len(set(asked)) == t.decoded_frames          # no frame decoded twice
    assert set(asked) == {i for w in t.windows for i in w.prediction.frame_indices}
    assert t.decoded_frames == 32 < sum(len(w.prediction.frame_indices) for w in t.windows)
    monkeypatch.undo()

    with afnet.data.decoding.open_reader(long_video) as reader:
        for w in t.windows[::3]:
            frames = reader.get_frames(w.prediction.frame_indices)
            ix = torch.tensor([w.prediction.frame_indices])
            sample = afnet.inference.Sample(ix, frames, afnet.data.dataset.eval_views(frames, im.config), 0.0)
            alone = predict_sample(long_video, sample, im, top_k=K)
            assert alone.top == w.prediction.top and alone.masks == w.prediction.masks

    row = json.loads(to_json_line(t))
    assert tuple(row) == TIMELINE_FIELDS
    by_hand = [sum(s["score"] for w in row["windows"] for s in w["top"] if s["class"] == c) / len(row["windows"])
               for c in range(K)]
    assert [s["class"] for s in row["top"]] == sorted(range(K), key=lambda c: -by_hand[c])
    assert [s["score"] for s in row["top"]] == pytest.approx(sorted(by_hand, reverse=True), abs=1e-5)
    assert row["gflops"] == pytest.approx(sum(w["gflops"] for w in row["windows"]), abs=1e-5 * len(row["windows"]))
    assert row["segments"][0]["start"] == 0 and row["segments"][-1]["end"] == pytest.approx(4.0)


def test_timeline_figure_and_commands(capsys, ckpt, im, long_video, tmp_path):
    t = predict_timeline(long_video, im, window=2.0, stride=1.0, top_k=3)
    drawn = draw_timeline(t, tmp_path / "api.png", classes=2)
    assert drawn["rows"] == ["class scores", "frames kept", "GFLOPs per window"]
    assert drawn["classes"] == [c["name"] for c in t.top[:2]]
    assert (tmp_path / "api.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rc = main(["timeline", long_video, "--checkpoint", ckpt, "--window", "2", "--stride", "1",
               "--out", str(tmp_path / "cli.png"), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0 and json.loads(out)["windows"] and (tmp_path / "cli.png").is_file()

    rc = main(["predict", long_video, str(tmp_path / "missing.mp4"), "--checkpoint", ckpt, "--window", "2",
               "--stride", "1", "--json"])
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 1 and [r["ok"] for r in rows] == [True, False]
    assert all(tuple(r) == TIMELINE_FIELDS for r in rows) and "not found" in rows[1]["error"]
    assert len(rows[0]["windows"]) == 3
    assert rows[0]["smooth"] is None and rows[0]["min_segment"] is None   # off by default

    rc = main(["predict", long_video, "--checkpoint", ckpt, "--window", "1", "--stride", "0.5", "--json",
               "--smooth", "majority:3", "--min-segment", "1.5"])
    row = json.loads(capsys.readouterr().out)
    assert rc == 0 and (row["smooth"], row["min_segment"]) == ("majority:3", 1.5)   # the setting, recorded
    t = predict_timeline(long_video, im, window=1.0, stride=0.5, smooth="majority:3", min_segment=1.5)
    assert [[s["start"], s["end"], s["class"]] for s in row["segments"]] == \
        [[round(s.start, 4), round(s.end, 4), s.label] for s in t.segments]
    assert all(s.end - s.start >= 1.5 for s in t.segments) or len(t.segments) == 1

    rc = main(["timeline", str(tmp_path / "missing.mp4"), "--checkpoint", ckpt, "--window", "2", "--stride", "1",
               "--out", str(tmp_path / "x.png")])
    _, err = capsys.readouterr()
    assert rc == 1 and "missing.mp4" in err and err.count("\n") == 1
    rc = main(["predict", long_video, "--checkpoint", ckpt, "--window", "2"])
    _, err = capsys.readouterr()
    assert rc == 2 and "--window needs --stride too" in err


# ------------------------------------------------------------------ end to end
def test_one_process_run_equals_predict_and_keeps_going_past_a_bad_file(im, corpus, tmp_path):
    root, made = corpus
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = predict_corpus(find_videos([root]), im, tmp_path / "one.jsonl", workers=1, batch_size=3)
    finally:
        torch.set_num_threads(threads)
    rows = _rows(tmp_path / "one.jsonl")
    reference = _single_process(made, im)
    assert (result.written, result.failed) == (len(made), 1)
    assert [r["path"] for r in rows] == made and all(tuple(r) == JSON_FIELDS for r in rows)
    assert all(_same(got, want) for got, want in zip(rows, reference))
    bad = next(r for r in rows if not r["ok"])
    assert bad["path"].endswith("v07_bad.mp4") and "not a video" in bad["error"] and bad["top"] == []


def _batch_predict(ckpt, out, *inputs, extra=()) -> list[str]:
    return [sys.executable, "-m", "afnet.cli", "batch-predict", *map(str, inputs), "--checkpoint", ckpt,
            "--out", str(out), "--threads", "1", "--accelerator", "cpu", *extra]


ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_two_processes_equal_one_and_every_video_appears_once(ckpt, im, corpus, tmp_path):
    root, made = corpus
    listed = tmp_path / "more.txt"
    listed.write_text(f"{made[0]}\n{tmp_path / 'missing.mp4'}\n")     # a repeat and a missing file
    out = tmp_path / "two.jsonl"
    proc = subprocess.run(_batch_predict(ckpt, out, root, extra=("--devices", "2", "--list", listed)),
                          env=ENV, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stderr[-3000:]      # failed videos: exit 1
    assert f"{len(made) + 1} video(s) in {out} (2 failed)" in proc.stderr
    rows = _rows(out)
    assert [r["path"] for r in rows] == made + [str(tmp_path / "missing.mp4")]
    reference = _single_process(made, im)
    assert all(_same(got, want) for got, want in zip(rows, reference))
    assert "not found" in rows[-1]["error"] and shard_files(out) == []


@pytest.mark.slow
def test_sigkill_at_half_way_then_rerun_gives_every_video_once(ckpt, im, tmp_path):
    root = tmp_path / "clips"
    made = [_write(root / f"c{i:02d}.mp4", i % 4, 24, seed=100 + i) for i in range(48)]
    out = tmp_path / "resumed.jsonl"
    cmd = _batch_predict(ckpt, out, root, extra=("--devices", "2", "--batch-size", "1", "--workers", "0"))
    proc = subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def lines() -> int:
        return sum(p.read_bytes().count(b"\n") for p in shard_files(out))

    deadline = time.time() + 180
    while lines() < len(made) // 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)          # the whole job: both ranks
    proc.wait()
    done = lines()
    assert len(made) // 2 <= done < len(made) and not out.exists(), "the run ended before it could be killed"

    rerun = subprocess.run(cmd + ["--devices", "1"], env=ENV, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rows = _rows(out)
    assert [r["path"] for r in rows] == made                    # every video exactly once, in input order
    reference = _single_process(made, im)
    assert all(_same(got, want) for got, want in zip(rows, reference))
