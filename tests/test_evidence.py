"""The evidence task: its generator's evidence annotation, the evidence file through the data
pipeline, navigation precision against hand-computed cases, the budget-gated checkpoint score."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from afnet.data.annotations import AnnotationError, Evidence, load_evidence
from afnet.data.synthetic import (
    EVIDENCE_CLASSES,
    EVIDENCE_FILE,
    GLYPHS,
    OTHER_GLYPHS,
    make_glyph_images,
    make_synthetic,
    render_evidence_video,
    render_glyph_frames,
)
from afnet.engine.metrics import VideoMetrics


def _glyph_pixels(glyphs, seed, size=32):
    """Where the frames of ``render_glyph_frames(glyphs)`` differ from the same scene (same
    random stream) with a plain carrier: (T, S, S) bool."""
    drawn = render_glyph_frames(glyphs, np.random.default_rng(seed), size=size, difficulty=0.0)
    plain = render_glyph_frames([None] * len(glyphs), np.random.default_rng(seed), size=size, difficulty=0.0)
    return (drawn != plain).any(axis=3)


def test_evidence_frames_are_exactly_the_frames_with_the_class_glyph():
    for seed in range(6):
        label = seed % 8
        video, entry = render_evidence_video(label, np.random.default_rng(seed), size=32, num_frames=8)
        evidence = entry["frames"]
        assert entry == {"frames": evidence} and video.shape == (8, 32, 32, 3) and video.dtype == np.uint8
        assert 2 <= len(evidence) <= 3 and evidence == sorted(set(evidence))
        # replay the stream: the evidence draw, then the scene with the class glyph on those frames
        rng = np.random.default_rng(seed)
        count = 2 + int(rng.integers(2))
        assert sorted(int(t) for t in rng.choice(8, size=count, replace=False)) == evidence
        glyphs = [EVIDENCE_CLASSES[label] if t in evidence else None for t in range(8)]
        assert np.array_equal(render_glyph_frames(glyphs, rng, size=32), video)
        changed = _glyph_pixels(glyphs, seed)
        assert [t for t in range(8) if changed[t].any()] == evidence


def test_each_class_draws_its_own_glyph():
    """The pixels a glyph changes on the carrier: its 5x5 pattern (one-pixel strokes at 32
    pixels, two-pixel at 64)."""
    assert len(EVIDENCE_CLASSES) == len(OTHER_GLYPHS) == 8 and not set(EVIDENCE_CLASSES) & set(OTHER_GLYPHS)
    assert len({GLYPHS[name] for name in GLYPHS}) == 16  # all glyphs differ
    for name in ("plus", "zed", "box"):
        expected = np.array([[c == "#" for c in row] for row in GLYPHS[name]])
        for size, cell in ((32, 1), (64, 2)):
            changed = _glyph_pixels([name], 3, size=size)[0]
            ys, xs = np.nonzero(changed)
            crop = changed[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            if name == "box":  # its pattern has an empty border: compare the strokes' bounding box
                expected_crop = expected[1:4, 1:4]
            else:
                expected_crop = expected
            assert np.array_equal(crop, np.kron(expected_crop, np.ones((cell, cell), dtype=bool)))


def test_make_synthetic_writes_the_evidence_file(tmp_path):
    data = make_synthetic(tmp_path, num_train=4, num_val=3, size=32, num_frames=8, task="evidence")
    evidence = json.loads((tmp_path / EVIDENCE_FILE).read_text())
    assert len(evidence) == 2 * (4 + 3)  # frame folder and mp4 of each video
    for split, count in (("train", 4), ("val", 3)):
        for i in range(count):
            rng = np.random.default_rng(np.random.SeedSequence([0, 0 if split == "train" else 1, i]))
            expected = render_evidence_video(i % 8, rng, size=32, num_frames=8)[1]["frames"]
            assert evidence[f"frames/{split}/video_{i:05d}"] == expected
            assert evidence[f"videos/{split}/video_{i:05d}.mp4"] == expected
    assert (tmp_path / "category.txt").read_text().split() == list(EVIDENCE_CLASSES)
    assert json.loads((tmp_path / "synthetic.json").read_text())["task"] == "evidence"
    assert data.num_frames == 8
    with pytest.raises(ValueError, match="task='flashes'; accepted: temporal, evidence"):
        make_synthetic(tmp_path / "x", task="flashes")


def test_glyph_images_in_the_imagefolder_layout(tmp_path):
    root = make_glyph_images(tmp_path, num_train=32, num_val=16, size=32)
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(GLYPHS)
    assert sum(1 for _ in (root / "train").rglob("*.jpg")) == 32
    assert sum(1 for _ in (root / "val").rglob("*.jpg")) == 16


def test_the_dataset_marks_the_sampled_evidence_frames(tmp_path):
    from afnet.data.synthetic import synthetic_dataset

    make_synthetic(tmp_path, num_train=3, num_val=2, size=32, num_frames=8, task="evidence")
    evidence = json.loads((tmp_path / EVIDENCE_FILE).read_text())
    for source, key in (("frames", "frames/val/video_00001"), ("videos", "videos/val/video_00001.mp4")):
        ds = synthetic_dataset(tmp_path, "val", source=source, input_size=32, scale_size=32, num_crops=3,
                               evidence_file=tmp_path / EVIDENCE_FILE)
        clip, _, _, marks = ds[1]
        assert clip.shape[:2] == (3, 8) and marks.shape == (3, 8)   # one row per view
        expected = torch.zeros(8)
        expected[evidence[key]] = 1
        assert torch.equal(marks, expected.expand(3, 8))
    train = synthetic_dataset(tmp_path, "train", input_size=32, scale_size=32, evidence_file=tmp_path / EVIDENCE_FILE)
    _, _, _, marks = train[0]
    assert marks.shape == (8,) and set(marks.tolist()) <= {0.0, 1.0}
    assert synthetic_dataset(tmp_path, "train", input_size=32, scale_size=32)[0][3] is None


def test_a_bad_evidence_file_names_the_file_and_entry(tmp_path):
    bad = tmp_path / "ev.json"
    bad.write_text(json.dumps({"a": [1, 2], "b": [-1]}))
    with pytest.raises(AnnotationError, match=r"ev.json.*entry 'b': expected a list of frame indices >= 0"):
        load_evidence(bad, tmp_path)
    bad.write_text("{not json")
    with pytest.raises(AnnotationError, match="ev.json:1.*not valid JSON"):
        load_evidence(bad, tmp_path)
    assert load_evidence(_write(tmp_path / "ok.json", {"x/y": [3, 1, 3]}), tmp_path) == {
        str(tmp_path / "x" / "y"): Evidence((1, 3))}
    regions = {"frames": [1], "regions": [3, 3], "grid": 2}
    assert load_evidence(_write(tmp_path / "ok.json", {"v": regions}), tmp_path) == {
        str(tmp_path / "v"): Evidence((1,), (3, 3), 2)}
    for entry, reason in (({**regions, "regions": [4, 4]}, r"regions: expected one cell index in 0..3 per frame"),
                          ({**regions, "grid": 0}, "grid: expected a positive integer"),
                          ({**regions, "frames": [2]}, "frames: an evidence frame beyond the 2 frames whose regions"),
                          ({"frames": [1], "cells": [0]}, r"expected a list of frame indices or \{")):
        with pytest.raises(AnnotationError, match=r"ok.json.*entry 'v': " + reason):
            load_evidence(_write(tmp_path / "ok.json", {"v": entry}), tmp_path)


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_navigation_precision_against_hand_computed_values():
    m = VideoMetrics(num_classes=2, num_points=2)
    scores, target = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    evidence = torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 1]])
    masks = [torch.tensor([[1.0, 0, 1, 0], [0, 0, 1, 1]]),   # keeps 4 frames, 2 with evidence
             torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0]])]   # keeps 2 frames, both with evidence
    m.update(scores[:1], target[:1], [x[:1] for x in masks], evidence=evidence[:1])
    m.update(scores[1:], target[1:], [x[1:] for x in masks], evidence=evidence[1:])
    out = m.compute()
    # a ratio over the split, not a mean of per-video ratios: (1 + 1) / (2 + 2) and (2 + 0) / (2 + 0)
    assert out["navigation_precision"] == pytest.approx([0.5, 1.0])
    assert out["mean_navigation_precision"] == pytest.approx(0.75)
    assert out["evidence_rate"] == pytest.approx(3 / 8)
    m.reset()
    m.update(scores, target, masks)
    assert "navigation_precision" not in m.compute()  # no evidence given: not measured


def test_checkpoint_score_prefers_epochs_within_the_ratio_tolerance():
    from afnet.engine.module import AFNetModule

    def score(kept, top1, tolerance=0.05):
        cfg = SimpleNamespace(objective=SimpleNamespace(target_ratio=0.5, target_region_ratio=1.0,
                                                        ratio_tolerance=tolerance))
        module = SimpleNamespace(cfg=cfg, with_ratio=True, with_region_ratio=False)
        return AFNetModule.checkpoint_score(module, {"top1": top1, "mean_kept_ratio": kept})

    assert score(0.53, 0.80) == pytest.approx(0.80)
    assert score(0.70, 0.95) == pytest.approx(0.95 - 1.0 - 0.20)        # over budget: below any in-budget epoch
    assert score(0.70, 0.95) < score(0.54, 0.10)
    assert score(0.60, 0.90) > score(0.70, 0.90)                        # then: the one that misses least
    assert score(0.70, 0.95, tolerance=None) == pytest.approx(0.95)     # no tolerance: top-1 alone


def test_data_scales_and_flip_reach_the_dataset_and_are_checked(tmp_path):
    from afnet.engine import ConfigError, load_config

    make_glyph_images(tmp_path / "img", num_train=16, num_val=16, size=32)
    base = {"data": {"preset": "imagefolder", "root": str(tmp_path / "img"), "train_list": "train",
                     "val_list": "val", "num_classes": 16, "input_size": 32, "scale_size": 32}}
    cfg = load_config(base, ["data.scales=[1.0]", "data.flip=false"])
    dataset = cfg.data.dataset()
    assert dataset.scales == (1.0,) and dataset.flip is False
    assert load_config(base).data.dataset().flip is True  # the preset's
    with pytest.raises(ConfigError, match=r"data: .*scales=\(1.5,\) \(expected crop scales in \(0, 1\]\)"):
        load_config(base, ["data.scales=[1.5]"])


def test_make_synthetic_and_explain_with_evidence_on_the_command_line(tmp_path, capsys):
    from afnet.cli import main

    assert main(["make-synthetic", str(tmp_path / "d"), "--task", "evidence", "--num-train", "2", "--num-val", "2",
                 "--frames", "8", "--size", "32", "--no-frames"]) == 0
    assert "evidence frames:" in capsys.readouterr().out
    import afnet
    from afnet.models.layers import Navigation

    model = afnet.create_model("af_resnet_small", num_classes=8, num_frames=8)
    with torch.no_grad():  # every navigation point keeps frames 1, 3, 5, 7, whatever the content
        for m in model.modules():
            if isinstance(m, Navigation):
                m.conv2.weight.zero_()
                # (skip, keep) per frame: skip the even frames, keep the odd ones
                m.conv2.bias.copy_(torch.tensor([[1.0, 0.0] if t % 2 == 0 else [0.0, 1.0] for t in range(8)]).flatten())
    afnet.save_checkpoint(tmp_path / "m.pt", model)
    video = tmp_path / "d" / "videos" / "val" / "video_00001.mp4"
    evidence = json.loads((tmp_path / "d" / EVIDENCE_FILE).read_text())["videos/val/video_00001.mp4"]
    assert main(["explain", str(video), "--checkpoint", str(tmp_path / "m.pt"), "--out", str(tmp_path / "f.png"),
                 "--evidence-file", str(tmp_path / "d" / EVIDENCE_FILE), "--size", "32"]) == 0
    out = capsys.readouterr().out
    # frames 1, 3, 5, 7 kept at every point: the precision is computable by hand
    expected = len({1, 3, 5, 7} & set(evidence)) / 4
    assert f"navigation precision: layer1.0 {expected:.2f}" in out
    assert main(["explain", str(tmp_path / "d" / "videos" / "train" / "video_00000.mp4"), "--checkpoint",
                 str(tmp_path / "m.pt"), "--out", str(tmp_path / "g.png"), "--evidence-file",
                 str(tmp_path / "nothing.json")]) == 2
    assert "evidence file not found" in capsys.readouterr().err


def test_the_region_task_keeps_the_glyph_in_its_recorded_cell(tmp_path):
    """``region_grid``: the carrier, and with it the glyph, stays wholly inside the cell that
    ``evidence.json`` records for every frame; cells are drawn over the whole grid."""
    cells = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        video, entry = render_evidence_video(seed % 8, rng, size=32, num_frames=8, region_grid=2)
        assert entry["grid"] == 2 and len(entry["regions"]) == 8 and len(set(entry["regions"])) == 1
        cell = entry["regions"][0]
        cells.add(cell)
        rng = np.random.default_rng(seed)   # replay: the evidence draw, the cell, then the scene
        count = 2 + int(rng.integers(2))
        rng.choice(8, size=count, replace=False)
        assert int(rng.integers(4)) == cell
        glyphs = [EVIDENCE_CLASSES[seed % 8] if t in entry["frames"] else None for t in range(8)]
        row, column = divmod(cell, 2)
        assert np.array_equal(render_glyph_frames(glyphs, rng, size=32, region=(row, column, 2)), video)
        changed = _region_glyph_pixels(glyphs, seed, (row, column, 2))
        assert [t for t in range(8) if changed[t].any()] == entry["frames"]
        ys, xs = np.nonzero(changed.any(axis=0))
        assert row * 16 <= ys.min() and ys.max() < (row + 1) * 16
        assert column * 16 <= xs.min() and xs.max() < (column + 1) * 16
    assert cells == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="region_grid=8; accepted: 0 .* hold the 7-pixel carrier"):
        make_synthetic(tmp_path / "x", size=32, num_frames=8, task="evidence", region_grid=8)
    with pytest.raises(ValueError, match="region_grid=2 needs task='evidence'"):
        make_synthetic(tmp_path / "x", size=32, task="temporal", region_grid=2)


def _region_glyph_pixels(glyphs, seed, region):
    drawn = render_glyph_frames(glyphs, np.random.default_rng(seed), size=32, difficulty=0.0, region=region)
    plain = render_glyph_frames([None] * len(glyphs), np.random.default_rng(seed), size=32, difficulty=0.0,
                                region=region)
    return (drawn != plain).any(axis=3)


def test_the_dataset_marks_the_evidence_cell_where_the_geometry_holds(tmp_path):
    from afnet.cli import main
    from afnet.data.synthetic import synthetic_dataset

    assert main(["make-synthetic", str(tmp_path), "--task", "evidence", "--region-grid", "2", "--num-train", "2",
                 "--num-val", "2", "--frames", "8", "--size", "32"]) == 0
    entry = json.loads((tmp_path / EVIDENCE_FILE).read_text())["videos/val/video_00001.mp4"]
    val = synthetic_dataset(tmp_path, "val", source="videos", input_size=32, scale_size=32,
                            evidence_file=tmp_path / EVIDENCE_FILE)
    marks = val[1][3]
    assert marks.shape == (1, 8, 2, 2)
    expected = torch.zeros(8, 4)
    expected[entry["frames"], entry["regions"][0]] = 1
    assert torch.equal(marks[0].flatten(1), expected)
    # a crop would move the cells, and training crops and flips: the frame marks only
    three = synthetic_dataset(tmp_path, "val", source="videos", input_size=32, scale_size=32, num_crops=3,
                              evidence_file=tmp_path / EVIDENCE_FILE)
    assert three[1][3].shape == (3, 8)
    train = synthetic_dataset(tmp_path, "train", input_size=32, scale_size=32, evidence_file=tmp_path / EVIDENCE_FILE)
    assert train[0][3].shape == (8,)


def test_region_precision_against_hand_computed_values():
    """Two videos of two frames on a 2x2 annotation grid; spatial blocks on grids of 2 and 4."""
    m = VideoMetrics(num_classes=2, num_points=2, num_region_points=2)
    scores, target = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    cells = torch.zeros(2, 2, 2, 2)
    cells[0, 0, 0, 0] = 1     # video 0: frame 0 is an evidence frame, its glyph in the top-left cell
    cells[1, 1, 1, 1] = 1     # video 1: frame 1, bottom-right
    keep = torch.ones(2, 2)
    coarse = torch.zeros(2, 2, 2, 2)
    coarse[0, 0, 0, :] = 1    # top row: the evidence cell and one other
    coarse[0, 1] = 1          # a frame without evidence: not counted
    coarse[1, 1, 0, 0] = 1    # one plain cell
    fine = torch.zeros(2, 2, 4, 4)
    fine[0, 0, :2, :2] = 1    # the four sub-cells of the evidence cell
    fine[1, 1, 0, 0] = 1
    fine[1, 1, 3, 3] = 1      # one sub-cell of the evidence cell, one plain
    m.update(scores, target, [keep, keep], [coarse, fine], evidence=cells)
    out = m.compute()
    assert out["region_precision"] == pytest.approx([1 / 3, 5 / 6])
    assert out["mean_region_precision"] == pytest.approx((1 / 3 + 5 / 6) / 2)
    assert out["region_evidence_rate"] == pytest.approx([0.25, 0.25])
    assert out["navigation_precision"] == pytest.approx([0.5, 0.5])   # the frame marks: the cells' maximum
    m.reset()
    dropped = keep.clone()
    dropped[0, 0] = 0         # a frame the frame mask skips computes no region
    m.update(scores, target, [dropped, keep], [coarse, fine], evidence=cells)
    assert m.compute()["region_precision"] == pytest.approx([0.0, 5 / 6])
