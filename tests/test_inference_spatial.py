"""Spatial navigation (paper §3.3) in the interface: ``afnet flops --region-ratio``, point
names, regions in ``afnet predict`` / ``afnet explain``, spatial checkpoints."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import afnet
from afnet.checkpoint import read_checkpoint
from afnet.cli import main
from afnet.inference import (
    JSON_FIELDS,
    Explanation,
    VideoPrediction,
    draw_explanation,
    explain_video,
    format_prediction,
    load_model_for_inference,
    prediction_to_json,
    read_sample,
)
from tests.helpers import balanced, write_video

T, K, SIZE = 4, 3, 64


def spatial_model(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return afnet.create_model("af_resnet_small", num_classes=K, num_frames=T, spatial=True, region_grid=2, **kwargs)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", 12)


def _save(path, model):
    afnet.save_checkpoint(path, model, class_names=["left", "right", "up"],
                          config={"data": {"preset": "synthetic", "input_size": SIZE}})
    return str(path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, video):
    """A spatial af_resnet_small checkpoint (grid 2, temporal navigation at the first layer,
    read at 64 pixels) whose navigation keeps about half of the frames and of the regions
    of ``video``."""
    path = tmp_path_factory.mktemp("ckpt") / "spatial.pt"
    model = spatial_model()
    clip = read_sample(video, load_model_for_inference(_save(path, model))).clip
    return _save(path, balanced(model, clip))


def _flops(capsys, *argv):
    rc = main(["flops", "af_resnet_small", "--frames", str(T), "--size", str(SIZE), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_flops_fall_with_region_ratio(capsys):
    results = {}
    for ratio in ("1.0", "0.5"):
        rc, out, _ = _flops(capsys, "--region-ratio", ratio, "--region-grid", "2", "--json")
        assert rc == 0
        results[ratio] = json.loads(out)
    assert results["0.5"]["gflops_per_video"] < results["1.0"]["gflops_per_video"]
    half = results["0.5"]
    assert (half["spatial"], half["region_grid"], half["region_selection"], half["region_ratio"]) == (
        True, [2, 2, 2], "center", 0.5)
    rc, out, _ = _flops(capsys, "--region-ratio", "0.25", "--region-grid", "4", "2", "1", "--region-policy", "random")
    assert rc == 0 and "regions 4x4/2x2/1x1, region_selection=random, region_ratio=0.25" in out
    rc, out, _ = _flops(capsys, "--json")
    assert rc == 0 and json.loads(out)["spatial"] is False and json.loads(out)["region_grid"] is None


@pytest.mark.parametrize("argv, message", [
    (["--region-policy", "random"], "region_selection='random' needs spatial=true"),
    (["--spatial", "--region-policy", "random"], "region_selection='random' needs a region_ratio in (0, 1]"),
    (["--region-grid", "2"], "region_grid=2 needs spatial=true"),
    (["--region-ratio", "0.5"], "region grid 7x7 does not divide the 16x16 feature map"),
    (["--region-ratio", "1.5", "--region-grid", "2"], "region_ratio must be in (0, 1], got 1.5"),
    (["--spatial", "--region-grid", "2", "2"], "region_grid=[2, 2]; accepted: a positive integer, or a list of 3"),
])
def test_cli_flops_bad_region_args(capsys, argv, message):
    rc, out, err = _flops(capsys, *argv)
    assert rc == 2 and out == "" and err.count("\n") == 1 and message in err


def test_cli_flops_region_ratio_needs_a_spatial_model(capsys):
    assert main(["flops", "af_mobilenetv3", "--region-ratio", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "spatial=true: spatial navigation is implemented for af_resnet50" in err


@pytest.mark.parametrize("temporal", ["first", "block"])
def test_point_names_match_masks(temporal):
    model = spatial_model(temporal_navigation=temporal).eval()
    out = model(torch.randn(1, T, 3, SIZE, SIZE))
    assert [p.name for p in model.navigation_points()] == ["layer1.0", "layer2.0", "layer3.0"]
    points = model.navigation_points()
    assert [p.grid for p in points] == [2, 2, 2] and all(p.spatial for p in points)
    assert len(out.masks) == len(out.regions) == 3
    af50 = afnet.create_model("af_resnet50", num_classes=K, num_frames=T, spatial=True)
    assert [p.name for p in af50.navigation_points()][:3] == ["layer1.0", "layer1.1", "layer2.0"]
    assert len(af50.navigation_points()) == 10  # 2 + 3 + 5 focal blocks, one Navigation module
    temporal = afnet.create_model("af_mobilenetv3", num_classes=K, num_frames=T)
    assert [p.name for p in temporal.navigation_points()] == ["stage2.0", "stage2.1", "stage3.0", "stage3.1",
                                                              "stage3.2"]
    assert not any(p.spatial for p in temporal.navigation_points())
    assert afnet.create_model("tsn_resnet_small", num_classes=K, num_frames=T).navigation_points() == []


def test_spatial_checkpoint_round_trip(ckpt, video):
    args = read_checkpoint(ckpt)["model_args"]
    assert (args["spatial"], args["region_grid"], args["temporal_navigation"]) == (True, [2, 2, 2], "first")
    im = load_model_for_inference(ckpt)
    assert im.model.spatial and im.model.region_grid == (2, 2, 2) and im.model.temporal_navigation == "first"
    assert im.points == ["layer1.0", "layer2.0", "layer3.0"]
    state = read_checkpoint(ckpt)["state_dict"]
    ref = spatial_model(seed=1)
    ref.load_state_dict(state)
    x = read_sample(video, im).clip
    ref, out = ref.eval()(x), im.model(x)
    assert all(torch.equal(a, b) for a, b in zip(ref.masks + ref.regions, out.masks + out.regions))
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-4, rtol=1e-4)


def test_predict_reports_regions(capsys, ckpt, video):
    assert main(["predict", video, "--checkpoint", ckpt, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert tuple(row) == JSON_FIELDS and row["points"] == ["layer1.0", "layer2.0", "layer3.0"]
    regions = np.array(row["regions"])
    assert regions.shape == (3, T, 2, 2) and set(regions.flatten()) == {0, 1}
    masks = np.array(row["masks"])
    kept = masks.astype(bool)
    assert kept.any() and not kept.all()  # the randomized navigation keeps some frames
    computed = regions[kept].mean()
    assert 0 < computed < 1  # and some regions of those
    for mask, grids, ratio in zip(masks, regions, row["region_ratio"]):
        assert ratio == (None if not mask.any() else pytest.approx(grids[mask == 1].mean(), abs=1e-4))
    assert main(["predict", video, "--checkpoint", ckpt]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("layer")]
    assert [line[3:] for line in lines] == [
        ["regions", "-" if r is None else f"{r:.0%}", "of", "2x2"] for r in row["region_ratio"]]


def test_predict_region_ratio_is_a_static_k_budget(capsys, ckpt, video, tmp_path):
    """``--region-ratio R``: the learned region navigation computes exactly round(R*g^2)
    regions of each kept frame (static-k regions), the fixed budget reported per point."""
    assert main(["predict", video, "--checkpoint", ckpt, "--json", "--region-ratio", "0.5"]) == 0
    row = json.loads(capsys.readouterr().out)
    regions, masks = np.array(row["regions"]), np.array(row["masks"])
    assert (regions.reshape(3, T, 4).sum(-1) == 2).all()             # round(0.5 * 2x2) per frame
    assert [r for r in row["region_ratio"]] == [None if not m.any() else 0.5 for m in masks]
    assert row["execution"] == "sparse"
    plain = tmp_path / "plain.pt"
    from afnet.checkpoint import save_checkpoint
    save_checkpoint(plain, afnet.create_model("af_resnet_small", num_classes=K, num_frames=T))
    assert main(["predict", video, "--checkpoint", str(plain), "--region-ratio", "0.5"]) == 2
    assert "region_ratio=0.5 needs spatial=true (the model is built without spatial navigation)" in \
        capsys.readouterr().err


def test_non_spatial_prediction_has_empty_regions():
    p = VideoPrediction("v.mp4", ok=True, top=[{"class": 0, "name": None, "score": 1.0}], frame_indices=[0, 1],
                        points=["layer1.0"], masks=[[1, 0]], latency_ms=1.0, decode_ms=1.0, views=1)
    row = prediction_to_json(p)
    assert row["regions"] == [] and row["region_ratio"] == [] and "regions" not in format_prediction(p)


def _render(tmp_path, name, regions):
    """Two black kept frames at one point; ``regions`` per frame (or none: non-spatial)."""
    p = VideoPrediction("v.mp4", ok=True, top=[{"class": 0, "name": None, "score": 1.0}], frame_indices=[0, 1],
                        points=["layer1.0"], masks=[[1, 1]], regions=[regions] if regions else [], views=1)
    layout = draw_explanation(Explanation(p, np.zeros((2, 32, 32, 3), np.uint8)), tmp_path / name)
    from matplotlib.image import imread

    return imread(layout.path)[..., :3]


def _runs(indices) -> list[tuple[int, int]]:
    """Sorted pixel indices -> (first, last) of each run of consecutive ones."""
    breaks = np.nonzero(np.diff(indices) > 1)[0]
    return list(zip(indices[np.r_[0, breaks + 1]], indices[np.r_[breaks, len(indices) - 1]]))


def test_explain_greys_out_unselected_regions(tmp_path):
    plain = _render(tmp_path, "plain.png", None)
    spatial = _render(tmp_path, "spatial.png", [[[1, 0], [1, 1]], [[1, 1], [1, 1]]])
    assert plain.shape == spatial.shape
    black = (plain < 0.05).all(-1)  # the 2 x 2 thumbnails (frames row, the point's row) and text
    _, (y0, y1) = _runs(np.nonzero(black.sum(1) > black.sum(1).max() / 2)[0])
    row = black[y0:y1 + 1].sum(0)
    (x0, x1), _ = _runs(np.nonzero(row > row.max() / 2)[0])  # the point's first frame: x0..x1, y0..y1
    dimmed = black & (np.abs(spatial - 191 / 255) < 0.02).all(-1)  # the grey of skipped frames
    ys, xs = np.nonzero(dimmed)
    assert ys.min() >= y0 and ys.max() <= (y0 + y1) / 2 + 1  # top half of the point's first frame
    assert xs.min() >= (x0 + x1) / 2 - 1 and xs.max() <= x1   # right half
    assert 0.4 < dimmed.sum() / ((y1 - y0 + 1) * (x1 - x0 + 1) / 4) <= 1  # the region, less hatch and grid


def test_explain_spatial_checkpoint(capsys, ckpt, video, tmp_path):
    im = load_model_for_inference(ckpt)
    explanation = explain_video(video, im)
    assert explanation.frames.shape == (T, SIZE, SIZE, 3)  # the crop the region grid lies on
    assert np.array(explanation.prediction.regions).shape == (3, T, 2, 2)
    out = tmp_path / "explain.png"
    assert main(["explain", video, "--checkpoint", ckpt, "--out", str(out)]) == 0
    assert "3 navigation point(s) x 4 frames" in capsys.readouterr().out and out.stat().st_size > 0


def test_spatial_image_backbone_loads_into_a_video_model(tmp_path):
    """A T=1 spatial checkpoint: the temporal navigation at the first layer (sized by T)
    starts fresh in a T-frame model, the rest is loaded."""
    path = tmp_path / "image.pt"
    afnet.save_checkpoint(path, afnet.create_model("af_resnet_small", num_classes=K, num_frames=1, spatial=True,
                                                   region_grid=2))
    report = afnet.load_checkpoint(spatial_model(), path)
    assert report.is_backbone and set(report.skipped) == {"navigation.conv2.weight", "navigation.conv2.bias"}


def test_predict_runs_the_checkpoints_fixed_policy(tmp_path, video):
    """A model trained with Table 5's fixed spatial policy (and a fixed frame policy) is run
    with those policies, as its config records, not with its untrained navigation (which
    starts by keeping every frame and region)."""
    model = spatial_model()
    path = tmp_path / "fixed.pt"
    afnet.save_checkpoint(path, model, config={"data": {"preset": "synthetic", "input_size": SIZE},
                                               "model": {"selection": "uniform", "ratio": 0.5,
                                                         "region_selection": "center", "region_ratio": 0.25}})
    im = load_model_for_inference(str(path))
    assert (im.model.selection, im.model.ratio, im.model.region_selection, im.model.region_ratio) == (
        "uniform", 0.5, "center", 0.25)
    out = im.model(read_sample(video, im).clip)
    assert all(m.mean() == 0.5 for m in out.masks) and all(r.mean() == 0.25 for r in out.regions)
    learned = load_model_for_inference(_save(tmp_path / "learned.pt", spatial_model()))
    assert (learned.model.selection, learned.model.region_selection) == ("navigation", "navigation")
