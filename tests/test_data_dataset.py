import logging
import os
import shutil

import pytest
import torch

from afnet.data import (
    AnnotationError,
    DecodeError,
    SampleKey,
    average_views,
    build_dataloader,
    build_dataset,
    load_video,
    synthetic_dataset,
)
from afnet.data.synthetic import synthetic_config


def test_frames_and_videos_datasets(data_synthetic):
    root = data_synthetic.root
    for source in ("frames", "videos"):
        train = synthetic_dataset(root, "train", source=source)
        clip, target, index, evidence = train[SampleKey(2, 0)]
        assert clip.shape == (8, 3, 28, 28) and clip.dtype == torch.float32
        assert target.dtype == torch.long and int(target) == 2 and index == 2 and evidence is None
        val = synthetic_dataset(root, "val", source=source, num_clips=2, num_crops=3)
        clip, target, _, _ = val[1]
        assert clip.shape == (6, 8, 3, 28, 28) and val.num_views == 6


def test_frames_and_videos_give_same_eval_clip(data_synthetic):
    a = synthetic_dataset(data_synthetic.root, "val", source="frames")[0][0]
    b = synthetic_dataset(data_synthetic.root, "val", source="videos")[0][0]
    assert (a - b).abs().mean() < 0.15  # JPEG vs H.264 coding noise only


def test_reproducible_per_epoch_and_index(data_synthetic):
    ds = synthetic_dataset(data_synthetic.root, "train", seed=7)
    a, b = ds[SampleKey(3, 1)][0], ds[SampleKey(3, 1)][0]
    assert torch.equal(a, b)
    other_epochs = [ds[SampleKey(3, e)][0] for e in (0, 2, 3, 4)]
    assert any(not torch.equal(a, c) for c in other_epochs)


def test_loader_independent_of_workers(data_synthetic):
    ds = synthetic_dataset(data_synthetic.root, "train", seed=1)
    runs = []
    for workers in (0, 2):
        loader = build_dataloader(ds, batch_size=4, num_workers=workers, seed=5)
        loader.set_epoch(3)
        runs.append([(b.index.clone(), b.clip.clone()) for b in loader])
    assert len(runs[0]) == 4
    for (i0, c0), (i1, c1) in zip(*runs):
        assert torch.equal(i0, i1) and torch.equal(c0, c1)
    loader = build_dataloader(ds, batch_size=4, num_workers=0, seed=5)
    loader.set_epoch(4)
    assert [b.index.tolist() for b in loader] != [r[0].tolist() for r in runs[0]]


def test_eval_loader_and_average_views(data_synthetic):
    ds = synthetic_dataset(data_synthetic.root, "val", num_clips=2, num_crops=3)
    batch = next(iter(build_dataloader(ds, batch_size=4, num_workers=0)))
    assert batch.clip.shape == (4, 6, 8, 3, 28, 28) and batch.index.tolist() == [0, 1, 2, 3]
    logits = torch.arange(4 * 6 * 2, dtype=torch.float32).view(24, 2)
    avg = average_views(logits, 6)
    assert avg.shape == (4, 2) and torch.equal(avg, logits.view(4, 6, 2).mean(1))
    assert torch.allclose(average_views(logits.view(4, 6, 2), 6, softmax=True).sum(-1),
                          torch.ones(4))


def test_load_video_for_inference(data_synthetic):
    cfg = synthetic_config(data_synthetic.root)
    path = data_synthetic.root / "videos" / "val" / "video_00001.mp4"
    clip = load_video(path, cfg)
    assert clip.shape == (1, 8, 3, 28, 28)
    folder = data_synthetic.root / "frames" / "val" / "video_00001"
    assert load_video(folder, cfg, num_crops=3).shape == (3, 8, 3, 28, 28)


def test_multi_label_targets(tmp_path, data_synthetic):
    src = data_synthetic.root / "frames" / "train" / "video_00000"
    shutil.copytree(src, tmp_path / "v a")
    (tmp_path / "list.txt").write_text("v a 12 3,17\n")
    ds = build_dataset("activitynet", tmp_path, tmp_path / "list.txt", train=False,
                       frame_template="{:05d}.jpg", input_size=28, scale_size=32)
    _, target, _, _ = ds[0]
    assert target.shape == (200,) and target.dtype == torch.float32
    assert target.nonzero().flatten().tolist() == [3, 17]


def test_annotation_errors_fail_at_build(tmp_path):
    (tmp_path / "l.txt").write_text("a 3 1\nb 4\n")
    with pytest.raises(AnnotationError, match=r"l.txt:2: malformed line 'b 4'"):
        build_dataset("jester", tmp_path, tmp_path / "l.txt", train=True, kind="frames")
    (tmp_path / "m.txt").write_text("a 3 1\nb 4 27\n")
    with pytest.raises(AnnotationError, match=r"m.txt:2: label 27 outside .*num_classes=27"):
        build_dataset("jester", tmp_path, tmp_path / "m.txt", train=True, kind="frames")
    with pytest.raises(ValueError, match=r"on_error='ignore'; accepted: raise, skip"):
        build_dataset("jester", tmp_path, tmp_path / "l.txt", train=True, kind="videos",
                      on_error="ignore")


def make_video_list(tmp_path, data_synthetic, extra_lines):
    root = data_synthetic.root
    lines = [f"{root}/videos/train/video_{i:05d}.mp4 {i % 8}" for i in range(6)]
    lines[2:2] = extra_lines
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "list.txt"


def test_missing_and_corrupt_videos_raise_naming_file(tmp_path, data_synthetic):
    good = data_synthetic.root / "videos" / "train" / "video_00000.mp4"
    (tmp_path / "trunc.mp4").write_bytes(good.read_bytes()[:600])
    lst = make_video_list(tmp_path, data_synthetic, [f"{tmp_path}/missing.mp4 1",
                                                     f"{tmp_path}/trunc.mp4 1"])
    cfg = synthetic_config(data_synthetic.root)
    ds = build_dataset(cfg, "/", lst, train=True, kind="videos")
    with pytest.raises(DecodeError, match=r"missing.mp4: video file not found .*list.txt:3"):
        ds[2]
    with pytest.raises(DecodeError, match=r"trunc.mp4.*list.txt:4"):
        ds[3]


def test_skip_policy_counts_and_logs(tmp_path, data_synthetic, caplog):
    (tmp_path / "bad.mp4").write_bytes(os.urandom(2000))
    lst = make_video_list(tmp_path, data_synthetic, [f"{tmp_path}/missing.mp4 1",
                                                     f"{tmp_path}/bad.mp4 1"])
    cfg = synthetic_config(data_synthetic.root)
    ds = build_dataset(cfg, "/", lst, train=True, kind="videos", on_error="skip")
    loader = build_dataloader(ds, batch_size=4, num_workers=0, shuffle=False, drop_last=False)
    with caplog.at_level(logging.WARNING, logger="afnet.data"):
        batches = list(loader)
    assert loader.num_skipped == 2
    kept = sorted(i for b in batches for i in b.index.tolist())
    assert kept == [0, 1, 4, 5, 6, 7]  # nothing substituted for the two bad samples
    skipped = [s.path for b in batches for s in b.skipped]
    assert any("missing.mp4" in p for p in skipped) and any("bad.mp4" in p for p in skipped)
    assert "missing.mp4" in caplog.text


def test_kinetics_csv_and_sthv2_json_end_to_end(tmp_path, data_synthetic):
    src = data_synthetic.root / "videos" / "train"
    (tmp_path / "k" / "abseiling").mkdir(parents=True)
    shutil.copy(src / "video_00000.mp4", tmp_path / "k" / "abseiling" / "AAA_000010_000020.mp4")
    shutil.copy(src / "video_00001.mp4", tmp_path / "k" / "BBB_000000_000010.mp4")
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                    "abseiling,AAA,10,20,train\nzumba,BBB,0,10,train\n")
    ds = build_dataset("kinetics", tmp_path / "k", tmp_path / "k.csv", train=True,
                       input_size=28, scale_size=32, scales=(1.0, 0.875))
    clip, target, _, _ = ds[1]
    assert clip.shape == (8, 3, 28, 28) and int(target) == 1

    (tmp_path / "s").mkdir()
    shutil.copy(src / "video_00002.mp4", tmp_path / "s" / "123.webm")
    names = [f"class {i}" for i in range(174)]
    names[5] = "Moving something up"
    (tmp_path / "labels.json").write_text(
        "{" + ", ".join(f'"{n}": "{i}"' for i, n in enumerate(names)) + "}")
    (tmp_path / "train.json").write_text('[{"id": "123", "template": "Moving [something] up"}]')
    ds = build_dataset("sthv2", tmp_path / "s", tmp_path / "train.json", train=False,
                       input_size=28, scale_size=32)  # labels.json found next to the JSON
    clip, target, _, _ = ds[0]
    assert clip.shape == (1, 12, 3, 28, 28) and int(target) == 5


def test_dense_sampling_dataset(data_synthetic):
    ds = synthetic_dataset(data_synthetic.root, "train", sampling="dense", stride=1, num_frames=4)
    assert ds[SampleKey(0, 0)][0].shape == (4, 3, 28, 28)


def test_worker_error_names_file(tmp_path, data_synthetic):
    lst = make_video_list(tmp_path, data_synthetic, [f"{tmp_path}/missing.mp4 1"])
    cfg = synthetic_config(data_synthetic.root)
    ds = build_dataset(cfg, "/", lst, train=False, kind="videos")
    loader = build_dataloader(ds, batch_size=2, num_workers=1)
    with pytest.raises(DecodeError, match=r"missing.mp4: video file not found"):
        list(loader)
