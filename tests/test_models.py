"""The model zoo's interface, fidelity figures and execution equivalences."""
import pytest
import torch

import afnet
from afnet import count_flops, count_params, create_model, list_models
from tests.helpers import randomize

AF_MODELS = ["af_resnet50", "af_resnet101", "af_mobilenetv3", "af_resnet_small", "nav_resnet50", "nav_resnet_small"]
BASELINES = ["tsn_resnet50", "tsn_resnet101", "tsm_resnet50", "tsm_resnet101", "tsn_mobilenetv3",
             "tsm_mobilenetv3", "tsn_resnet_small", "tsm_resnet_small"]
NAV_POINTS = {"af_resnet50": 10, "af_resnet101": 27, "af_mobilenetv3": 5, "af_resnet_small": 3, "nav_resnet50": 10,
              "nav_resnet_small": 3}


def test_list_models_has_the_zoo():
    assert set(AF_MODELS + BASELINES) <= set(list_models())


@pytest.mark.parametrize("name", AF_MODELS + BASELINES)
def test_interface_shapes(name):
    t = 3
    model = create_model(name, num_classes=7, num_frames=t).eval()
    video = torch.randn(2, t, 3, 64, 80)
    with torch.no_grad():
        out = model(video)
    assert out.logits.shape == (2, 7)
    assert torch.isfinite(out.logits).all()
    assert len(out.masks) == NAV_POINTS.get(name, 0)
    for m in out.masks:
        assert m.shape == (2, t)
        assert set(m.unique().tolist()) <= {0.0, 1.0}
    # a fresh navigation keeps every frame (bias 1.0 skip, 10.0 keep)
    assert all(bool((m == 1).all()) for m in out.masks)


@pytest.mark.parametrize("name,frames,classes,kwargs,gflops,params", [
    ("af_resnet50", 1, 1000, {"selection": "all"}, 2.89, 24.90),
    ("af_resnet101", 1, 1000, {"selection": "all"}, 4.98, 35.89),
    ("af_mobilenetv3", 1, 1000, {"selection": "all"}, 0.19, 5.56),
    ("tsn_resnet50", 8, 174, {}, 32.7, None),
    ("af_resnet50", 12, 174, {"shift": True, "selection": "all"}, 34.6, None),
    ("af_resnet50", 12, 174, {"shift": True, "selection": "uniform", "ratio": 0.4}, 27.3, None),
])
def test_fidelity_figures(name, frames, classes, kwargs, gflops, params):
    """GFLOPs (multiply-accumulates) per video and trainable parameters, as read off the
    authors' code; torch's counter and their formula agree within 0.5%."""
    model = create_model(name, num_classes=classes, num_frames=frames, **kwargs).eval()
    measured = count_flops(model, torch.randn(1, frames, 3, 224, 224))
    assert measured == pytest.approx(gflops, rel=0.005 if gflops > 1 else 0.03)
    if params is not None:
        assert count_params(model) / 1e6 == pytest.approx(params, abs=0.005)


@pytest.mark.parametrize("name", ["af_resnet_small", "af_mobilenetv3", "nav_resnet_small"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_sparse_equals_masked(name, channels_last):
    torch.manual_seed(0)
    model = randomize(create_model(name, num_classes=5, num_frames=8, shift=True)).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    video = torch.randn(3, 8, 3, 64, 64)
    with torch.no_grad():
        sparse = model.configure(execution="sparse")(video)
        masked = model.configure(execution="masked")(video)
    kept = torch.stack([m.mean() for m in sparse.masks])
    assert (kept > 0).any() and (kept < 1).any(), "the test needs some frames kept and some skipped"
    for a, b in zip(sparse.masks, masked.masks):
        assert torch.equal(a, b)
    torch.testing.assert_close(sparse.logits, masked.logits, rtol=1e-4, atol=1e-5)


def test_sparse_counts_fewer_flops_as_ratio_falls():
    model = create_model("af_resnet_small", num_classes=5, num_frames=8, selection="uniform", ratio=1.0).eval()
    video = torch.randn(2, 8, 3, 64, 64)
    flops = {}
    for ratio in (1.0, 0.5, 0.25):
        flops[ratio] = count_flops(model.configure(ratio=ratio, execution="sparse"), video)
    masked = count_flops(model.configure(ratio=0.25, execution="masked"), video)
    assert flops[1.0] > flops[0.5] > flops[0.25]
    assert masked == pytest.approx(flops[1.0], rel=1e-6)  # masked computes every frame


def test_skipped_frame_is_residual_plus_f_of_zero():
    """A skipped frame's focal output is residual + F(0), with F(0) carrying the BN shifts."""
    from afnet.models.resnet import Bottleneck

    block = randomize(Bottleneck(32, 32, num_frames=4, groups=2, shortcut="conv", last_relu=False)).eval()
    x = torch.randn(4, 32, 8, 8)
    keep = torch.tensor([1.0, 0.0, 1.0, 0.0])
    with torch.no_grad():
        out = block(x, keep, sparse=True)
        f0 = block.body(torch.zeros(1, 32, 8, 8))
    assert f0.abs().max() > 0.1
    torch.testing.assert_close(out[1], x[1] + f0[0])
    torch.testing.assert_close(out[0], x[0] + block.body(x[:1])[0])


def test_eval_is_deterministic():
    model = randomize(create_model("af_resnet_small", num_classes=5, num_frames=6)).eval()
    video = torch.randn(2, 6, 3, 64, 64)
    with torch.no_grad():
        a, b = model(video), model(video)
    assert torch.equal(a.logits, b.logits)
    assert all(torch.equal(x, y) for x, y in zip(a.masks, b.masks))


def test_train_mode_gumbel_gradients_reach_navigation():
    torch.manual_seed(0)
    model = randomize(create_model("af_resnet_small", num_classes=5, num_frames=4), nav_std=0.5).train()
    out = model(torch.randn(2, 4, 3, 64, 64), temperature=0.5)
    for m in out.masks:
        assert set(m.detach().unique().tolist()) <= {0.0, 1.0}  # hard, straight-through
    (out.logits.sum() + sum(m.sum() for m in out.masks)).backward()
    nav = model.navigation_parameters()
    assert len(nav) == 3 * 5  # conv1, bn1 (weight, bias), conv2 (weight, bias) at 3 points
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in nav)


def test_train_mode_noise_varies_the_choice():
    torch.manual_seed(0)
    model = randomize(create_model("af_resnet_small", num_classes=5, num_frames=8), nav_std=0.3).train()
    video = torch.randn(2, 8, 3, 64, 64)
    with torch.no_grad():
        a, b = model(video, temperature=1.0), model(video, temperature=1.0)
    assert any(not torch.equal(x, y) for x, y in zip(a.masks, b.masks))


def test_sparse_execution_refused_in_training():
    model = create_model("af_resnet_small", num_classes=5, num_frames=4, execution="sparse").train()
    with pytest.raises(ValueError, match="inference"):
        model(torch.randn(1, 4, 3, 64, 64))


@pytest.mark.parametrize("policy", ["uniform", "random", "normal"])
@pytest.mark.parametrize("ratio,kept", [(0.25, 3), (0.5, 6), (0.75, 9), (1.0, 12)])
def test_fixed_policies_keep_round_ratio_t(policy, ratio, kept):
    model = create_model("af_resnet_small", num_classes=5, num_frames=12, selection=policy, ratio=ratio).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 12, 3, 32, 32))
    for m in out.masks:
        assert (m.sum(dim=1) == kept).all()
    with torch.no_grad():
        again = model(torch.randn(3, 12, 3, 32, 32))
    assert all(torch.equal(x, y) for x, y in zip(out.masks, again.masks))  # reproducible evaluation


def test_uniform_policy_picks_equal_steps():
    model = create_model("af_resnet_small", num_classes=5, num_frames=8, selection="uniform", ratio=0.5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 8, 3, 32, 32))
    assert out.masks[0][0].nonzero().flatten().tolist() == [1, 3, 5, 7]


def test_soft_selection_weights_every_frame():
    model = randomize(create_model("af_resnet_small", num_classes=5, num_frames=4, selection="soft"), nav_std=0.5)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 4, 3, 32, 32))
    w = torch.stack(out.masks)
    assert ((w > 0) & (w < 1)).all()
    with pytest.raises(ValueError, match="soft"):
        model.configure(execution="sparse")


# ------------------------------------------------------------------ bad input
def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="known models: .*af_resnet50"):
        create_model("af_resnet18", num_classes=5, num_frames=8)


@pytest.mark.parametrize("shape,match", [
    ((4, 3, 32, 32), "rank 5"),
    ((1, 4, 1, 32, 32), "3 colour channels"),
    ((1, 6, 3, 32, 32), "num_frames=4"),
])
def test_bad_video_tensor(shape, match):
    model = create_model("af_resnet_small", num_classes=5, num_frames=4).eval()
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))


def test_integer_video_rejected():
    model = create_model("af_resnet_small", num_classes=5, num_frames=4).eval()
    with pytest.raises(ValueError, match="float"):
        model(torch.zeros(1, 4, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("ratio", [0, 0.0, -0.1, 1.5, float("nan")])
def test_ratio_outside_unit_interval(ratio):
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\]"):
        create_model("af_resnet_small", num_classes=5, num_frames=4, selection="uniform", ratio=ratio)


def test_fixed_policy_needs_ratio_and_baseline_has_no_selection():
    with pytest.raises(ValueError, match="needs a ratio"):
        create_model("af_resnet_small", num_classes=5, num_frames=4, selection="random")
    with pytest.raises(ValueError, match="no focal branch"):
        create_model("tsn_resnet_small", num_classes=5, num_frames=4, selection="uniform", ratio=0.5)


def test_public_api():
    assert callable(afnet.create_model) and callable(afnet.load_checkpoint) and callable(afnet.count_flops)


def test_navigation_bias_is_configurable():
    model = create_model("af_resnet_small", num_classes=5, num_frames=4, navigation_bias=(0.0, 1.0))
    nav = model.layer1.navigation[0]
    assert nav.conv2.bias[0::2].tolist() == [0.0] * 4 and nav.conv2.bias[1::2].tolist() == [1.0] * 4
    default = create_model("af_resnet_small", num_classes=5, num_frames=4).layer1.navigation[0]
    assert default.conv2.bias[0::2].tolist() == [1.0] * 4 and default.conv2.bias[1::2].tolist() == [10.0] * 4
    with pytest.raises(ValueError, match="keep > skip"):
        create_model("af_resnet_small", num_classes=5, num_frames=4, navigation_bias=(2.0, 1.0))


def test_static_k_keeps_exactly_k_frames_by_margin_and_sparse_equals_masked():
    """selection="navigation" with a ratio: in eval, exactly round(ratio * T) frames per
    video and point, those of largest keep-minus-skip margin; training stays Gumbel."""
    from afnet.models.layers import Navigation, static_k_keep

    logits = torch.tensor([[[0.0, 1.0], [0.0, -2.0], [0.0, 3.0], [1.0, 0.5]],
                           [[2.0, 0.0], [0.0, 0.1], [5.0, 0.0], [0.0, 0.0]]])
    # margins: [1, -2, 3, -0.5] and [-2, 0.1, -5, 0]: the two largest
    assert static_k_keep(logits, 0.5).tolist() == [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]
    assert static_k_keep(logits, 0.1).sum(1).tolist() == [1.0, 1.0]   # at least one frame
    torch.manual_seed(0)
    sparse = afnet.create_model("af_resnet_small", num_classes=5, num_frames=8, ratio=0.25).eval()
    for m in sparse.modules():
        if isinstance(m, Navigation):
            m.conv2.weight.data.normal_(0, 3)
    masked = afnet.create_model("af_resnet_small", num_classes=5, num_frames=8, ratio=0.25, execution="masked").eval()
    masked.load_state_dict(sparse.state_dict())
    x = torch.randn(3, 8, 3, 32, 32)
    a, b = sparse(x), masked(x)
    assert all(m.sum(1).tolist() == [2.0, 2.0, 2.0] for m in a.masks)
    assert all(torch.equal(m, n) for m, n in zip(a.masks, b.masks))
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    assert len({tuple(m[0].tolist()) for m in a.masks} | {tuple(m[1].tolist()) for m in a.masks}) > 1  # by content
    with torch.no_grad():  # keep logit 20 over skip for every frame: Gumbel keeps them all
        for m in sparse.modules():
            if isinstance(m, Navigation):
                m.conv2.weight.zero_()
                m.conv2.bias[0::2], m.conv2.bias[1::2] = 0.0, 20.0
    assert all(m.sum(1).tolist() == [2.0] * 3 for m in sparse(x).masks)                        # eval: static-k
    assert all(m.sum(1).tolist() == [8.0] * 3 for m in sparse.train()(x, temperature=1.0).masks)  # train: Gumbel


def test_given_frames_replace_every_points_selection():
    """forward(video, keep=...) computes exactly the given frames at every navigation point:
    the same output as a fixed policy that picks those frames, sparse or masked, spatial
    models too; baselines and malformed masks are refused with the reason."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 3, 32, 32)
    uniform = afnet.create_model("af_resnet_small", num_classes=5, num_frames=8, selection="uniform", ratio=0.5).eval()
    want = uniform(x)
    keep = want.masks[0]
    assert keep.sum(1).tolist() == [4.0, 4.0]
    for execution in ("sparse", "masked"):
        learned = afnet.create_model("af_resnet_small", num_classes=5, num_frames=8, execution=execution).eval()
        learned.load_state_dict(uniform.state_dict())
        got = learned(x, keep=keep)
        assert all(torch.equal(m, keep) for m in got.masks)
        assert torch.allclose(got.logits, want.logits, atol=1e-5)
        assert not torch.allclose(learned(x).logits, got.logits, atol=1e-3)  # its own choice (all) differs
    spatial = afnet.create_model("af_resnet_small", num_classes=5, num_frames=8, spatial=True, region_grid=2).eval()
    out = spatial(x, keep=keep)
    assert all(torch.equal(m, keep) for m in out.masks)
    with pytest.raises(ValueError, match="no navigation points"):
        afnet.create_model("tsn_resnet_small", num_classes=5, num_frames=8)(x, keep=keep)
    with pytest.raises(ValueError, match=r"\(B, T\) = \(2, 8\), got \(2, 4\)"):
        uniform(x, keep=keep[:, :4])
    with pytest.raises(ValueError, match="0 \\(skip\\) or 1"):
        uniform(x, keep=keep * 0.5)
