"""Evaluation metrics on known predictions; the kept-ratio plot."""
import pytest
import torch

from afnet.engine.metrics import VideoMetrics
from afnet.engine.plot import plot_kept_ratio


def test_accuracy_metrics_on_known_predictions():
    m = VideoMetrics(num_classes=6, num_points=2)
    scores = torch.tensor([
        [9.0, 1, 2, 3, 4, 5],   # label 0: top-1 hit
        [9.0, 1, 2, 3, 4, 5],   # label 5: top-5 hit (rank 2)
        [9.0, 8, 7, 6, 5, 0],   # label 5: miss
        [0.0, 9, 1, 2, 3, 4],   # label 1: top-1 hit
    ])
    target = torch.tensor([0, 5, 5, 1])
    masks = [torch.tensor([[1.0, 1, 0, 0]] * 4), torch.tensor([[1.0, 0, 0, 0]] * 4)]
    m.update(scores[:2], target[:2], [x[:2] for x in masks])
    m.update(scores[2:], target[2:], [x[2:] for x in masks])
    out = m.compute()
    assert out["top1"] == pytest.approx(0.5)
    assert out["top5"] == pytest.approx(0.75)
    assert out["class_mean_acc"] == pytest.approx((1 + 1 + 0) / 3)   # classes present: 0, 1, 5
    assert out["kept_ratio"] == pytest.approx([0.5, 0.25])
    assert out["mean_kept_ratio"] == pytest.approx(0.375)
    m.reset()
    m.update(scores, target, masks)
    assert m.compute()["top1"] == pytest.approx(0.5)


def test_multi_label_map_and_top1_hit():
    m = VideoMetrics(num_classes=3, num_points=0, multi_label=True)
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.7, 0.6], [0.3, 0.1, 0.8]])
    target = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 1]])
    m.update(scores, target, [])
    out = m.compute()
    # AP per class: c0: 1.0; c1: positives {2} ranked 3rd -> 1/3; c2: positives {1, 2} ranked 1, 2 -> 1.0
    assert out["mAP"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert out["top1"] == pytest.approx(2 / 3)
    assert out["kept_ratio"] == [] and out["mean_kept_ratio"] == 1.0


def test_kept_ratio_plot_is_a_png(tmp_path):
    path = plot_kept_ratio([0.9, 0.8, 0.8, 0.6, 0.5, 0.4, 0.3], tmp_path / "fig5.png", title="RT=0.5")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
