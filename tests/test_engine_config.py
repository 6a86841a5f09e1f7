"""Configs: every experiment file loads and resolves; overrides; errors name the key."""
import subprocess
import sys

import pytest

import afnet
from afnet.engine import Config, ConfigError, DataConfig, ModelConfig, dump_config, load_config, train
from tests.helpers import REPO, SYNTHETIC_CONFIG, tiny_overrides, tiny_synthetic

EXPERIMENTS = sorted(p for p in (REPO / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_config_loads_and_resolves(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config) and isinstance(cfg.model, ModelConfig) and isinstance(cfg.data, DataConfig)
    assert cfg.data.num_frames >= 1 and cfg.data.num_classes >= 1 and cfg.data.input_size >= 1
    assert cfg.model.name in afnet.list_models()
    model = afnet.create_model(cfg.model.name, num_classes=cfg.data.num_classes, num_frames=cfg.data.num_frames,
                               **cfg.model.options())   # the typed config is what create_model takes
    assert model.arch == cfg.model.name


@pytest.mark.parametrize("name, frames, rt, model, selection", [
    ("sthv1/table1_afnet_rt050.yaml", 8, 0.5, "af_resnet50", None),
    ("jester/table1_tsn.yaml", 8, 1.0, "tsn_resnet50", None),
    ("sthv2/table2_afnet_tsm_r101_rt08.yaml", 12, 0.8, "af_resnet101", None),
    ("activitynet/table5_uniform_r025.yaml", 12, 1.0, "af_resnet50", "uniform"),
    ("sthv1/table1_afnet_soft.yaml", 8, 1.0, "af_resnet50", "soft"),
])
def test_paper_experiments_carry_the_paper_hyperparameters(name, frames, rt, model, selection):
    cfg = load_config(REPO / "configs" / name)
    assert (cfg.data.num_frames, cfg.objective.target_ratio) == (frames, rt)
    assert (cfg.model.name, cfg.model.selection) == (model, selection)
    assert cfg.data.batch_size == 32 and cfg.optim.lr == 0.01
    assert cfg.optim.lr_steps == [25, 45] and cfg.optim.epochs == 55
    o = cfg.objective
    assert (o.rt_begin, o.rt_end, o.t_end, o.ratio_weight) == (10, 20, 50, 0.5)
    assert cfg.optim.clip_grad == 20 and cfg.optim.weight_decay == 5e-4
    assert cfg.model.dropout == 0.5 and cfg.optim.navigation_lr_mult == 10
    assert cfg.eval.num_clips == 1 and cfg.eval.num_crops == 1


def test_overrides_are_dotted_and_yaml_parsed(tmp_path):
    cfg = load_config(SYNTHETIC_CONFIG, ["optim.lr=2e-2", "optim.lr_steps=[3, 5]", "model.selection=uniform",
                                         "model.ratio=0.5", "data.num_frames=4", "trainer.precision=bf16-mixed"])
    assert cfg.optim.lr == 0.02 and cfg.optim.lr_steps == [3, 5]
    assert cfg.model.ratio == 0.5 and cfg.data.num_frames == 4 and cfg.trainer.precision == "bf16-mixed"
    dump_config(cfg, tmp_path / "config.yaml")      # the saved config loads back unchanged
    assert load_config(tmp_path / "config.yaml") == cfg
    assert load_config(cfg.to_dict()) == cfg and load_config(cfg) == cfg   # a mapping or a Config, too


def test_base_chain_is_relative_to_the_file(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "parent.yaml").write_text("optim: {lr: 0.5, epochs: 3}\n")
    (tmp_path / "child.yaml").write_text("base: a/parent.yaml\noptim: {epochs: 4}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.optim.lr, cfg.optim.epochs) == (0.5, 4)


@pytest.mark.parametrize("override, words", [
    ("optim.lrr=0.1", "'optim.lrr'"),
    ("objective.target_ratio=1.5", "objective.target_ratio=1.5 is outside (0, 1]"),
    ("objective.target_ratio=0", "objective.target_ratio=0 is outside (0, 1]"),
    ("data.preset=sthv3", "data.preset='sthv3': unknown dataset preset"),
    ("model.name=resnet9000", "model.name='resnet9000'"),
    ("model.selection=uniform", "model.selection='uniform' needs a model.ratio in (0, 1]"),
    ("model.ratio=1.5", "model.ratio must be in (0, 1], got 1.5"),
    ("model.dropout=1", "model.dropout=1; accepted: [0, 1)"),
    ("trainer.devices=[1]", "'trainer.devices': expected int or str, got [1]"),
    ("optim.lr=fast", "'optim.lr': expected number, got 'fast'"),
    ("optim.schedule=linear", "optim.schedule='linear'"),
    ("optim.epochs=0", "optim.epochs=0"),
    ("data.batch_size=abc", "'data.batch_size': expected int"),
    ("eval.num_crops=2", "eval.num_crops=2"),
    ("data.num_frames=eight", "'data.num_frames': expected int or null"),
    ("trainer.sync_batchnorm=true", "trainer.sync_batchnorm=true needs GPUs"),
    ("model.navigation_bias=[2,1]", "model.navigation_bias=[2, 1]; accepted: [skip, keep] numbers with keep > skip"),
    ("data.decode_timeout=-1", "data.decode_timeout=-1; accepted: seconds >= 0, or null"),
])
def test_bad_values_are_rejected_naming_the_key(override, words):
    with pytest.raises(ConfigError, match=None) as info:
        load_config(SYNTHETIC_CONFIG, [override])
    assert words in str(info.value)


def test_frame_count_that_does_not_match_the_checkpoint_is_rejected(tmp_path):
    root = tiny_synthetic(tmp_path)
    ckpt = tmp_path / "af8.pt"
    afnet.save_checkpoint(ckpt, afnet.create_model("af_resnet_small", num_classes=8, num_frames=8))
    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(root, tmp_path / "run", **{
        "data.num_frames": 4, "model.pretrained": ckpt}))
    with pytest.raises(ConfigError, match="data.num_frames=4 does not match model.pretrained.*num_frames=8"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_data_and_checkpoint_are_named(tmp_path):
    root = tiny_synthetic(tmp_path)
    with pytest.raises(FileNotFoundError, match="data.root"):
        train(load_config(SYNTHETIC_CONFIG, tiny_overrides(tmp_path / "nowhere", tmp_path / "run")))
    with pytest.raises(FileNotFoundError, match="data.train_list='nope.txt'"):
        train(load_config(SYNTHETIC_CONFIG, tiny_overrides(root, tmp_path / "run", **{"data.train_list": "nope.txt"})))
    with pytest.raises(FileNotFoundError, match="model.pretrained"):
        train(load_config(SYNTHETIC_CONFIG, tiny_overrides(root, tmp_path / "run", **{"model.pretrained": "x.pt"})))


def test_cli_reports_config_errors_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "afnet.cli", "train", "--config", str(SYNTHETIC_CONFIG),
                           "objective.target_ratio=2", "bogus=1"], capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "unknown config key 'bogus'" in proc.stderr and "Traceback" not in proc.stderr


def test_decode_timeout_reaches_the_datasets(tmp_path):
    """data.decode_timeout: the decoders' default time limit per video, passed to every split."""
    from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT
    from afnet.engine.datamodule import VideoDataModule

    assert DataConfig().decode_timeout == DEFAULT_DECODE_TIMEOUT
    root = tiny_synthetic(tmp_path)
    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(root, tmp_path / "run", **{"data.decode_timeout": 7}))
    assert VideoDataModule(cfg.data).build_split("val").decode_timeout == 7.0
    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(root, tmp_path / "run", **{"data.decode_timeout": "null"}))
    assert VideoDataModule(cfg.data).build_split("train").decode_timeout is None


def test_model_section_is_derived_from_create_models_signature():
    """ModelConfig's fields are create_model's options (but the run-time execution ones), with
    the same defaults, plus the engine's own: a new model option is a config key at once."""
    import dataclasses
    import inspect

    from afnet.models.options import RUNTIME_OPTIONS

    params = {p.name: p.default for p in inspect.signature(afnet.create_model).parameters.values()
              if p.kind is p.KEYWORD_ONLY and p.default is not p.empty and p.name not in RUNTIME_OPTIONS}
    fields = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    assert set(fields) == set(params) | {"name", "pretrained", "skip_classifier"}
    assert all(fields[k] == params[k] for k in params)


def test_unknown_key_lists_the_sections_keys_and_sections_must_be_mappings():
    with pytest.raises(ConfigError, match=r"unknown config key 'model.size'; accepted in model: name, shift, "):
        load_config(SYNTHETIC_CONFIG, ["model.size=3"])
    with pytest.raises(ConfigError, match="config key 'optim' is a section; got 3"):
        load_config(SYNTHETIC_CONFIG, ["optim=3"])


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in EXPERIMENTS if p.name not in ("base.yaml", "dataset.yaml")],
                         ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_experiment_trains_one_step(path):
    """Each experiment's model, objective (at its first step's RT, RS and temperature) and
    optimiser groups, as its config builds them, take one SGD step through the module's own
    training step on a synthetic batch (112 pixels: the 7x7 region grids still divide the
    focal maps) and change the weights."""
    import warnings

    import torch

    from afnet.data.dataset import Batch
    from afnet.engine.module import AFNetModule
    from afnet.engine.optim import build_optimizer

    cfg = load_config(path, ["model.pretrained=null", "data.input_size=112", "data.scale_size=128"])
    torch.manual_seed(0)
    model = afnet.create_model(cfg.model.name, num_classes=cfg.data.num_classes, num_frames=cfg.data.num_frames,
                               **cfg.model.options())
    module = AFNetModule(model, cfg)   # freezes what the config's policy never trains
    optimizer = build_optimizer(model, cfg.optim, (1.0, 1.0))
    before = model.classifier().weight.detach().clone()
    target = (torch.tensor([0, 1]) % cfg.data.num_classes if not cfg.data.dataset().multi_label
              else torch.eye(cfg.data.num_classes)[:2])
    batch = Batch(torch.randn(2, cfg.data.num_frames, 3, 112, 112), target, torch.arange(2))
    module.train()
    module.on_train_batch_start(batch, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # self.log with no Trainer attached: nothing to log to
        loss = module.training_step(batch, 0)
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, model.classifier().weight)


def test_one_override_parser_for_configs_the_demo_and_check_data():
    import argparse

    from afnet.data.cli import _parse_override
    from afnet.engine.schema import ConfigError, apply_override
    from afnet.overrides import OverrideError, parse_override

    assert parse_override("optim.lr=2e-2") == ("optim.lr", 0.02)
    assert parse_override(" model.region_grid = [4, 2, 2]") == ("model.region_grid", [4, 2, 2])
    assert parse_override("data.num_frames=null") == ("data.num_frames", None)
    assert parse_override('model.name="tsn_resnet_small"') == ("model.name", "tsn_resnet_small")
    for bad in ("optim.lr", "=3", "x=[1, 2"):
        with pytest.raises(OverrideError, match="override"):
            parse_override(bad)
    cfg: dict = {}
    apply_override(cfg, "objective.saliency_weight=16.0")
    assert cfg == {"objective": {"saliency_weight": 16.0}}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_override(cfg, "optim.lr")
    assert _parse_override("num_classes=5") == ("num_classes", 5)      # check-data --set: the same parser
    with pytest.raises(argparse.ArgumentTypeError, match="--set 'oops'"):
        _parse_override("oops")
