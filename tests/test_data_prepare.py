"""``afnet prepare``: tiny copies of each dataset's official layout, made here, prepared, then
checked by ``afnet check-data --full-decode`` (and, slow, trained on for one step)."""
import json
import os

import numpy as np
import pytest

from afnet.cli import main
from afnet.data.annotations import load_class_names
from afnet.data.prepare import DATASETS, prepare_dataset
from tests.helpers import REPO, write_video

SIZE = (24, 32)   # frames (height, width) of the tiny videos
CLASSES = ["Pushing something from left to right", "Moving something up", "Dropping something"]


def _write_jpegs(folder, num_frames, seed):
    from afnet.data.synthetic import _jpeg_encoder, write_frames

    rng = np.random.default_rng(seed)
    write_frames(folder, rng.integers(0, 256, (num_frames, 32, 32, 3), dtype=np.uint8), _jpeg_encoder(32))


def _broken(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(b"\x1a\x45\xdf\xa3" + b"\x00" * 300)   # a webm/mp4 name, no video inside


def make_20bn_frames(src, prefix, folder):
    """Something-Something V1 / Jester: ``id;name`` CSVs, a labels CSV, JPEG frame folders."""
    (src / f"{prefix}-labels.csv").write_text("\n".join(CLASSES) + "\n")
    (src / f"{prefix}-train.csv").write_text(f"11;{CLASSES[0]}\n12;{CLASSES[1]}\n13;{CLASSES[2]}\n"
                                             f"14;{CLASSES[0]}\n15;Not a class\n")
    (src / f"{prefix}-validation.csv").write_text(f"21;{CLASSES[2]}\n22;{CLASSES[1]}\n")
    for i, vid in enumerate((11, 12, 13, 21, 22)):        # 14: listed, no frames
        _write_jpegs(src / folder / str(vid), 8 + i, seed=i)
    return {"train": 3, "val": 2, "problems": 2}


def make_sthv2(src):
    """Something-Something V2: labels.json, train/validation JSON with templates, webm videos."""
    templates = ["Pushing [something] from left to right", "Moving [something] up", "Dropping [something]"]
    labels = src / "labels"
    labels.mkdir()
    (labels / "labels.json").write_text(json.dumps({name: str(i) for i, name in enumerate(CLASSES)}))
    train = [{"id": str(100 + i), "label": "a thing", "template": templates[i % 3], "placeholders": ["thing"]}
             for i in range(4)]
    val = [{"id": "200", "label": "a cup", "template": templates[1], "placeholders": ["cup"]}]
    (labels / "train.json").write_text(json.dumps(train))
    (labels / "validation.json").write_text(json.dumps(val))
    videos = src / "20bn-something-something-v2"
    videos.mkdir()
    for item in train[:3] + val:
        write_video(videos / f"{item['id']}.webm", 10, codec="libvpx", size=SIZE, rate=12)
    _broken(videos / "103.webm")                          # undecodable
    return {"train": 3, "val": 1, "problems": 1}


def make_kinetics(src, classes=("abseiling", "air drumming", "zumba")):
    """Kinetics: train.csv / validate.csv, clips under <split>/<label>/ as the downloaders save them."""
    header = "label,youtube_id,time_start,time_end,split\n"
    rows = {"train": [(classes[0], "aaaaaaaaaaa", 10), (classes[1], "bbbbbbbbbbb", 0), (classes[2], "ccccccccccc", 5),
                      (classes[1], "missingmiss", 3)],
            "val": [(classes[0], "ddddddddddd", 7), (classes[2], "eeeeeeeeeee", 1)]}
    for split, name in (("train", "train.csv"), ("val", "validate.csv")):
        (src / name).write_text(header + "".join(f'"{label}",{ytid},{s},{s + 10},{split}\n'
                                                 for label, ytid, s in rows[split]))
        for label, ytid, s in rows[split]:
            if ytid != "missingmiss":
                folder = src / split / label.replace(" ", "_")
                folder.mkdir(parents=True, exist_ok=True)
                write_video(folder / f"{ytid}_{s:06d}_{s + 10:06d}.mp4", 9, size=SIZE, rate=12)
    return {"train": 3, "val": 2, "problems": 1}


def make_minikinetics(src):
    """Mini-Kinetics: the Kinetics layout; the 2 kept classes in a labels file, a YouTube id list."""
    make_kinetics(src)
    (src / "mini_classes.txt").write_text("zumba\nabseiling\n")            # index order: zumba 0, abseiling 1
    (src / "ids.txt").write_text("aaaaaaaaaaa\nccccccccccc\neeeeeeeeeee\n")   # ddddddddddd left out
    return {"train": 2, "val": 1, "problems": 0}


def make_activitynet(src):
    """ActivityNet v1.3: the JSON database (subset, annotated segments), v_<id>.mp4 videos."""
    def entry(subset, *labels):
        return {"subset": subset, "duration": 1.0, "url": "https://www.youtube.com/watch?v=x",
                "annotations": [{"segment": [0.1 * i, 0.1 * i + 0.3], "label": lab} for i, lab in enumerate(labels)]}
    database = {"vid0000000a": entry("training", "Tango"), "vid0000000b": entry("training", "Archery", "Tango"),
                "vid0000000c": entry("validation", "Surfing"), "vid0000000d": entry("testing"),
                "vid0000000e": entry("training", "Archery")}          # e: not downloaded
    (src / "activity_net.v1-3.min.json").write_text(json.dumps({"version": "VERSION 1.3", "database": database}))
    (src / "videos").mkdir()
    for vid in ("vid0000000a", "vid0000000b", "vid0000000c"):
        write_video(src / "videos" / f"v_{vid}.mp4", 12, size=SIZE, rate=12)
    return {"train": 2, "val": 1, "problems": 1}


def make_official(dataset, src):
    src.mkdir(parents=True, exist_ok=True)
    if dataset == "sthv1":
        return make_20bn_frames(src, "something-something-v1", "20bn-something-something-v1")
    if dataset == "jester":
        return make_20bn_frames(src, "jester-v1", "20bn-jester-v1")
    return {"sthv2": make_sthv2, "kinetics": make_kinetics, "minikinetics": make_minikinetics,
            "activitynet": make_activitynet}[dataset](src)


def prepare_args(dataset, src):
    if dataset != "minikinetics":
        return []
    return ["--labels", str(src / "mini_classes.txt"), "--ids", str(src / "ids.txt")]


@pytest.mark.parametrize("dataset", DATASETS)
def test_prepare_writes_what_check_data_passes(dataset, tmp_path, capsys, monkeypatch):
    src, out = tmp_path / "download", tmp_path / "prepared"
    expected = make_official(dataset, src)
    code = main(["prepare", dataset, "--src", str(src), "--out", str(out), "--workers", "1",
                 *prepare_args(dataset, src)])
    captured = capsys.readouterr()
    assert code == (1 if expected["problems"] else 0), captured.err
    assert f"train: {out / 'train_videofolder.txt'}" in captured.out
    assert (f"{expected['problems']} skipped" if expected["problems"] else "none skipped") in captured.err
    listed = {split: (out / f"{split}_videofolder.txt").read_text().splitlines() for split in ("train", "val")}
    assert {split: len(lines) for split, lines in listed.items()} == {s: expected[s] for s in ("train", "val")}
    assert all(line.startswith("frames/") for lines in listed.values() for line in lines)
    # the list files are named relative to --root, as a config names them
    monkeypatch.chdir(tmp_path)
    code = main(["check-data", "train_videofolder.txt", "val_videofolder.txt", "--root", str(out),
                 "--preset", dataset, "--labels", "category.txt", "--full-decode"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"no problems found in {expected['train'] + expected['val']} samples" in err


def test_prepared_labels_follow_the_official_class_order(tmp_path):
    """SthV1/Jester: classes sorted by name (TRN/TSM's category.txt); SthV2: labels.json's index;
    Mini-Kinetics: the --labels order; ActivityNet: sorted, every annotated class of a video."""
    make_official("sthv1", tmp_path / "v1")
    report = prepare_dataset("sthv1", tmp_path / "v1", tmp_path / "v1_out")
    assert load_class_names(report.class_file) == sorted(CLASSES)
    lines = (tmp_path / "v1_out" / "train_videofolder.txt").read_text().splitlines()
    assert lines[0] == f"frames/11 8 {sorted(CLASSES).index(CLASSES[0])}"
    assert os.path.islink(tmp_path / "v1_out" / "frames")                 # the shipped frames, not copied
    reasons = sorted(p.reason for p in report.problems)
    assert "class 'Not a class' is not in something-something-v1-labels.csv" in reasons[0]
    assert "frame folder not found" in reasons[1]
    assert [(os.path.basename(p.list_file), p.line) for p in report.problems] == [
        ("something-something-v1-train.csv", 4), ("something-something-v1-train.csv", 5)]

    make_official("minikinetics", tmp_path / "k")
    report = prepare_dataset("minikinetics", tmp_path / "k", tmp_path / "k_out",
                             labels=tmp_path / "k" / "mini_classes.txt", ids=[tmp_path / "k" / "ids.txt"])
    assert load_class_names(report.class_file) == ["zumba", "abseiling"] and report.excluded == 3
    assert (tmp_path / "k_out" / "train_videofolder.txt").read_text().splitlines() == [
        "frames/aaaaaaaaaaa_000010_000020 9 1", "frames/ccccccccccc_000005_000015 9 0"]
    with pytest.raises(ValueError, match="minikinetics needs labels"):
        prepare_dataset("minikinetics", tmp_path / "k", tmp_path / "k_out")

    make_official("activitynet", tmp_path / "a")
    report = prepare_dataset("activitynet", tmp_path / "a", tmp_path / "a_out", fps=6)
    assert load_class_names(report.class_file) == ["Archery", "Surfing", "Tango"]
    train = (tmp_path / "a_out" / "train_videofolder.txt").read_text().splitlines()
    assert train == ["frames/v_vid0000000a 6 2", "frames/v_vid0000000b 6 0,2"]    # 12 frames at 12 fps -> 6
    assert [p.reason for p in report.problems] == [
        f"video 'vid0000000e': not found (no v_vid0000000e.* nor vid0000000e.* under {tmp_path / 'a'})"]


def test_prepare_is_parallel_resumable_and_names_bad_sources(tmp_path):
    src, out = tmp_path / "download", tmp_path / "prepared"
    make_official("sthv2", src)
    (src / "more").mkdir()   # a video kept elsewhere under --src is found by its id
    os.rename(src / "20bn-something-something-v2" / "102.webm", src / "more" / "102.webm")
    report = prepare_dataset("sthv2", src, out, workers=2, short_side=12)
    assert (report.extracted, report.reused, report.listed) == (4, 0, {"train": 3, "val": 1})
    [problem] = report.problems
    assert problem.path.endswith("103.webm") and problem.line == 4 and "cannot extract frames" in problem.reason
    done = out / "frames" / "100"
    assert sorted(os.listdir(done))[:2] == ["000001.jpg", "000002.jpg"] and len(os.listdir(done)) == 10
    from afnet.data.decoding import FrameFolderReader
    assert tuple(FrameFolderReader(str(done), "{:06d}.jpg", 10).get_frames([0]).shape[2:]) == (12, 16)
    stamp = os.stat(done / "000001.jpg").st_mtime_ns
    # a run stopped while writing 101: its folder is still .partial; the next run redoes it, keeps the rest
    os.rename(out / "frames" / "101", out / "frames" / "101.partial")
    os.remove(out / "frames" / "101.partial" / "000010.jpg")
    report = prepare_dataset("sthv2", src, out, workers=1, short_side=12)
    assert (report.extracted, report.reused) == (1, 3)
    assert os.stat(done / "000001.jpg").st_mtime_ns == stamp
    assert not (out / "frames" / "101.partial").exists() and len(os.listdir(out / "frames" / "101")) == 10


@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASETS)
def test_train_takes_a_step_on_prepared_data(dataset, tmp_path):
    src, out = tmp_path / "download", tmp_path / "prepared"
    make_official(dataset, src)
    report = prepare_dataset(dataset, src, out, labels=src / "mini_classes.txt" if dataset == "minikinetics" else None,
                             ids=[src / "ids.txt"] if dataset == "minikinetics" else None)
    overrides = {"data.root": out, "run_dir": tmp_path / "run", "model.name": "af_resnet_small",
                 "data.num_classes": report.num_classes, "data.num_frames": 4, "data.input_size": 28,
                 "data.scale_size": 32, "data.batch_size": 2, "data.val_batch_size": 1, "data.num_workers": 0,
                 "optim.epochs": 1, "trainer.limit_train_batches": 1, "trainer.limit_val_batches": 1,
                 "trainer.accelerator": "cpu", "trainer.devices": 1, "trainer.progress_bar": False,
                 "eval.plot": False}
    code = main(["train", "--config", str(REPO / "configs" / dataset / "dataset.yaml"),
                 *[f"{k}={v}" for k, v in overrides.items()]])
    assert code == 0
    from afnet.checkpoint import read_checkpoint
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["step"] == 1


def test_prepare_into_the_download_folder(tmp_path):
    """--out may be --src (as MMAction2 keeps rawframes beside the videos): the frames written are
    not searched for videos, and a second run reuses every folder."""
    src = tmp_path / "kinetics400"
    make_official("kinetics", src)
    first = prepare_dataset("kinetics", src, src)
    again = prepare_dataset("kinetics", src, src)
    assert (first.extracted, again.extracted, again.reused) == (5, 0, 5)
    assert again.listed == first.listed == {"train": 3, "val": 2} and len(again.problems) == 1
    assert (src / "frames" / "aaaaaaaaaaa_000010_000020" / "img_00009.jpg").is_file()
