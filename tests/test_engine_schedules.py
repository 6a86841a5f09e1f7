"""Objective, schedules and parameter groups against hand-computed values."""
import math

import pytest
import torch

import afnet
from afnet.engine import OptimConfig
from afnet.engine.objective import afnet_loss
from afnet.engine.optim import build_optimizer, parameter_groups
from afnet.engine.schedules import lr_factor, target_ratio, temperature


@pytest.mark.parametrize("epoch, expected", [(0, 1.0), (9, 1.0), (10, 0.75), (14, 0.75), (15, 0.5), (19, 0.5),
                                             (20, 0.25), (54, 0.25)])
def test_target_ratio_steps_down_to_rt(epoch, expected):
    # RT=0.25, paper's rt_begin 10 / rt_end 20: 1 -> RT+2/3(1-RT) -> RT+1/3(1-RT) (from 15) -> RT
    assert target_ratio(epoch, 0.25, 10, 20) == pytest.approx(expected)


def test_temperature_decays_exponentially_per_iteration():
    spe, t_end = 100, 50
    assert temperature(0, spe, t_end) == pytest.approx(1.0)
    assert temperature(25 * spe, spe, t_end) == pytest.approx(0.1)       # halfway: sqrt(0.01)
    assert temperature(50 * spe, spe, t_end) == pytest.approx(0.01)
    assert temperature(54 * spe, spe, t_end) == pytest.approx(0.01)      # held after t_end
    assert temperature(1, spe, t_end) == pytest.approx(0.01 ** (1 / 5000))


def test_lr_step_cosine_and_warmup():
    kw = dict(schedule="step", epochs=55, lr_steps=[25, 45])
    assert lr_factor(24 * 10 + 9, 10, **kw) == pytest.approx(1.0)
    assert lr_factor(25 * 10, 10, **kw) == pytest.approx(0.1)
    assert lr_factor(45 * 10, 10, **kw) == pytest.approx(0.01)
    cos = dict(schedule="cosine", epochs=10)
    assert lr_factor(0, 10, **cos) == pytest.approx(1.0)
    assert lr_factor(50, 10, **cos) == pytest.approx(0.5)
    assert lr_factor(25, 10, **cos) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(4, 10, **kw, warmup_epochs=1) == pytest.approx(0.5)   # (4+1)/10
    assert lr_factor(10, 10, **kw, warmup_epochs=1) == pytest.approx(1.0)


def test_loss_is_cross_entropy_plus_lambda_mean_squared_ratio_gap():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 0])
    masks = [torch.tensor([[1.0, 1.0], [1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 0.0]])]  # r = 0.75, 0.25
    ce = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2
    ratio = ((0.75 - 0.5) ** 2 + (0.25 - 0.5) ** 2) / 2
    loss = afnet_loss(logits, target, masks, target_ratio=0.5, ratio_weight=0.5)
    assert loss.classification.item() == pytest.approx(ce, rel=1e-6)
    assert loss.ratio_loss.item() == pytest.approx(ratio)
    assert loss.total.item() == pytest.approx(ce + 0.5 * ratio, rel=1e-6)
    assert loss.kept.tolist() == [0.75, 0.25]
    fixed = afnet_loss(logits, target, masks, target_ratio=0.5, ratio_weight=0.5, with_ratio=False)
    assert fixed.total.item() == pytest.approx(ce, rel=1e-6)


def test_multi_label_loss_is_bce_with_logits():
    logits = torch.tensor([[0.0, 2.0]])
    target = torch.tensor([[1.0, 0.0]])
    expected = (math.log(2) + math.log(1 + math.exp(2.0))) / 2
    assert afnet_loss(logits, target, [], target_ratio=1.0, ratio_weight=0.5).total.item() == pytest.approx(expected)


def test_parameter_groups_decay_and_lr_multipliers():
    model = afnet.create_model("af_resnet_small", num_classes=5, num_frames=4)
    groups = {g["name"]: g for g in parameter_groups(model, weight_decay=5e-4, navigation_lr_mult=10.0,
                                                      classifier_lr_mult=(5.0, 10.0))}
    ids = lambda name: {id(p) for p in groups[name]["params"]}  # noqa: E731
    fc = model.classifier()
    assert ids("classifier_weight") == {id(fc.weight)} and groups["classifier_weight"]["lr_mult"] == 5.0
    assert ids("classifier_bias") == {id(fc.bias)} and groups["classifier_bias"]["lr_mult"] == 10.0
    assert groups["classifier_bias"]["weight_decay"] == 0.0
    nav = {id(p) for p in model.navigation_parameters()}
    assert ids("navigation") | ids("navigation_no_decay") == nav
    assert groups["navigation"]["lr_mult"] == 10.0 and groups["navigation"]["weight_decay"] == 5e-4
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert bn - nav - ids("backbone_no_decay") == set()
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["backbone"]["weight_decay"] == 5e-4
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))
    opt = build_optimizer(model, OptimConfig(lr=0.01), (5.0, 10.0))
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["navigation"] == pytest.approx(0.1) and lrs["classifier_weight"] == pytest.approx(0.05)
    assert opt.defaults["momentum"] == 0.9


def test_lr_schedule_is_a_lambda_lr_stepped_per_iteration(tmp_path):
    """The optimiser's learning rate follows lr_factor step by step (warm-up included, which
    depends on the epoch's length), so Lightning's LearningRateMonitor reports it."""
    from afnet.engine import load_config
    from afnet.engine.module import AFNetModule
    from tests.helpers import SYNTHETIC_CONFIG

    cfg = load_config(SYNTHETIC_CONFIG, ["optim.warmup_epochs=1", "optim.schedule=step", "optim.lr_steps=[1]",
                                        "optim.lr=0.1"])
    module = AFNetModule(afnet.create_model("af_resnet_small", num_classes=8, num_frames=8), cfg)
    conf = module.configure_optimizers()                 # before the epoch's length is known
    optimizer, scheduler = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    module.steps_per_epoch = lambda: 4                   # then the trainer knows it: 4 steps
    module.lr_schedulers = lambda: scheduler
    module.on_train_start()
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["lr_mult"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1 * f for f in (0.25, 0.5, 0.75, 1.0, 0.1, 0.1)])
