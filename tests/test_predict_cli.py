"""``afnet predict`` / ``afnet explain`` end to end on small videos and a small model."""
from __future__ import annotations

import json
import os
import struct
import time

import av
import pytest
import torch

import afnet
from afnet.cli import main
from afnet.inference import (
    JSON_FIELDS,
    draw_explanation,
    explain_video,
    find_videos,
    load_model_for_inference,
    predict_videos,
    read_sample,
)
from tests.helpers import CONTAINERS, randomize, write_container, write_video

T, K = 8, 4


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A synthetic dataset: its category.txt (K names) and frame folders."""
    out = tmp_path_factory.mktemp("synth")
    return afnet.data.make_synthetic(out, num_train=1, num_val=1, num_classes=K, num_frames=10,
                                     size=32, seed=1, videos=False)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, synth):
    """A project checkpoint of af_resnet_small (T=8, K=4) whose navigation skips some frames;
    its config asks for the synthetic preset at 48 pixels."""
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    model = randomize(afnet.create_model("af_resnet_small", num_classes=K, num_frames=T), seed=1)
    names = afnet.data.load_class_names(synth.category_file)
    afnet.save_checkpoint(path, model, class_names=names,
                          config={"data": {"preset": "synthetic", "input_size": 48}})
    return str(path)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Videos of several codecs and containers; one in a subfolder; a non-video file beside."""
    root = tmp_path_factory.mktemp("videos")
    os.makedirs(root / "sub")
    made = [write_video(root / "a_h264.mp4", 20, gop=6),
            write_video(root / "b_mpeg4.avi", 14, codec="mpeg4"),
            write_video(root / "sub" / "c_h264.mkv", 12)]
    if "libvpx-vp9" in av.codecs_available:
        made.append(write_video(root / "d_vp9.webm", 10, codec="libvpx-vp9"))
    (root / "notes.txt").write_text("not a video, and not a video extension")
    return root, sorted(made)


@pytest.fixture(scope="module")
def im(ckpt):
    return load_model_for_inference(ckpt)


def _run(capsys, *argv):
    rc = main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_predict_codecs_and_containers(capsys, ckpt, videos):
    root, made = videos
    rc, out, err = _run(capsys, root, "--checkpoint", ckpt, "--json", "--top-k", "2")
    rows = _json_lines(out)
    assert rc == 0, err
    assert [r["path"] for r in rows] == made  # recursive, sorted, .txt ignored
    assert all(r["ok"] and len(r["top"]) == 2 for r in rows)
    assert rows[0]["frame_indices"] != rows[1]["frame_indices"]  # sampled per video length


def test_json_schema(capsys, ckpt, videos, synth):
    _, made = videos
    rc, out, _ = _run(capsys, made[0], "--checkpoint", ckpt, "--json", "--top-k", "10")
    assert rc == 0
    (row,) = _json_lines(out)
    assert tuple(row) == JSON_FIELDS
    assert row["ok"] is True and row["error"] is None and row["views"] == 1
    assert row["execution"] == "sparse" and row["precision"] == "fp32"  # auto on a CPU; fp32 by default
    names = afnet.data.load_class_names(synth.category_file)
    assert len(row["top"]) == K  # top-k capped at the number of classes
    assert [set(t) for t in row["top"]] == [{"class", "name", "score"}] * K
    assert all(t["name"] == names[t["class"]] for t in row["top"])
    scores = [t["score"] for t in row["top"]]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=1e-4)
    assert row["points"] == ["layer1.0", "layer2.0", "layer3.0"]
    assert len(row["masks"]) == 3 and all(len(m) == T and set(m) <= {0, 1} for m in row["masks"])
    assert 0 in sum(row["masks"], [])  # randomized navigation skips some frames
    assert row["kept_ratio"] == [pytest.approx(sum(m) / T) for m in row["masks"]]
    assert len(row["frame_indices"]) == T and all(0 <= i < 20 for i in row["frame_indices"])
    assert row["gflops"] > 0 and row["latency_ms"] > 0 and row["decode_ms"] > 0


def test_gflops_are_those_of_the_executed_video(im, videos):
    """GFLOPs reported per video = count_flops on that video's clip (sparse: depends on masks)."""
    _, made = videos
    (result,) = predict_videos([made[0]], im)
    clip = read_sample(made[0], im).clip
    assert result.gflops == pytest.approx(afnet.count_flops(im.model, clip), rel=1e-6)
    dense = afnet.create_model("af_resnet_small", num_classes=K, num_frames=T, selection="all").eval()
    assert result.gflops < afnet.count_flops(dense, clip)


def test_text_output(capsys, ckpt, videos):
    _, made = videos
    rc, out, err = _run(capsys, made[0], "--checkpoint", ckpt, "--top-k", "3")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == made[0] and lines[1].lstrip().startswith("1.")
    point_rows = [line.split() for line in lines if line.strip().startswith("layer")]
    assert len(point_rows) == 3
    assert all(len(r[1]) == T and set(r[1]) <= {"#", "."} for r in point_rows)
    assert "GFLOPs" in lines[-1] and "ms model call" in lines[-1]
    assert "af_resnet_small" in err and "48x48" in err


def test_bad_files_are_reported_and_the_others_processed(capsys, ckpt, videos, tmp_path):
    _, made = videos
    not_video = tmp_path / "text.mp4"
    not_video.write_text("hello")
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    long = write_video(tmp_path / "long.mp4", 40)
    truncated = tmp_path / "truncated.mp4"  # interrupted download
    truncated.write_bytes(open(long, "rb").read()[: os.path.getsize(long) // 2])
    bad = [str(not_video), str(empty), str(truncated), str(tmp_path / "missing.mp4")]
    rc, out, err = _run(capsys, made[0], *bad, made[1], "--checkpoint", ckpt, "--json")
    rows = _json_lines(out)
    assert rc == 1
    assert [r["path"] for r in rows] == [made[0], *bad, made[1]]
    assert [r["ok"] for r in rows] == [True, False, False, False, False, True]
    for r in rows[1:5]:
        assert r["error"] and r["top"] == [] and r["gflops"] is None
        assert f"{r['path']}: {r['error']}" in err
    assert "not found" in rows[4]["error"]
    assert "4 of 6 video(s) failed" in err
    rc, out, _ = _run(capsys, made[0], not_video, "--checkpoint", ckpt)
    assert rc == 1 and f"{not_video}: FAILED: " in out


def test_predict_a_folder_of_every_container(capsys, ckpt, tmp_path):
    """ASF, FLV, SWF, MPEG-PS/TS, raw streams, GIF, Ogg, RealMedia, 3GP, ...: every file is
    found, predicted, and quickly; exit 0."""
    made = []
    for name, codec, *_ in CONTAINERS:
        if codec in av.codecs_available:
            try:
                made.append(write_container(tmp_path, name, 40, gop=8))
            except pytest.skip.Exception:
                pass
    assert len(made) >= 19
    rc, out, err = _run(capsys, tmp_path, "--checkpoint", ckpt, "--json", "--no-flops")
    rows = _json_lines(out)
    assert rc == 0, err
    assert [r["path"] for r in rows] == sorted(made)
    assert all(r["ok"] and r["decode_ms"] < 3000 for r in rows), [r["error"] for r in rows]


def test_decode_timeout_fails_the_slow_video_only(capsys, ckpt, videos, monkeypatch):
    from afnet.data.decoding import PyAVReader

    _, made = videos
    opened = PyAVReader._open

    def slow_open(self):
        if self.path == made[0]:
            time.sleep(0.3)
            self._deadline.check()
        opened(self)

    monkeypatch.setattr(PyAVReader, "_open", slow_open)
    rc, out, err = _run(capsys, *made[:2], "--checkpoint", ckpt, "--json", "--no-flops",
                        "--decode-timeout", "0.1")
    rows = _json_lines(out)
    assert rc == 1 and [r["ok"] for r in rows] == [False, True]
    assert "took longer than the decode time limit of 0.1 s" in rows[0]["error"]
    assert f"{made[0]}: " in err and "1 of 2 video(s) failed" in err
    rc, _, err = _run(capsys, made[1], "--checkpoint", ckpt, "--decode-timeout", "-3")
    assert rc == 2 and "--decode-timeout=-3.0: expected a number of seconds >= 0" in err


def test_frame_folder_is_one_video(capsys, ckpt, synth):
    folder = next(root for root, _, files in os.walk(synth.root) if "00001.jpg" in files)
    assert find_videos([folder], "{:05d}.jpg") == [folder]
    rc, out, _ = _run(capsys, folder, "--checkpoint", ckpt, "--json")
    (row,) = _json_lines(out)
    assert rc == 0 and row["ok"] and row["path"] == folder


def test_progress_bar_goes_to_stderr_only(capsys, ckpt, videos):
    _, made = videos
    rc, out, err = _run(capsys, *made[:2], "--checkpoint", ckpt, "--json", "--progress", "--no-flops")
    assert rc == 0
    rows = _json_lines(out)  # every stdout line is JSON
    assert len(rows) == 2 and all(r["gflops"] is None for r in rows)
    assert "predict" in err and "2/2" in err


def test_user_errors_are_one_line(capsys, ckpt, videos, tmp_path, synth):
    _, made = videos
    rc, out, err = _run(capsys, made[0], "--checkpoint", tmp_path / "nope.pt")
    assert rc == 2 and out == ""
    assert err.strip().count("\n") == 0 and "checkpoint not found" in err and "Traceback" not in err

    authors = tmp_path / "authors.pth.tar"  # no architecture stored
    model = afnet.create_model("af_resnet_small", num_classes=K, num_frames=T)
    torch.save({"state_dict": {f"module.base_model.{k}": v for k, v in model.state_dict().items()}}, authors)
    rc, _, err = _run(capsys, made[0], "--checkpoint", authors, "--model", "af_resnet_small")
    assert rc == 2 and err.count("\n") == 1
    assert "--frames, --num-classes, --labels" in err

    rc, _, err = _run(capsys, made[0], "--checkpoint", ckpt, "--frames", "16")
    assert rc == 2 and "--frames 16 contradicts" in err

    with pytest.raises(SystemExit) as exc:  # argparse: unknown model name
        main(["predict", made[0], "--checkpoint", ckpt, "--model", "af_nope"])
    assert exc.value.code == 2


def test_authors_checkpoint_with_labels(capsys, videos, tmp_path, synth):
    _, made = videos
    authors = tmp_path / "authors.pth.tar"
    model = randomize(afnet.create_model("af_resnet_small", num_classes=K, num_frames=T), seed=2)
    torch.save({"state_dict": {f"module.base_model.{k}": v for k, v in model.state_dict().items()
                               if not k.startswith("fc.")}
                | {f"module.new_fc.{k[3:]}": v for k, v in model.state_dict().items() if k.startswith("fc.")}},
               authors)
    rc, out, err = _run(capsys, made[0], "--checkpoint", authors, "--model", "af_resnet_small",
                        "--frames", T, "--num-classes", K, "--labels", synth.category_file,
                        "--preset", "synthetic", "--size", 32, "--json")
    assert rc == 0, err
    (row,) = _json_lines(out)
    names = afnet.data.load_class_names(synth.category_file)
    assert row["top"][0]["name"] == names[row["top"][0]["class"]]


def test_config_defaults_and_size_override(ckpt):
    im = load_model_for_inference(ckpt)
    assert (im.config.name, im.config.input_size, im.config.num_frames) == ("synthetic", 48, T)
    im = load_model_for_inference(ckpt, preset="kinetics", size=64)
    assert (im.config.name, im.config.input_size, im.config.scale_size) == ("kinetics", 64, 73)


def _png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_explain_draws_the_grid(capsys, ckpt, im, videos, tmp_path):
    _, made = videos
    explanation = explain_video(made[0], im)
    assert explanation.frames.shape[0] == T and explanation.frames.dtype.name == "uint8"
    layout = draw_explanation(explanation, tmp_path / "api.png")
    assert (layout.rows, layout.cols) == (1 + 3, T)
    assert layout.row_labels == ["frames", "layer1.0", "layer2.0", "layer3.0"]
    assert layout.col_labels == [f"#{i}" for i in explanation.prediction.frame_indices]
    assert explanation.prediction.top[0][1] in layout.title
    assert _png_size(layout.path) == layout.size_px

    out = tmp_path / "cli.png"
    rc = main(["explain", made[0], "--checkpoint", ckpt, "--out", str(out)])
    stdout, _ = capsys.readouterr()
    assert rc == 0 and _png_size(out) == layout.size_px
    assert "3 navigation point(s) x 8 frames" in stdout

    rc = main(["explain", str(tmp_path / "missing.mp4"), "--checkpoint", ckpt, "--out", str(out)])
    _, err = capsys.readouterr()
    assert rc == 1 and "missing.mp4" in err and err.count("\n") == 1


def test_the_runs_own_resize_is_kept(tmp_path):
    """A run trained with data.input_size=32 and data.scale_size=32 (no resize margin) is read
    at inference exactly as its validation read it: resized to 32, not to 32 * 64/56 = 37
    (the synthetic preset's ratio), which would crop and blur its frames."""
    model = afnet.create_model("af_resnet_small", num_classes=8, num_frames=8)
    path = tmp_path / "m.pt"
    afnet.save_checkpoint(path, model, config={"data": {"preset": "synthetic", "input_size": 32, "scale_size": 32}})
    im = load_model_for_inference(path)
    assert (im.config.input_size, im.config.scale_size) == (32, 32)
    im = load_model_for_inference(path, size=48)   # --size changes the crop: the preset's ratio again
    assert (im.config.input_size, im.config.scale_size) == (48, round(48 * 64 / 56))


def test_ratio_sets_a_fixed_frame_budget(capsys, ckpt, videos, tmp_path):
    """--ratio R: the learned navigation keeps exactly round(R * T) frames per video and point,
    those it ranks highest (static-k), whatever its threshold would keep; refused, with the
    reason, where it could have no effect or lies outside (0, 1]."""
    _, made = videos
    rc, out, _ = _run(capsys, made[0], "--checkpoint", ckpt, "--json")
    free = _json_lines(out)[0]
    assert rc == 0 and sorted({sum(m) for m in free["masks"]}) != [2]   # its threshold keeps other counts
    for ratio, kept in (("0.25", 2), ("0.5", 4)):
        rc, out, _ = _run(capsys, made[0], "--checkpoint", ckpt, "--json", "--ratio", ratio)
        line = _json_lines(out)[0]
        assert rc == 0 and [sum(m) for m in line["masks"]] == [kept] * len(free["masks"])
        assert line["gflops"] < free["gflops"] or kept > min(sum(m) for m in free["masks"])
    rc, _, err = _run(capsys, made[0], "--checkpoint", ckpt, "--ratio", "1.5")
    assert rc == 2 and "ratio must be in (0, 1], got 1.5" in err
    tsn = tmp_path / "tsn.pt"
    afnet.save_checkpoint(tsn, afnet.create_model("tsn_resnet_small", num_classes=K, num_frames=T))
    rc, _, err = _run(capsys, made[0], "--checkpoint", tsn, "--ratio", "0.5")
    assert rc == 2 and "ratio=0.5 has no effect: tsn_resnet_small computes every frame (no focal branch)" in err
    # the rule lives in configure: a ratio given with selection all has no effect; switching to all drops it
    model = afnet.create_model("af_resnet_small", num_classes=K, num_frames=T)
    with pytest.raises(ValueError, match="ratio=0.5 has no effect: af_resnet_small computes every frame "
                                         "\\(selection='all'\\)"):
        model.configure(selection="all", ratio=0.5)
    assert model.configure(ratio=0.5).configure(selection="all").ratio is None


@pytest.mark.parametrize("native", [False, True])
def test_precision_auto_takes_bf16_only_where_native_and_says_so(capsys, monkeypatch, ckpt, videos, native):
    """--precision auto: bf16 on a CPU with native bf16, fp32 elsewhere (an AVX2-only CPU runs
    bf16 about 7x slower); the JSON says which ran."""
    from afnet import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"} if native else {"avx2"}))
    _, made = videos
    rc, out, _ = _run(capsys, made[0], "--checkpoint", ckpt, "--json", "--precision", "auto")
    assert rc == 0
    (row,) = _json_lines(out)
    assert row["ok"] and row["precision"] == ("bf16" if native else "fp32")


def test_masked_execution_is_reported(ckpt, videos):
    from afnet.inference.model import load_model_for_inference
    from afnet.inference.predict import predict_video
    from afnet.inference.report import prediction_to_json

    _, made = videos
    im = load_model_for_inference(ckpt)
    im.model.configure(execution="masked")
    row = prediction_to_json(predict_video(made[0], im))
    assert row["execution"] == "masked" and row["precision"] == "fp32"
