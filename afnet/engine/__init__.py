"""Training and evaluation engine (Lightning): configs, objective, schedules, metrics.

    from afnet.engine import calibrate, evaluate, load_config, train
    cfg = load_config("configs/synthetic_afnet.yaml", overrides=["data.root=/tmp/synth"])
    result = train(cfg)                       # TrainResult(run_dir, best_checkpoint, last_checkpoint, metrics)
    metrics = evaluate(cfg, result.best_checkpoint)
    calibrated = calibrate(cfg, result.best_checkpoint)   # the learned threshold shifted to the run's RT

    schema.py      typed configs (OmegaConf structured): Config, ModelConfig (from create_model's
                   signature), DataConfig, ObjectiveConfig, OptimConfig, TrainerConfig, EvalConfig;
                   YAML base chain, dotted overrides, checks naming the key
    schedules.py   target ratio, Gumbel temperature, learning rate: pure functions of (epoch, step)
    objective.py   Eq. 16: cross-entropy (BCE multi-label) + lambda * mean (r_n - RT)^2
                   (+ lambda_s * mean (s_n - RS)^2 with spatial navigation)
    optim.py       SGD parameter groups (no decay on BN/bias; navigation 10x; classifier 5x/10x)
    metrics.py     top-1/top-5/class-mean accuracy, mAP, kept ratio, region ratio (torchmetrics)
    module.py      AFNetModule: the thin LightningModule
    datamodule.py  VideoDataModule: afnet.data behind a LightningDataModule, per-rank sharding
    run.py         train, evaluate, calibrate (the learned threshold to RT), TrainResult
    plot.py        kept ratio per block with a cubic trend (paper Fig. 5)
    cli.py         ``afnet train``, ``afnet eval``

Names are imported on first use: importing this package (or ``afnet.engine.cli``) does not
import Lightning.
"""
from afnet._imports import lazy_exports

_SCHEMA = ("Config", "ConfigError", "DataConfig", "EvalConfig", "ModelConfig", "ObjectiveConfig", "OptimConfig",
           "TrainerConfig", "dump_config", "load_config")
_EXPORTS = {**{name: "afnet.engine.schema" for name in _SCHEMA},
            **{name: "afnet.engine.run" for name in ("train", "evaluate", "calibrate", "TrainResult")}}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
