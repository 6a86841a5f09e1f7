"""Training with spatial navigation (paper §3.3): configs, the region term, the RS schedule,
a short run on the synthetic data, errors that name the key."""
import csv
import math

import pytest
import torch

import afnet
from afnet.checkpoint import read_checkpoint
from afnet.engine import ConfigError, evaluate, load_config, train
from afnet.engine.module import AFNetModule
from afnet.engine.objective import afnet_loss
from afnet.engine.run import build_model
from afnet.models.layers import AFStage, Navigation, SpatialNavigation
from tests.helpers import REPO, SYNTHETIC_CONFIG, tiny_overrides, tiny_synthetic

ACTIVITYNET = REPO / "configs" / "activitynet"
# file -> (temporal selection, RT, region selection, region ratio, RS)
SPATIAL_CONFIGS = {
    **{f"fig4_afnet_rs04_rt{rt:02d}.yaml": (None, rt / 10, None, None, 0.4) for rt in (6, 8, 10)},
    **{f"table5_spatial_navigation_r{int(r * 100):03d}.yaml": ("all", 1.0, None, None, r) for r in (0.25, 0.5, 0.75)},
    **{f"table5_spatial_{p}_r{int(r * 100):03d}.yaml": ("all", 1.0, p, r, 1.0)
       for p in ("random", "center") for r in (0.25, 0.5, 0.75)},
}

# the engine tests' 28-pixel crops of tiny_synthetic (tests.helpers.tiny_overrides): focal maps 7, 4, 2
SPATIAL_28 = ("data.input_size=28", "model.spatial=true", "model.region_grid=[7, 2, 1]")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return tiny_synthetic(tmp_path_factory.getbasetemp())


@pytest.mark.parametrize("name", sorted(SPATIAL_CONFIGS))
def test_spatial_configs_resolve_and_build(name):
    selection, rt, region_selection, region_ratio, rs = SPATIAL_CONFIGS[name]
    cfg = load_config(ACTIVITYNET / name)
    m, o = cfg.model, cfg.objective
    assert (m.name, m.spatial, m.region_grid, cfg.data.num_frames) == ("af_resnet50", True, 7, 12)
    assert (m.selection, o.target_ratio, m.region_selection, m.region_ratio, o.target_region_ratio) \
        == (selection, rt, region_selection, region_ratio, rs)
    assert (o.rt_begin, o.rt_end, o.ratio_weight, cfg.optim.lr) == (10, 20, 0.5, 0.01)
    m.name, m.pretrained = "af_resnet_small", None   # the same options on the small variant
    model, _ = build_model(cfg)
    assert model.spatial and model.region_grid == (7, 7, 7) and model.temporal_navigation == "first"
    assert model.selection == (selection or "navigation") and model.region_ratio == region_ratio
    assert model.region_selection == (region_selection or "navigation")


def test_table4_row_builds_af_resnet50_with_spatial_navigation():
    cfg = load_config(ACTIVITYNET / "fig4_afnet_rs04_rt08.yaml", ["model.pretrained=null"])
    model, _ = build_model(cfg)
    assert model.arch == "af_resnet50" and model.num_frames == 12 and model.num_classes == 200
    assert sum(isinstance(m, SpatialNavigation) for m in model.modules()) == 2 + 3 + 5   # one per focal block
    assert isinstance(model.navigation, Navigation) and model.layer1.navigation is None


def test_focal_map_sizes_match_the_model():
    model = afnet.create_model("af_resnet_small", num_classes=3, num_frames=2).eval()
    for size in (28, 32, 50, 224):
        seen = []
        hooks = [s.focal[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[-1]))
                 for s in model.modules() if isinstance(s, AFStage)]
        with torch.no_grad():
            model(torch.randn(1, 2, 3, size, size))
        for h in hooks:
            h.remove()
        assert seen == model.focal_map_sizes(size)


def test_region_term_is_lambda_s_mean_squared_region_gap():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 0])
    masks = [torch.tensor([[1.0, 1.0], [1.0, 0.0]])] * 2                              # r = 0.75 twice
    regions = [torch.tensor([1.0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0]).view(2, 2, 2, 2),   # s = 0.75
               torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]).view(2, 2, 2, 2)]   # s = 0.125
    ce = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2
    ratio = (0.75 - 0.5) ** 2
    region = ((0.75 - 0.4) ** 2 + (0.125 - 0.4) ** 2) / 2
    kw = dict(target_ratio=0.5, ratio_weight=0.5, regions=regions, target_region_ratio=0.4)
    loss = afnet_loss(logits, target, masks, **kw, region_ratio_weight=2.0, with_region_ratio=True)
    assert loss.ratio_loss.item() == pytest.approx(ratio) and loss.region_loss.item() == pytest.approx(region)
    assert loss.total.item() == pytest.approx(ce + 0.5 * ratio + 2.0 * region, rel=1e-6)
    assert loss.selected.tolist() == [0.75, 0.125] and loss.kept.tolist() == [0.75, 0.75]
    same_lambda = afnet_loss(logits, target, masks, **kw, with_region_ratio=True)        # null: ratio_weight
    assert same_lambda.total.item() == pytest.approx(ce + 0.5 * ratio + 0.5 * region, rel=1e-6)
    fixed = afnet_loss(logits, target, masks, **kw, region_ratio_weight=2.0, with_region_ratio=False)
    assert fixed.region_loss.item() == 0.0 and fixed.total.item() == pytest.approx(ce + 0.5 * ratio, rel=1e-6)
    assert fixed.selected.tolist() == [0.75, 0.125]                                      # still reported
    plain = afnet_loss(logits, target, masks, target_ratio=0.5, ratio_weight=0.5)
    assert plain.region_loss.item() == 0.0 and len(plain.selected) == 0


def test_rs_steps_down_like_rt_and_fixed_policies_have_no_region_term(synth):
    cfg = load_config(SYNTHETIC_CONFIG, [f"data.root={synth}", *SPATIAL_28,
                                         "objective.target_region_ratio=0.4", "objective.rs_begin=2",
                                         "objective.rs_end=6", "objective.rt_begin=10", "objective.rt_end=20"])
    module = AFNetModule(build_model(cfg)[0], cfg)
    rs = [module.schedule(epoch * 10, 10)["target_region_ratio"] for epoch in range(8)]
    assert rs == pytest.approx([1.0, 1.0, 0.8, 0.8, 0.6, 0.6, 0.4, 0.4])   # RS + 2/3 (1 - RS), RS + 1/3 (1 - RS)
    assert module.schedule(60, 10)["target_ratio"] == 1.0 and module.with_region_ratio and module.with_ratio
    cfg.objective.rs_begin = cfg.objective.rs_end = None                       # null: the RT epochs
    assert [module.schedule(e * 10, 10)["target_region_ratio"] for e in (9, 10, 15, 20)] == pytest.approx(
        [1.0, 0.8, 0.6, 0.4])

    table5 = load_config(SYNTHETIC_CONFIG, [f"data.root={synth}", *SPATIAL_28,
                                            "model.selection=all"])
    module = AFNetModule(build_model(table5)[0], table5)   # spatial navigation learned, frames all kept
    assert module.with_region_ratio and not module.with_ratio
    model = module.model
    assert all(p.requires_grad for m in model.modules() if isinstance(m, SpatialNavigation) for p in m.parameters())
    assert not any(p.requires_grad for p in model.navigation.parameters())
    fixed = load_config(SYNTHETIC_CONFIG, [f"data.root={synth}", *SPATIAL_28,
                                           "model.region_selection=center", "model.region_ratio=0.5"])
    module = AFNetModule(build_model(fixed)[0], fixed)
    assert not module.with_region_ratio and module.with_ratio
    assert not any(p.requires_grad for m in module.model.modules() if isinstance(m, SpatialNavigation)
                   for p in m.parameters())
    plain = load_config(SYNTHETIC_CONFIG, [f"data.root={synth}", "data.input_size=28"])
    assert "target_region_ratio" not in AFNetModule(build_model(plain)[0], plain).schedule(0, 10)


def test_spatial_training_logs_region_ratios_and_trains_the_spatial_navigation(synth, tmp_path):
    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(synth, tmp_path, **{
        "model.spatial": "true", "data.input_size": 32, "model.region_grid": "[4, 2, 1]",   # maps 8, 4, 2
        "model.navigation_bias": "[0, 2]", "objective.target_region_ratio": 0.5, "optim.epochs": 1}))
    result = train(cfg)
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    train_rows = [r for r in rows if r.get("train/loss")]
    assert len(train_rows) == 6 and all(0 < float(r["train/region_ratio"]) <= 1 for r in train_rows)
    assert all(float(r["train/region_ratio_loss"]) >= 0 and r["schedule/target_region_ratio"] for r in train_rows)
    val = [r for r in rows if r.get("val/mean_region_ratio")]
    assert val and all(val[0][f"val/{k}_{n}"] for k in ("region_ratio", "kept_ratio") for n in range(3))
    assert len(result.metrics["region_ratio"]) == 3 and 0 < result.metrics["mean_region_ratio"] <= 1

    ckpt = read_checkpoint(result.last_checkpoint)
    assert set(ckpt["schedule"]) == {"lr", "target_ratio", "target_region_ratio", "temperature"}
    state = ckpt["state_dict"]
    for stage in (1, 2, 3):   # the W4 bias (no weight decay) moved from its start: gradients reached it
        assert not torch.equal(state[f"layer{stage}.spatial.0.conv2.bias"], torch.tensor([0.0, 2.0]))
    assert state["layer3.spatial.0.conv2.weight"].shape == (2, 16, 1, 1)  # W4 on the 16 hidden channels
    metrics = evaluate(cfg, result.best_checkpoint)
    assert metrics["region_ratio"] == pytest.approx(result.metrics["region_ratio"])


def test_spatial_model_fine_tunes_from_an_image_backbone(synth, tmp_path):
    """A backbone with per-block navigation loads into a model whose temporal navigation is at
    the first layer; every navigation module (temporal and spatial) starts fresh."""
    backbone = afnet.create_model("af_resnet_small", num_classes=1000, num_frames=1)
    torch.save({"state_dict": {f"module.{k}": v for k, v in backbone.state_dict().items()}}, tmp_path / "in.pth.tar")
    cfg = load_config(SYNTHETIC_CONFIG, [f"data.root={synth}", *SPATIAL_28,
                                         f"model.pretrained={tmp_path / 'in.pth.tar'}"])
    model, mult = build_model(cfg)
    assert mult == [5.0, 10.0]
    assert torch.equal(model.layer1.focal[0].conv1.weight, backbone.layer1.focal[0].conv1.weight)


@pytest.mark.parametrize("overrides, words", [
    (["model.region_selection=navigation"], "model.region_selection='navigation' needs model.spatial=true"),
    (["model.region_ratio=0.5"], "model.region_ratio=0.5 needs model.spatial=true"),
    (["objective.target_region_ratio=0.4"], "objective.target_region_ratio=0.4 needs model.spatial=true"),
    (["model.spatial=true", "model.name=tsn_resnet_small"],
     "model.spatial=true: spatial navigation is implemented for af_resnet50, af_resnet101, af_resnet_small; "
     "got model.name='tsn_resnet_small'"),
    (["model.temporal_navigation=last"], "model.temporal_navigation='last'; accepted: block, first or null"),
    (["model.temporal_navigation=first", "model.name=af_mobilenetv3"],
     "model.temporal_navigation='first' is an option"),
    (["model.spatial=true", "model.region_selection=crop"], "model.region_selection='crop'; accepted: navigation"),
    (["model.spatial=true", "model.region_selection=random"],
     "model.region_selection='random' needs a model.region_ratio in (0, 1]"),
    (["model.spatial=true", "model.region_ratio=1.5"], "model.region_ratio must be in (0, 1], got 1.5"),
    (["model.region_grid=[4, 2]"], "model.region_grid=[4, 2]; accepted: a positive integer, or a list of 3"),
    (["model.region_grid=abc"], "model.region_grid='abc'; accepted: a positive integer, or a list of 3"),
    (["model.region_grid=[4, 2, 1]"], "model.region_grid=[4, 2, 1] needs model.spatial=true"),
    (["model.spatial=true", "model.region_grid=3"],
     "model.region_grid=3 does not divide the focal maps at data.input_size=28 (sides [7, 4, 2]; stage 1: 3 on 7"),
    (["objective.target_region_ratio=0"], "objective.target_region_ratio=0 is outside (0, 1]"),
    (["objective.region_ratio_weight=-1"], "objective.region_ratio_weight=-1; accepted: >= 0 or null"),
    (["objective.rs_begin=5", "objective.rs_end=2"], "objective.rs_begin=5, rs_end=2"),
    (["objective.rs_begin=5"], "objective.rs_begin=5, rs_end=3"),   # rs_end null: rt_end of the config
])
def test_bad_spatial_keys_are_rejected_naming_the_key(synth, overrides, words):
    with pytest.raises(ConfigError) as info:
        load_config(SYNTHETIC_CONFIG, [f"data.root={synth}", "data.input_size=28", *overrides])
    assert words in str(info.value)
