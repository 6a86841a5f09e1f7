import argparse
import json
import os
import shutil

from afnet.data.check import check_dataset
from afnet.data.cli import register


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="afnet")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def make_broken_dataset(tmp_path, data_synthetic):
    src = data_synthetic.root
    shutil.copytree(src / "frames" / "train" / "video_00000", tmp_path / "ok clip")
    shutil.copytree(src / "frames" / "train" / "video_00001", tmp_path / "short")
    os.remove(tmp_path / "short" / "00012.jpg")
    (tmp_path / "frames.txt").write_text(
        "ok clip 12 0\n"          # 1 fine
        "short 12 1\n"            # 2 fewer frames on disk
        "nowhere 12 1\n"          # 3 missing folder
        "ok 12\n"                 # 4 malformed
        "ok clip 12 x\n"          # 5 non-numeric label
        "ok clip 12 8\n")         # 6 out of range (8 classes)
    shutil.copy(src / "videos" / "train" / "video_00000.mp4", tmp_path / "good.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 1000)
    (tmp_path / "videos.txt").write_text("good.mp4 0\nbad.mp4 1\ngone.mp4 2\n")


def test_check_dataset_reports_every_problem(tmp_path, data_synthetic):
    make_broken_dataset(tmp_path, data_synthetic)
    result = check_dataset("synthetic", tmp_path, [tmp_path / "frames.txt", tmp_path / "videos.txt"])
    assert (result.ok, result.num_samples, result.num_files) == (False, 9, 2)
    assert (result.num_classes, result.classes_from) == (8, "preset synthetic")
    problems = result.problems
    where = [(os.path.basename(p.list_file), p.line) for p in problems]
    assert where == [("frames.txt", 2), ("frames.txt", 3), ("frames.txt", 4), ("frames.txt", 5),
                     ("frames.txt", 6), ("videos.txt", 2), ("videos.txt", 3)]
    reasons = [p.reason for p in problems]
    assert "11 of 12 listed frames on disk" in reasons[0] and "00012.jpg" in reasons[0]
    assert "frame folder not found" in reasons[1]
    assert "malformed line" in reasons[2]
    assert "not an integer" in reasons[3]
    assert "outside the class range [0, 7]" in reasons[4]
    assert "cannot decode video" in reasons[5] and "bad.mp4" in reasons[5]
    assert "video not found" in reasons[6]


def test_check_data_cli_json_and_exit_code(tmp_path, data_synthetic, capsys):
    make_broken_dataset(tmp_path, data_synthetic)
    code = run_cli(["check-data", str(tmp_path / "frames.txt"), str(tmp_path / "videos.txt"),
                    "--root", str(tmp_path), "--preset", "synthetic", "--json"])
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["num_problems"] == 7
    assert {"list_file", "line", "path", "reason"} <= set(report["problems"][0])
    root = data_synthetic.root
    code = run_cli(["check-data", str(root / "train_frames.txt"), str(root / "val_videos.txt"),
                    "--root", str(root), "--preset", "synthetic", "--full-decode",
                    "--classes", str(root / "category.txt")])
    assert code == 0
    err = capsys.readouterr().err
    assert "warning: --classes is deprecated; use --labels" in err
    assert "no problems found in 24 samples of 2 annotation files; labels checked against 8 classes" in err
    code = run_cli(["check-data", str(root / "train_frames.txt"), "--root", str(root),
                    "--preset", "synthetic", "--set", "num_framez=3"])
    assert code == 2 and "unknown dataset option(s) 'num_framez'" in capsys.readouterr().err


def test_unreadable_frame_images_are_found_by_line(tmp_path, data_synthetic):
    """Default: the first and last image of each folder; --full-decode: every listed image."""
    src = data_synthetic.root / "frames" / "train"
    for name in ("good", "bad middle", "bad last", "two bad", "odd size"):
        shutil.copytree(src / "video_00000", tmp_path / name)
    (tmp_path / "bad middle" / "00006.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "bad last" / "00012.jpg").write_bytes(b"\xff\xd8\xff truncated")
    (tmp_path / "two bad" / "00003.jpg").write_bytes(b"")
    (tmp_path / "two bad" / "00009.jpg").write_bytes(b"GIF89a")
    shutil.copy(data_synthetic.root / "frames" / "train" / "video_00001" / "00001.jpg",
                tmp_path / "odd size" / "00004.jpg")  # same size: fine
    (tmp_path / "frames.txt").write_text(
        "good 12 0\nbad middle 12 1\nbad last 12 2\ntwo bad 12 3\nodd size 12 4\n"
        "good 10 5\n")  # 6: fewer listed than on disk is fine; frame 10 is then the last
    problems = check_dataset("synthetic", tmp_path, tmp_path / "frames.txt").problems
    assert [(p.line, p.path) for p in problems] == [(3, str(tmp_path / "bad last"))]
    assert "unreadable frame image" in problems[0].reason and "00012.jpg" in problems[0].reason
    problems = check_dataset("synthetic", tmp_path, tmp_path / "frames.txt", full_decode=True).problems
    assert [p.line for p in problems] == [2, 3, 4]
    assert "bad middle/00006.jpg: cannot decode image" in problems[0].reason
    assert problems[2].reason.startswith("2 of 12 frame images checked are unreadable; first: ")
    assert "two bad/00003.jpg: cannot decode image (empty file)" in problems[2].reason
    code = run_cli(["check-data", str(tmp_path / "frames.txt"), "--root", str(tmp_path),
                    "--preset", "synthetic", "--full-decode", "--json"])
    assert code == 1


def test_full_decode_of_a_video_with_a_bad_frame(tmp_path, data_video_writer):
    """A video whose middle cannot be decoded: found by --full-decode only."""
    path = data_video_writer(tmp_path / "v.mp4", 200, gop=10, size=(32, 32))
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2: len(data) // 2 + 400] = bytes(range(200)) * 2  # corrupt the middle
    (tmp_path / "hurt.mp4").write_bytes(bytes(data))
    (tmp_path / "videos.txt").write_text("v.mp4 0\nhurt.mp4 1\n")
    problems = check_dataset("synthetic", tmp_path, tmp_path / "videos.txt", full_decode=True).problems
    assert [p.line for p in problems] == [2]
    assert "hurt.mp4: decoding failed near frame" in problems[0].reason
    assert check_dataset("synthetic", tmp_path, tmp_path / "videos.txt").ok  # first, last: fine


def test_labels_are_checked_against_the_class_file_and_lists_found_under_root(tmp_path, data_synthetic,
                                                                             capsys, monkeypatch):
    """A label outside --labels is named by file:line; relative list files are taken under --root
    (as a config's data.train_list); without --preset, nothing is assumed about the classes."""
    src = data_synthetic.root / "frames" / "train"
    shutil.copytree(src / "video_00000", tmp_path / "a")
    (tmp_path / "classes.txt").write_text("left\nright\nup\n")
    (tmp_path / "list.txt").write_text("a 12 0\na 12 2\na 12 3\n")
    monkeypatch.chdir(data_synthetic.root)     # elsewhere: list.txt is found under --root only
    code = run_cli(["check-data", "list.txt", "--root", str(tmp_path), "--labels", "classes.txt"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.splitlines() == [f"{tmp_path / 'list.txt'}:3: label 3 outside the class range [0, 2] "
                                         f"(3 classes in {tmp_path / 'classes.txt'})"]
    assert "1 problem(s) found in 3 samples of 1 annotation file" in captured.err
    # no preset, no class file, no count: labels are not checked against sthv1's 174 classes, and it says so
    code = run_cli(["check-data", "list.txt", "--root", str(tmp_path)])
    assert code == 0
    assert ("no problems found in 3 samples of 1 annotation file; label range not checked"
            in capsys.readouterr().err)
    code = run_cli(["check-data", "list.txt", "--root", str(tmp_path), "--num-classes", "3", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and (report["num_samples"], report["num_classes"], report["num_problems"]) == (3, 3, 1)
    result = check_dataset(None, tmp_path, "list.txt", num_classes=4)
    assert result.ok and result.classes_from == "num_classes"
    [problem] = check_dataset(None, tmp_path, "list.txt", num_classes=4, class_file="classes.txt").problems
    assert str(problem) == f"{tmp_path / 'classes.txt'}: 3 class names, but num_classes=4"
