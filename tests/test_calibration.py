"""Threshold calibration: the learned navigation's eval rule made to keep RT of the frames."""
import copy
import json

import pytest
import torch

import afnet
from afnet.checkpoint import read_checkpoint
from afnet.models.calibration import calibrate_threshold, threshold_shift
from afnet.models.layers import Navigation
from tests.helpers import SYNTHETIC_CONFIG, tiny_overrides, tiny_synthetic


def test_threshold_shift_keeps_round_ratio_n_margins():
    margins = torch.tensor([3.0, 1.0, -1.0, -2.0])
    assert threshold_shift(margins, 0.5) == pytest.approx(0.0)     # between 1 and -1
    assert threshold_shift(margins, 0.25) == pytest.approx(-2.0)   # between 3 and 1: keeps 3 only
    assert threshold_shift(margins, 0.75) == pytest.approx(1.5)    # between -1 and -2
    assert threshold_shift(margins, 0.01) == pytest.approx(-2.0)   # at least one kept
    assert threshold_shift(margins, 0.99) == pytest.approx(1.5)    # at least one skipped
    for ratio in (0.25, 0.5, 0.75):
        assert int((margins + threshold_shift(margins, ratio) > 0).sum()) == round(ratio * 4)
    ties = torch.tensor([2.0, 1.0, 1.0, 1.0, 0.0, -1.0])
    assert threshold_shift(ties, 0.5) == pytest.approx(-0.5)       # 4 kept (the 1s together), nearer 3 than 1
    assert threshold_shift(ties, 1 / 3) == pytest.approx(-1.5)     # 1 kept, nearer 2 than 4
    with pytest.raises(ValueError, match="every margin is equal"):
        threshold_shift(torch.ones(5), 0.5)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="in \\(0, 1\\)"):
            threshold_shift(margins, bad)


def _sharp(model):
    """Navigation weights large enough that margins differ frame to frame."""
    torch.manual_seed(3)
    for m in model.modules():
        if isinstance(m, Navigation):
            m.conv2.weight.data.normal_(0, 3)
            m.bn1.bias.data.fill_(3.0)   # ReLU rarely at zero: margins differ (no ties)
    return model.eval()


@pytest.mark.parametrize("temporal", ["block", "first"])
def test_calibrated_threshold_keeps_ratio_of_the_frames_at_every_point(temporal):
    torch.manual_seed(0)
    spatial = {"spatial": True, "region_grid": 2} if temporal == "first" else {}
    model = _sharp(afnet.create_model("af_resnet_small", num_classes=5, num_frames=8,
                                      temporal_navigation=temporal, **spatial))
    videos = [torch.randn(6, 8, 3, 32, 32) for _ in range(3)]
    before = [torch.cat(m) for m in zip(*(model(v).masks for v in videos))]
    ranked = copy.deepcopy(model).configure(ratio=0.25)(videos[0]).masks   # static-k: ranking by margin
    calibration = calibrate_threshold(model, lambda: videos, 0.25)
    assert len(calibration.shifts) == sum(isinstance(m, Navigation) for m in model.modules())
    after = [torch.cat(m) for m in zip(*(model(v).masks for v in videos))]
    assert [round(float(m.mean()), 4) for m in after] == [0.25] * len(after)    # 36 of 144 frames
    assert calibration.kept == [0.25] * len(calibration.shifts) and calibration.mean_kept == 0.25
    assert any(abs(float(m.mean()) - 0.25) > 0.05 for m in before)            # it was not so before
    assert model.training is False
    static_k = copy.deepcopy(model).configure(ratio=0.25)
    assert all(torch.equal(a, b) for a, b in zip(static_k(videos[0]).masks, ranked))  # static-k unchanged


def test_calibration_needs_the_learned_threshold():
    videos = [torch.randn(2, 8, 3, 32, 32)]
    fixed = afnet.create_model("af_resnet_small", num_classes=5, num_frames=8, selection="uniform", ratio=0.5)
    with pytest.raises(ValueError, match="needs the learned threshold.*selection='uniform'"):
        calibrate_threshold(fixed, lambda: videos, 0.5)
    static_k = afnet.create_model("af_resnet_small", num_classes=5, num_frames=8, ratio=0.5)
    with pytest.raises(ValueError, match="ratio=0.5"):
        calibrate_threshold(static_k, lambda: videos, 0.5)


def test_engine_calibrate_writes_a_checkpoint_that_keeps_rt_on_its_videos(tmp_path_factory, capsys):
    """afnet calibrate on a run's checkpoint: the calibrated checkpoint keeps exactly RT of the
    frames of the videos it was calibrated on (here also the validation list), the original
    is left as it was, and only the navigation biases differ."""
    from afnet.cli import main
    from afnet.engine import dump_config, evaluate, load_config

    root = tiny_synthetic(tmp_path_factory.getbasetemp())
    run = tmp_path_factory.mktemp("calib")
    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(root, run, **{
        "objective.target_ratio": 0.25, "data.val_list": "train_frames.txt"}))
    model = _sharp(afnet.create_model("af_resnet_small", num_classes=8, num_frames=8))
    source = run / "trained.ckpt"
    afnet.save_checkpoint(source, model, config=cfg.to_dict())
    before = evaluate(cfg, source)["kept_ratio"]
    assert any(abs(r - 0.25) > 0.05 for r in before)
    config = run / "config.yaml"
    dump_config(cfg, config)
    assert main(["calibrate", "--config", str(config), "--checkpoint", str(source), "--videos", "48"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["checkpoint"] == str(run / "calibrated.ckpt") and report["videos"] == 48
    assert report["ratio"] == 0.25 and len(report["shifts"]) == 3
    after = evaluate(cfg, report["checkpoint"])["kept_ratio"]
    assert after == pytest.approx([0.25, 0.25, 0.25], abs=1e-6)     # 96 of the 384 frames, at every point
    a, b = read_checkpoint(source)["state_dict"], read_checkpoint(report["checkpoint"])["state_dict"]
    changed = sorted(k for k in a if not torch.equal(a[k], b[k]))
    assert changed == [f"layer{i}.navigation.0.conv2.bias" for i in (1, 2, 3)]
    assert read_checkpoint(report["checkpoint"])["calibration"]["source"] == str(source)
