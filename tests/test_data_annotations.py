import json

import pytest

from afnet.data.annotations import (
    AnnotationError,
    load_annotations,
    load_class_names,
    parse_annotations,
    strip_template,
)
from afnet.data.presets import PRESETS, get_preset


def write(path, text):
    path.write_text(text)
    return path


def test_frame_list_paths_with_spaces(tmp_path):
    lst = write(tmp_path / "train.txt",
                "clip one 12 3\n\n# comment\nfolder/with two spaces 30 0\nplain 8 173\n")
    recs = load_annotations(lst, tmp_path, kind="frames", num_classes=174)
    assert [r.path for r in recs] == [str(tmp_path / "clip one"),
                                      str(tmp_path / "folder/with two spaces"),
                                      str(tmp_path / "plain")]
    assert [r.num_frames for r in recs] == [12, 30, 8]
    assert [r.labels for r in recs] == [(3,), (0,), (173,)]
    assert [r.line for r in recs] == [1, 4, 5]


def test_video_list_and_auto_kind(tmp_path):
    lst = write(tmp_path / "val.txt", "a b.mp4 4\nc.webm 0\n")
    recs = load_annotations(lst, tmp_path, num_classes=5)
    assert recs[0].path == str(tmp_path / "a b.mp4") and recs[0].num_frames is None
    assert recs[1].labels == (0,)
    (tmp_path / "f").mkdir()
    lst2 = write(tmp_path / "frames.txt", "f 10 1\n")
    assert load_annotations(lst2, tmp_path, num_classes=5)[0].num_frames == 10


def test_multi_label_lines(tmp_path):
    lst = write(tmp_path / "anet.txt", "v_abc 1520 3,17\nv_d e 40 5\n")
    recs = load_annotations(lst, tmp_path, kind="frames", num_classes=200, multi_label=True)
    assert recs[0].labels == (3, 17) and recs[1].labels == (5,)
    with pytest.raises(AnnotationError, match=r"anet.txt:1: .*several labels.*multi_label"):
        load_annotations(lst, tmp_path, kind="frames", num_classes=200)


@pytest.mark.parametrize("line, reason", [
    ("onlypath", "malformed line"),
    ("p x 3", "num_frames 'x' is not a positive integer"),
    ("p 10 cat", "label 'cat' is not an integer"),
    ("p 10 174", r"label 174 outside the class range \[0, 173\]"),
    ("p 10 -1", "label -1 outside"),
])
def test_bad_frame_lines_name_file_and_line(tmp_path, line, reason):
    lst = write(tmp_path / "bad.txt", f"ok 3 1\n{line}\n")
    with pytest.raises(AnnotationError, match=rf"bad.txt:2: .*{reason}"):
        load_annotations(lst, tmp_path, kind="frames", num_classes=174)
    records, problems = parse_annotations(lst, tmp_path, kind="frames", num_classes=174)
    assert len(records) == 1 and [p.line for p in problems] == [2]


def test_kinetics_csv_class_folder_and_flat(tmp_path):
    (tmp_path / "abseiling").mkdir()
    (tmp_path / "abseiling" / "AAA_000010_000020.mp4").write_bytes(b"")
    (tmp_path / "BBB_000000_000010.mp4").write_bytes(b"")
    (tmp_path / "air_drumming").mkdir()
    (tmp_path / "air_drumming" / "CCC_000005_000015.mp4").write_bytes(b"")
    csv = write(tmp_path / "k.csv",
                "label,youtube_id,time_start,time_end,split\n"
                "abseiling,AAA,10,20,train\n"
                "zumba,BBB,0,10,train\n"
                "air drumming,CCC,5,15,train\n")
    recs = load_annotations(csv, tmp_path, num_classes=400)
    assert recs[0].path == str(tmp_path / "abseiling" / "AAA_000010_000020.mp4")
    assert recs[1].path == str(tmp_path / "BBB_000000_000010.mp4")
    assert recs[2].path == str(tmp_path / "air_drumming" / "CCC_000005_000015.mp4")
    # Without a class file, indices follow the sorted class names.
    assert [r.label for r in recs] == [0, 2, 1]
    recs = load_annotations(csv, tmp_path, class_names=["zumba", "abseiling", "air drumming"])
    assert [r.label for r in recs] == [1, 0, 2]
    bad = write(tmp_path / "bad.csv", "label,youtube_id\nx,y\n")
    with pytest.raises(AnnotationError, match=r"bad.csv:1: .*lacks column"):
        load_annotations(bad, tmp_path)


def test_sthv2_json_and_labels_json(tmp_path):
    labels = {"Putting something on something": "1", "Pushing something from left to right": "0"}
    write(tmp_path / "labels.json", json.dumps(labels))
    items = [{"id": "78687", "label": "putting a cup on a table",
              "template": "Putting [something] on [something]", "placeholders": ["a", "b"]},
             {"id": "42", "template": "Pushing [something] from left to right"}]
    js = write(tmp_path / "train.json", json.dumps(items))
    names = load_class_names(tmp_path / "labels.json")
    assert names == ["Pushing something from left to right", "Putting something on something"]
    recs = load_annotations(js, tmp_path / "videos", class_names=names)
    assert recs[0].path == str(tmp_path / "videos" / "78687.webm") and recs[0].label == 1
    assert recs[1].label == 0
    assert strip_template("Putting [something] on [something]") == "Putting something on something"
    write(js, json.dumps(items + [{"id": "9", "template": "Dancing [something]"}]))
    with pytest.raises(AnnotationError, match=r"train.json:3: template 'Dancing something'"):
        load_annotations(js, tmp_path, class_names=names)


def test_class_files(tmp_path):
    write(tmp_path / "category.txt", "Holding something\nTurning the camera left\n")
    write(tmp_path / "classInd.txt", "1 ApplyEyeMakeup\n2 Apply Lipstick\n")
    assert load_class_names(tmp_path / "category.txt") == ["Holding something",
                                                           "Turning the camera left"]
    assert load_class_names(tmp_path / "classInd.txt") == ["ApplyEyeMakeup", "Apply Lipstick"]
    write(tmp_path / "classInd2.txt", "1 a\nb\n")
    with pytest.raises(AnnotationError, match=r"classInd2.txt:2: malformed"):
        load_class_names(tmp_path / "classInd2.txt", "classind")


def test_presets_and_overrides():
    expected = {"sthv1": (174, 12, False), "sthv2": (174, 12, False), "jester": (27, 8, False),
                "minikinetics": (200, 8, True), "activitynet": (200, 12, True),
                "kinetics": (400, 8, True)}
    for name, (classes, frames, flip) in expected.items():
        cfg = PRESETS[name]
        assert (cfg.num_classes, cfg.num_frames, cfg.flip) == (classes, frames, flip)
    assert PRESETS["sthv2"].frame_template.format(7) == "000007.jpg"
    assert PRESETS["minikinetics"].frame_template.format(7) == "image_00007.jpg"
    assert PRESETS["kinetics"].frame_template.format(7) == "img_00007.jpg"
    assert PRESETS["activitynet"].multi_label
    cfg = get_preset("sthv1", num_frames=16, frame_template="img_{:05d}.jpg")
    assert cfg.num_frames == 16 and cfg.num_classes == 174
    with pytest.raises(ValueError, match=r"unknown dataset option\(s\) 'num_frame'.*accepted:"):
        get_preset("sthv1", num_frame=16)
    with pytest.raises(ValueError, match=r"unknown dataset preset 'ucf'"):
        get_preset("ucf")
    with pytest.raises(ValueError, match=r"num_crops=2 \(expected 1 or 3\)"):
        get_preset("jester", num_crops=2)
