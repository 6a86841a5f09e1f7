"""The saliency terms (beyond the paper, off by default) and the budget warnings of ``train``."""
import pytest
import torch

from afnet.engine import load_config, train
from afnet.engine.objective import afnet_loss, pixel_saliency, salient_frames, salient_regions
from afnet.engine.run import BudgetWarning, budget_warnings
from afnet.models import create_model
from afnet.models.layers import Navigation, SpatialNavigation
from tests.helpers import SYNTHETIC_CONFIG, tiny_overrides, tiny_synthetic


def test_salient_frames_are_those_whose_own_logits_favour_the_true_class():
    # 2 videos, 4 frames, 3 classes: the true class's log-probability per frame decides
    frame_logits = torch.zeros(2, 4, 3)
    frame_logits[0, 2, 1] = 5.0     # video 0 (class 1): frame 2, then frame 0
    frame_logits[0, 0, 1] = 2.0
    frame_logits[0, 3, 0] = 9.0     # confident in another class: least salient
    frame_logits[1, 1, 2] = 4.0     # video 1 (class 2): frame 1, then frame 3
    frame_logits[1, 3, 2] = 3.0
    target = torch.tensor([1, 2])
    assert salient_frames(frame_logits, target, 0.5).tolist() == [[1, 0, 1, 0], [0, 1, 0, 1]]
    assert salient_frames(frame_logits, target, 0.25).tolist() == [[0, 0, 1, 0], [0, 1, 0, 0]]
    assert salient_frames(frame_logits, target, 0.01).sum(1).tolist() == [1, 1]   # at least one frame
    # ties (all frames alike) go to the earlier frames
    assert salient_frames(torch.zeros(1, 4, 3), torch.tensor([0]), 0.5).tolist() == [[1, 1, 0, 0]]
    # multi-hot targets: the mean log-sigmoid over the video's classes
    multi = torch.full((1, 3, 3), -3.0)
    multi[0, 1, :2] = 3.0
    assert salient_frames(multi, torch.tensor([[1.0, 1.0, 0.0]]), 0.3).tolist() == [[0, 1, 0]]


def test_saliency_term_is_off_by_default_and_adds_mu_times_the_mask_gap():
    logits, target = torch.randn(2, 3), torch.tensor([0, 2])
    frame_logits = torch.randn(2, 4, 3)
    masks = [torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 1]]), torch.tensor([[1.0, 1, 0, 0], [1, 0, 0, 1]])]
    off = afnet_loss(logits, target, masks, target_ratio=0.5, ratio_weight=2.0, frame_logits=frame_logits)
    assert float(off.saliency_loss) == 0.0
    on = afnet_loss(logits, target, masks, target_ratio=0.5, ratio_weight=2.0, frame_logits=frame_logits,
                    saliency_weight=3.0)
    z = salient_frames(frame_logits, target, 0.5)
    gap = sum(((m - z) ** 2).mean() for m in masks) / len(masks)
    assert torch.allclose(on.saliency_loss, gap)
    assert torch.allclose(on.total, off.total + 3.0 * gap)
    # masks equal to the target: nothing to learn
    same = afnet_loss(logits, target, [z, z], target_ratio=0.5, ratio_weight=2.0, frame_logits=frame_logits,
                      saliency_weight=3.0)
    assert float(same.saliency_loss) == 0.0
    with pytest.raises(ValueError, match="frame_logits"):
        afnet_loss(logits, target, masks, target_ratio=0.5, ratio_weight=2.0, saliency_weight=1.0)


def test_saliency_gradient_reaches_every_navigation_module_and_raises_the_salient_frames():
    torch.manual_seed(0)
    model = create_model("af_resnet_small", num_classes=4, num_frames=4, navigation_bias=(0.0, 0.5))
    model.train()
    video, target = torch.randn(2, 4, 3, 32, 32), torch.tensor([1, 3])
    out = model(video, temperature=1.0)
    assert out.frame_logits.shape == (2, 4, 4)
    assert torch.allclose(out.frame_logits.mean(1), out.logits)
    loss = afnet_loss(out.logits, target, out.masks, target_ratio=0.5, ratio_weight=0.0,
                      frame_logits=out.frame_logits, saliency_weight=1.0)
    model.zero_grad()
    loss.saliency_loss.backward()
    z = salient_frames(out.frame_logits, target, 0.5)
    navigations = [m for m in model.modules() if isinstance(m, Navigation)]
    assert len(navigations) == 3
    for nav in navigations:
        bias_grad = nav.conv2.bias.grad.view(4, 2)   # per frame position: (skip, keep)
        assert bias_grad.abs().sum() > 0
    # descending the term raises the keep logits of the salient frames against the others
    first = navigations[0]
    keep_minus_skip = (first.conv2.bias.grad[1::2] - first.conv2.bias.grad[0::2])
    salient_positions = z.sum(0) == 2          # salient in both videos
    plain_positions = z.sum(0) == 0            # salient in neither
    if salient_positions.any() and plain_positions.any():
        assert keep_minus_skip[salient_positions].max() <= keep_minus_skip[plain_positions].min()


class _Cfg:
    """What budget_warnings reads of a config."""

    def __init__(self, epochs=6, rt=0.5, rt_end=3, tolerance=None):
        from afnet.engine.schema import ObjectiveConfig, OptimConfig
        self.objective = ObjectiveConfig(target_ratio=rt, rt_begin=0, rt_end=rt_end, ratio_tolerance=tolerance)
        self.optim = OptimConfig(epochs=epochs)
        self.run_dir = "runs/x"


def test_budget_warnings_name_the_gap_and_afnet_calibrate():
    assert budget_warnings(_Cfg(), True, False, {"mean_kept_ratio": 0.53}) == []
    off = budget_warnings(_Cfg(), True, False, {"mean_kept_ratio": 1.0})
    assert len(off) == 1 and "1.00" in off[0] and "RT=0.5" in off[0] and "afnet calibrate" in off[0]
    assert "--config runs/x/config.yaml --checkpoint runs/x/checkpoints/best.ckpt" in off[0]
    assert "more than the budget" in off[0]
    short = budget_warnings(_Cfg(epochs=2, rt_end=3), True, False, {"mean_kept_ratio": 0.5})
    assert len(short) == 1 and "optim.epochs=2" in short[0] and "objective.rt_end=3" in short[0]
    assert budget_warnings(_Cfg(tolerance=0.2), True, False, {"mean_kept_ratio": 0.65}) == []
    assert budget_warnings(_Cfg(), False, False, {"mean_kept_ratio": 1.0}) == []   # fixed policy: no budget


def test_train_warns_when_the_run_ends_off_its_budget(tmp_path_factory, tmp_path):
    """The failure a new user met: the released all-keep bias and a short run keep every frame."""
    synth = tiny_synthetic(tmp_path_factory.getbasetemp())
    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(synth, tmp_path, **{
        "optim.epochs": 1, "objective.rt_begin": 0, "objective.rt_end": 2, "model.navigation_bias": "[1.0, 10.0]",
        "trainer.limit_train_batches": 1, "trainer.limit_val_batches": 1}))
    with pytest.warns(BudgetWarning) as caught:
        result = train(cfg)
    messages = [str(w.message) for w in caught if issubclass(w.category, BudgetWarning)]
    assert any("optim.epochs=1 ends before objective.rt_end=2" in m for m in messages)
    assert any("afnet calibrate" in m and "validation kept share is 1.00" in m for m in messages)
    assert result.warnings == messages
    assert (result.run_dir / "train.log").read_text().count("warning: ") == 2


def test_salient_regions_are_the_cells_of_largest_mean_saliency():
    saliency = torch.zeros(1, 2, 8, 8)
    saliency[0, 0, 4:, :4] = 1.0          # frame 0: bottom-left cell
    saliency[0, 1, :4, 4:] = 2.0          # frame 1: top-right cell, then (less) bottom-right
    saliency[0, 1, 4:, 4:] = 1.0
    z = salient_regions(saliency, 2, 0.25)
    assert z.shape == (1, 2, 2, 2)
    assert z[0, 0].tolist() == [[0, 0], [1, 0]] and z[0, 1].tolist() == [[0, 1], [0, 0]]
    assert salient_regions(saliency, 2, 0.5)[0, 1].tolist() == [[0, 1], [0, 1]]
    # a finer grid pools the same map: one region of 16 at RS 0.0625, at least one region always
    assert salient_regions(saliency, 4, 0.01).sum().item() == 2
    # ties (a blank frame) go to the earlier regions in raster order
    assert salient_regions(torch.zeros(1, 1, 4, 4), 2, 0.5)[0, 0].tolist() == [[1, 1], [0, 0]]


def test_pixel_saliency_finds_the_pixels_the_true_class_reads():
    # a linear "model" whose class 1 reads pixel (2, 3) of frame 0 only
    clip = torch.randn(1, 2, 3, 4, 4, requires_grad=True)
    logits = torch.stack([clip[0, 1, 0, 0, 0], 5.0 * clip[0, 0, 2, 2, 3]])[None]
    saliency = pixel_saliency(clip, logits, torch.tensor([1]))
    assert saliency.shape == (1, 2, 4, 4) and not saliency.requires_grad
    assert saliency[0, 0].argmax().item() == 2 * 4 + 3 and saliency[0, 0, 2, 3] > 0
    assert saliency[0, 0].flatten().topk(2).values[1] == 0 and saliency[0, 1, 0, 0] > 0
    logits.sum().backward()   # the graph was kept for the loss


def test_region_saliency_term_is_off_by_default_and_pulls_region_masks_to_the_salient_cells():
    torch.manual_seed(0)
    model = create_model("af_resnet_small", num_classes=4, num_frames=2, spatial=True, selection="all",
                         region_grid=(2, 2, 2), navigation_bias=(0.0, 1.0))
    model.train()
    clip = torch.randn(2, 2, 3, 32, 32, requires_grad=True)
    target = torch.tensor([1, 3])
    out = model(clip, temperature=1.0)
    saliency = pixel_saliency(clip, out.logits, target)
    common = dict(target_ratio=1.0, ratio_weight=0.0, with_ratio=False, regions=out.regions,
                  target_region_ratio=0.25, with_region_ratio=True)
    off = afnet_loss(out.logits, target, out.masks, **common, saliency=saliency)
    assert float(off.region_saliency_loss) == 0.0
    on = afnet_loss(out.logits, target, out.masks, **common, saliency=saliency, region_saliency_weight=2.0)
    gap = sum(((r - salient_regions(saliency, 2, 0.25)) ** 2).mean() for r in out.regions) / len(out.regions)
    assert torch.allclose(on.region_saliency_loss, gap) and torch.allclose(on.total, off.total + 2.0 * gap)
    model.zero_grad()
    on.region_saliency_loss.backward()
    spatial = [m for m in model.modules() if isinstance(m, SpatialNavigation)]
    assert spatial and all(any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
                           for m in spatial)
    with pytest.raises(ValueError, match="pixel saliency"):
        afnet_loss(out.logits, target, out.masks, **common, region_saliency_weight=1.0)


def test_shared_navigation_is_the_per_position_navigation_with_its_positions_tied():
    torch.manual_seed(0)
    shared = create_model("af_resnet_small", num_classes=4, num_frames=4, shared_navigation=True,
                          navigation_bias=(0.0, 1.0))
    per_position = create_model("af_resnet_small", num_classes=4, num_frames=4, navigation_bias=(0.0, 1.0))
    navigations = [m for m in shared.modules() if isinstance(m, Navigation)]
    assert len(navigations) == 3 and all(n.shared and n.conv2.weight.shape == (2, 2, 1, 1) for n in navigations)
    assert all(n.conv2.bias.tolist() == [0.0, 1.0] for n in navigations)
    # the same weights, tied across the 4 positions, give the same logits and masks
    state = shared.state_dict()
    for name, value in per_position.state_dict().items():
        if name.endswith("conv2.weight") and value.shape != state[name].shape:
            state[name] = state[name].repeat(4, 1, 1, 1)
        elif name.endswith("conv2.bias") and value.shape != state[name].shape:
            state[name] = state[name].repeat(4)
    per_position.load_state_dict(state)
    shared.eval(), per_position.eval()
    video = torch.randn(2, 4, 3, 32, 32)
    a, b = shared(video), per_position(video)
    assert torch.allclose(a.logits, b.logits, atol=1e-6)
    assert all(torch.equal(x, y) for x, y in zip(a.masks, b.masks))
    # recorded in checkpoints: the model rebuilds with it; refused where it is not built
    assert shared.model_args()["shared_navigation"] is True and "shared_navigation" not in per_position.model_args()
    with pytest.raises(ValueError, match="shared_navigation=true is an option of"):
        create_model("af_mobilenetv3", num_classes=4, num_frames=4, shared_navigation=True)
    with pytest.raises(ValueError, match="shared_navigation='yes'"):
        create_model("af_resnet_small", num_classes=4, num_frames=4, shared_navigation="yes")


def test_a_shared_navigation_starts_fresh_from_an_image_backbone(tmp_path):
    # the T=1 backbone's navigation (never trained, released bias) fits a shared one's shapes:
    # it is not loaded, so the video model starts at its own navigation_bias
    from afnet.checkpoint import load_checkpoint, save_checkpoint

    backbone = create_model("af_resnet_small", num_classes=4, num_frames=1, selection="all")
    save_checkpoint(tmp_path / "backbone.pt", backbone)
    video = create_model("af_resnet_small", num_classes=4, num_frames=8, shared_navigation=True,
                         navigation_bias=(0.0, 1.0))
    report = load_checkpoint(video, tmp_path / "backbone.pt", skip_classifier=True)
    assert report.is_backbone
    assert all(n.conv2.bias.tolist() == [0.0, 1.0] for n in video.modules() if isinstance(n, Navigation))
    assert any("navigation" in key for key in report.skipped)
