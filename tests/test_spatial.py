"""Spatial navigation (paper §3.3): region masks, region-sparse focal execution, FLOPs."""
import pytest
import torch

from afnet import count_flops, create_model
from afnet.models.layers import RegionLayout, fixed_region_mask, gather_regions
from afnet.runtime import prepare_for_inference
from tests.helpers import balanced, randomize

T = 4


def spatial_small(grid=(4, 2, 1), shift=True, **kwargs):
    torch.manual_seed(0)
    return create_model("af_resnet_small", num_classes=7, num_frames=T, shift=shift, spatial=True,
                        region_grid=grid, **kwargs)


def video(batch=2, size=64, seed=0):
    return torch.randn(batch, T, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("temporal", ["first", "block"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_region_sparse_equals_masked(shift, temporal, channels_last):
    """Sparse execution (regions gathered with their halo, computed, added back) gives the
    logits and choices of masked execution, borders included (grid 4 at 16x16: every region
    touches or nears an edge)."""
    x = video()
    model = balanced(spatial_small(shift=shift, temporal_navigation=temporal, grid=(4, 2, 2)), x, seed=2)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    sparse = model.configure(execution="sparse")(x)
    masked = model.configure(execution="masked")(x)
    for a, b in zip(sparse.masks + sparse.regions, masked.masks + masked.regions):
        assert torch.equal(a, b)
    kept = torch.stack([(m[..., None, None] * r).mean() for m, r in zip(masked.masks, masked.regions)])
    assert 0.05 < kept.mean() < 0.8  # the choices are mixed: some regions computed, some not
    torch.testing.assert_close(sparse.logits, masked.logits, atol=1e-4, rtol=1e-4)


def test_region_sparse_runs_regions_and_counts_fewer_flops():
    """With few regions kept the block takes the region path (checked through its FLOPs:
    below the frame-sparse count), and FLOPs fall as the region ratio falls."""
    model = spatial_small(grid=(4, 2, 1)).eval()
    x = video(batch=1)
    flops = {}
    for rs in (1.0, 0.5, 0.25):
        model.configure(selection="uniform", ratio=0.5, region_selection="center", region_ratio=rs,
                        execution="sparse")
        flops[rs] = count_flops(model, x)
    assert flops[1.0] > flops[0.5] > flops[0.25]
    model.configure(region_selection="all")
    assert count_flops(model, x) == pytest.approx(flops[1.0], rel=1e-3)


def test_af_resnet50_spatial_flops_fall_with_region_ratio():
    """The paper's setting: 224x224, grid 7 (regions 8, 4, 2 pixels in stages 1-3)."""
    model = create_model("af_resnet50", num_classes=200, num_frames=2, spatial=True).eval()
    x = torch.randn(1, 2, 3, 224, 224)
    dense = count_flops(model.configure(selection="all", region_selection="all", execution="sparse"), x)
    flops = [count_flops(model.configure(region_selection="random", region_ratio=rs), x) for rs in (0.6, 0.4)]
    assert dense > flops[0] > flops[1]
    masked = count_flops(model.configure(execution="masked"), x)
    assert masked >= dense  # masked computes every pixel (and the gates)
    # the ten spatial navigation modules (learned selection) cost 0.061 GFLOPs per frame, 2%
    learned = count_flops(model.configure(region_selection="navigation", region_ratio=None), x)
    assert (learned - dense) / 2 == pytest.approx(0.0614, abs=5e-4)


def test_region_gather_reads_halo_and_marks_outside():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    regions = torch.zeros(2, 2, 2)
    regions[1, 0, 1] = 1  # frame 1, top-right region (rows 0-3, cols 4-7)
    layout = RegionLayout.of(regions, torch.arange(2), (8, 8), count=1)
    patches, inside = gather_regions(x, layout, halo=1)
    assert patches.shape == (1, 1, 6, 6)
    assert torch.equal(patches[0, 0, 1:5, 1:5], x[1, 0, 0:4, 4:8])
    assert torch.equal(patches[0, 0, 1:6, 0], x[1, 0, 0:5, 3])        # left halo inside the image
    assert inside[0, 0, 0].sum() == 0 and inside[0, 0, :, 5].sum() == 0  # top row, right column outside
    assert inside[0, 0, 1:, :5].all()


def test_grid_must_divide_feature_map():
    model = spatial_small(grid=(3, 2, 1)).eval()
    with pytest.raises(ValueError, match=r"region grid 3x3 does not divide the 16x16 feature map"):
        model.configure(execution="masked", region_selection="center", region_ratio=0.5)(video(batch=1))


def test_gradients_reach_spatial_navigation():
    torch.manual_seed(0)
    model = spatial_small(navigation_bias=(0.0, 0.5)).train()
    out = model(video(), temperature=1.0)
    assert len(out.regions) == len(out.masks) == 3
    assert out.regions[0].shape == (2, T, 4, 4) and out.regions[2].shape == (2, T, 1, 1)
    (out.logits.square().sum() + sum(r.mean() for r in out.regions)).backward()
    spatial = [p for n, p in model.named_parameters() if ".spatial." in n]
    assert spatial and all(p.grad is not None and p.grad.abs().sum() > 0 for p in spatial)
    assert model.navigation.conv2.weight.grad.abs().sum() > 0  # the one temporal navigation too


def test_region_gradient_through_classification_alone():
    """The straight-through region mask carries the loss's gradient (not only the ratio's)."""
    torch.manual_seed(1)
    model = spatial_small(navigation_bias=(0.0, 0.5)).train()
    model(video()).logits.logsumexp(-1).sum().backward()
    assert model.layer1.spatial[0].conv2.weight.grad.abs().sum() > 0


def test_temporal_navigation_first_shares_one_mask():
    model = randomize(spatial_small(), nav_std=4.0).eval()
    assert model.temporal_navigation == "first" and model.layer1.navigation is None
    out = model(video())
    assert all(m is out.masks[0] for m in out.masks)
    per_block = spatial_small(temporal_navigation="block")
    assert not hasattr(per_block, "navigation") and len(per_block.layer1.navigation) == 1
    with pytest.raises(ValueError, match="temporal_navigation=.last.; accepted: block, first"):
        spatial_small(temporal_navigation="last")


def test_fixed_region_policies():
    g = torch.Generator().manual_seed(0)
    rnd = fixed_region_mask("random", 5, 7, 0.4, g, "cpu", torch.float32)
    assert rnd.shape == (5, 7, 7) and torch.equal(rnd.sum((1, 2)), torch.full((5,), 20.0))
    assert not torch.equal(rnd[0], rnd[1])  # drawn per frame
    centre = fixed_region_mask("center", 3, 7, 9 / 49, None, "cpu", torch.float32)
    expected = torch.zeros(7, 7)
    expected[2:5, 2:5] = 1
    assert torch.equal(centre[0], expected) and torch.equal(centre[2], expected)
    assert fixed_region_mask("center", 1, 4, 0.25, None, "cpu", torch.float32)[0, 1:3, 1:3].all()
    model = spatial_small().eval().configure(region_selection="random", region_ratio=0.5)
    a, b = model(video()), model(video())
    assert all(torch.equal(x, y) for x, y in zip(a.regions, b.regions))  # reproducible in eval


def test_region_selection_all_equals_temporal_only_model():
    """With every region selected, a spatial model computes what the same weights without
    spatial navigation compute (the spatial modules only add choices)."""
    torch.manual_seed(0)
    spatial = randomize(spatial_small(temporal_navigation="block"), nav_std=4.0).eval()
    plain = create_model("af_resnet_small", num_classes=7, num_frames=T, shift=True).eval()
    missing = plain.load_state_dict(spatial.state_dict(), strict=False)
    assert not missing.missing_keys and all(".spatial." in k for k in missing.unexpected_keys)
    x = video()
    a = spatial.configure(region_selection="all")(x)
    torch.testing.assert_close(a.logits, plain(x).logits)


def test_spatial_configuration_errors():
    with pytest.raises(ValueError, match="spatial navigation is implemented for af_resnet50"):
        create_model("af_mobilenetv3", num_classes=5, num_frames=T, spatial=True)
    plain = create_model("af_resnet_small", num_classes=5, num_frames=T)
    with pytest.raises(ValueError, match="needs spatial=true .the model is built without spatial navigation"):
        plain.configure(region_selection="center", region_ratio=0.5)
    with pytest.raises(ValueError, match="region_selection='center' needs a region_ratio"):
        spatial_small().configure(region_selection="center")
    with pytest.raises(ValueError, match=r"region_ratio must be in \(0, 1\]"):
        spatial_small().configure(region_selection="random", region_ratio=1.5)


def test_prepared_spatial_model_matches():
    """BN folding and channels-last keep the region-sparse forward equal; bf16 too, to its
    precision."""
    x = video()
    model = balanced(spatial_small(), x, seed=2)
    ref = model.configure(execution="masked")(x)
    prepared = prepare_for_inference(model.configure(execution="auto"))
    out = prepared(x)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-4, rtol=1e-4)
    # bf16 autocast: region-sparse and masked make the same choices (the navigation reads the
    # ample branch, computed alike) and agree to bf16 precision
    bf16 = prepare_for_inference(model, bf16=True)
    sparse, masked = bf16.configure(execution="sparse")(x), bf16.configure(execution="masked")(x)
    assert all(torch.equal(a, b) for a, b in zip(sparse.masks + sparse.regions, masked.masks + masked.regions))
    torch.testing.assert_close(sparse.logits, masked.logits, atol=0.05, rtol=0.02)


@pytest.mark.parametrize("selection", ["uniform", "all"])
@pytest.mark.parametrize("region_ratio", [0.3, 0.95])
def test_fixed_region_policy_sparse_equals_masked(region_ratio, selection):
    """Few regions: the region path; most regions: computing the kept frames whole and
    gating them is cheaper (halo overhead), and both equal masked execution."""
    x = video()
    model = balanced(spatial_small(grid=(4, 2, 2)), x, seed=2)
    model.configure(selection=selection, ratio=0.5 if selection == "uniform" else None, region_selection="random",
                    region_ratio=region_ratio)
    sparse = model.configure(execution="sparse")(x)
    masked = model.configure(execution="masked")(x)
    torch.testing.assert_close(sparse.logits, masked.logits, atol=1e-4, rtol=1e-4)
