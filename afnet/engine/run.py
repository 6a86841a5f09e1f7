"""``train(cfg)`` and ``evaluate(cfg, checkpoint)``: build the model, data and Lightning trainer
from a config; everything is checked before the first step.

Run directory (``run_dir``)::

    config.yaml              the resolved config (rank 0)
    checkpoints/last.ckpt    every epoch, written atomically (temp file, then rename)
    checkpoints/best.ckpt    best validation top-1 (mAP for multi-label) among the epochs trained
                             at the final RT (and RS) targets (and within objective.ratio_tolerance of them)
    train.log                one line per epoch: loss, val top-1, kept ratio, precision, seconds
    tensorboard/, csv/       logs (train loss, schedules, val metrics, GFLOPs, kept ratios):
                             ``trainer.loggers``, also mlflow (mlruns/) and wandb (wandb/)
    eval/                    ``evaluate``: metrics.json, kept_ratio.png

Epochs are counted from 1 wherever a user reads them (progress bar, train.log, the metrics'
``epoch``); Lightning's own files (its checkpoints' ``epoch``, the CSV log) keep its 0-based count.

Both ``.ckpt`` files are Lightning checkpoints (``--resume`` continues from them) that also
carry the afnet format's keys: pass either to ``afnet eval``/``afnet predict`` or
``afnet.load_checkpoint``.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from afnet._imports import require
from afnet.checkpoint import CheckpointError, atomic_torch_save, load_checkpoint, read_checkpoint
from afnet.engine.datamodule import VideoDataModule
from afnet.engine.module import AFNetModule
from afnet.engine.schema import Config, ConfigError, dump_config, load_config
from afnet.io import write_text
from afnet.models import create_model
from afnet.weights import is_remote

L = require("lightning", "training (afnet.engine)")
from lightning.pytorch.callbacks import (  # noqa: E402
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger  # noqa: E402
from lightning.pytorch.plugins.io import TorchCheckpointIO  # noqa: E402


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    metrics: dict = field(default_factory=dict)   # final validation metrics (see evaluate)
    warnings: list = field(default_factory=list)  # budget_warnings of the run (also warned and in train.log)


class BudgetWarning(UserWarning):
    """A trained run whose best checkpoint does not meet its compute budget (RT, RS)."""


def budget_warnings(cfg: Config, learned_frames: bool, learned_regions: bool, best_metrics: dict) -> list[str]:
    """What ``train`` warns about when a run with learned selection ends off its budget: it
    stopped before ``objective.rt_end`` (``rs_end``), so it never trained at RT (RS); or the
    validation kept share (region share) of ``best.ckpt`` (``best_metrics``) is further than
    ``objective.ratio_tolerance`` (0.05 if unset) from RT (RS)."""
    o, epochs, out = cfg.objective, cfg.optim.epochs, []
    tolerance = 0.05 if o.ratio_tolerance is None else o.ratio_tolerance
    run_dir = Path(cfg.run_dir)
    calibrate = (f"`afnet calibrate --config {run_dir / 'config.yaml'} "
                 f"--checkpoint {run_dir / 'checkpoints' / 'best.ckpt'}` shifts its keep/skip threshold "
                 "to keep RT of the frames")
    checks = []
    if learned_frames:
        checks.append(("objective.rt_end", o.rt_end, "RT", o.target_ratio, "mean_kept_ratio", "kept share", calibrate))
    if learned_regions:
        checks.append(("objective.rs_end", o.rs_epochs()[1], "RS", o.target_region_ratio, "mean_region_ratio",
                       "region share", "`--region-ratio RS` on predict (static-k regions) computes exactly RS"))
    for end_key, end, name, target, key, what, remedy in checks:
        if epochs < end:
            out.append(f"optim.epochs={epochs} ends before {end_key}={end}: the run never trained at "
                       f"{name}={target}; train at least {math.ceil(end)} epochs, or {remedy}")
        share = best_metrics.get(key)
        if share is not None and abs(share - target) > tolerance:
            out.append(f"best.ckpt's validation {what} is {share:.2f}, off {name}={target} by more than "
                       f"{tolerance}: it computes {'more' if share > target else 'less'} than the budget; {remedy} "
                       f"(or train longer, or raise objective.ratio_weight)")
    return out


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temporary file in the same folder, then rename over the target."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)


# ------------------------------------------------------------------ building
def _checkpoint_frames(path, key: str, num_frames: int, model) -> None:
    """Read an afnet checkpoint and reject a frame count the navigation cannot take."""
    ckpt = read_checkpoint(path)
    theirs = (ckpt.get("model_args") or {}).get("num_frames")
    # T=1 is an image-pretrained backbone: its navigation is not loaded (afnet.checkpoint)
    if ckpt.get("format") == "afnet" and model.has_navigation and theirs not in (None, 1, num_frames):
        raise ConfigError(f"data.num_frames={num_frames} does not match {key}={str(path)!r}, trained with "
                          f"num_frames={theirs} (the navigation is sized by the frame count); "
                          f"set data.num_frames={theirs}")


def build_model(cfg: Config, checkpoint=None):
    """The model a config describes, with ``model.pretrained`` (or ``checkpoint``) loaded.
    Returns ``(model, classifier_lr_mult)``."""
    m, d = cfg.model, cfg.data
    try:
        model = create_model(m.name, num_classes=d.num_classes, num_frames=d.num_frames, **m.options())
    except ValueError as exc:
        raise ConfigError(f"model ({m.name}): {exc}") from None
    imagenet = False
    for key, path, skip in (("model.pretrained", m.pretrained, m.skip_classifier), ("checkpoint", checkpoint, False)):
        if path is None:
            continue
        if not is_remote(path) and not Path(path).exists():
            raise FileNotFoundError(f"{key}={str(path)!r}: checkpoint not found")
        _checkpoint_frames(path, key, d.num_frames, model)
        try:
            report = load_checkpoint(model, path, skip_classifier=skip)
        except CheckpointError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        imagenet = imagenet or report.is_backbone
    mult = cfg.optim.classifier_lr_mult or ([5.0, 10.0] if imagenet else [1.0, 1.0])
    return model, mult


def _resume_path(cfg: Config):
    if cfg.resume is None:
        return None
    path = Path(cfg.run_dir) / "checkpoints" / "last.ckpt" if cfg.resume == "last" else Path(cfg.resume)
    if not path.is_file():
        raise FileNotFoundError(f"resume={cfg.resume!r}: checkpoint not found at {path}")
    saved = read_checkpoint(path).get("config", {})
    for section, key in (("model", "name"), ("model", "spatial"), ("data", "num_frames"), ("data", "num_classes")):
        theirs, ours = saved.get(section, {}).get(key), getattr(getattr(cfg, section), key)
        if theirs is not None and theirs != ours:
            raise ConfigError(f"{section}.{key}={ours!r} does not match the checkpoint {path} ({theirs!r}); "
                              "resume with the run's config")
    return str(path)


def best_from_epoch(cfg: Config, module: AFNetModule) -> int:
    """The first epoch trained at the final ratio targets: RT from ``rt_end`` on (learned
    frame selection), RS from ``rs_end`` on (learned region selection); 0 otherwise. A
    checkpoint from before computes more than the run's budget, so it cannot be the best
    (capped at the last epoch, so that a short run still keeps one)."""
    o = cfg.objective
    first = max([0] + ([o.rt_end] if module.with_ratio else []) +
                ([o.rs_epochs()[1]] if module.with_region_ratio else []))
    return min(int(math.ceil(first)), cfg.optim.epochs - 1)


class EpochReport(Callback):
    """One line per epoch (rank 0), appended to ``log_file`` and, with ``echo``, printed:
    epoch, mean training loss, validation top-1 (mAP), kept ratio (and region ratio,
    navigation precision where measured), seconds."""

    def __init__(self, log_file, echo: bool = True):
        self.log_file, self.echo = Path(log_file), echo
        self.started, self.loss, self.steps = time.time(), 0.0, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.started, self.loss, self.steps = time.time(), 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.loss += float(outputs["loss"])
        self.steps += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        r = pl_module.val_results if pl_module.val_results.get("epoch") == trainer.current_epoch + 1 else {}
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}",
                 f"loss {self.loss / max(self.steps, 1):.3f}"]
        if not r:
            parts.append("not validated")
        elif "mAP" in r:
            parts.append(f"val mAP {r['mAP']:.1%}")
        else:
            parts.append(f"val top-1 {r['top1']:.1%}")
        if r.get("kept_ratio"):
            parts.append(f"kept {r['mean_kept_ratio']:.2f} [" + " ".join(f"{k:.2f}" for k in r["kept_ratio"]) + "]")
        if "mean_region_ratio" in r:
            parts.append(f"regions {r['mean_region_ratio']:.2f}")
        if "mean_navigation_precision" in r:
            parts.append(f"precision {r['mean_navigation_precision']:.2f} (evidence rate {r['evidence_rate']:.2f})")
        if "mean_region_precision" in r:
            rate = sum(r["region_evidence_rate"]) / len(r["region_evidence_rate"])
            parts.append(f"region precision {r['mean_region_precision']:.2f} (evidence rate {rate:.2f})")
        line = f"{Path(pl_module.cfg.run_dir).name}: " + ", ".join(parts) + f", {time.time() - self.started:.0f} s"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a") as f:
            f.write(line + "\n")
        if self.echo:
            print(line, file=sys.stderr, flush=True)   # stdout: the command's JSON


class BestAtTargets(ModelCheckpoint):
    """Lightning's best-checkpoint callback, considering only epochs from ``first_epoch`` on."""

    def __init__(self, first_epoch: int, **kwargs):
        super().__init__(**kwargs)
        self.first_epoch = first_epoch

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch >= self.first_epoch:
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch >= self.first_epoch:
            super().on_train_epoch_end(trainer, pl_module)


def _on_stderr(init):
    def init_on_stderr(self):
        with contextlib.redirect_stdout(sys.stderr):   # Lightning's bars write to sys.stdout
            return init(self)
    return init_on_stderr


class StderrProgressBar(TQDMProgressBar):
    """Lightning's progress bar on stderr (stdout carries the commands' JSON: ``afnet eval >
    m.json``), epochs counted from 1 of ``max_epochs``, as train.log and the metrics count them."""

    init_sanity_tqdm = _on_stderr(TQDMProgressBar.init_sanity_tqdm)
    init_train_tqdm = _on_stderr(TQDMProgressBar.init_train_tqdm)
    init_validation_tqdm = _on_stderr(TQDMProgressBar.init_validation_tqdm)
    init_predict_tqdm = _on_stderr(TQDMProgressBar.init_predict_tqdm)
    init_test_tqdm = _on_stderr(TQDMProgressBar.init_test_tqdm)

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")


# trainer.loggers (schema.LOGGERS): each writes under run_dir; mlflow and wandb are extras
_LOGGERS = {
    "csv": lambda run_dir: CSVLogger(run_dir, name="csv", version=""),
    "tensorboard": lambda run_dir: TensorBoardLogger(run_dir, name="tensorboard", version=""),
    # a file store in run_dir/mlruns (``mlflow ui --backend-store-uri run_dir/mlruns``)
    "mlflow": lambda run_dir: MLFlowLogger(experiment_name="afnet", run_name=run_dir.name,
                                           tracking_uri=(run_dir / "mlruns").resolve().as_uri()),
    # W&B's own settings apply (WANDB_MODE=offline keeps the run in run_dir/wandb)
    "wandb": lambda run_dir: WandbLogger(name=run_dir.name, project="afnet", save_dir=str(run_dir)),
}


def make_loggers(cfg: Config, run_dir: Path) -> list:
    """The Lightning loggers of ``trainer.loggers``; ImportError naming the extra of a missing one."""
    for name in cfg.trainer.loggers:
        if name in ("mlflow", "wandb"):
            require(name, f"trainer.loggers: {name}")
    return [_LOGGERS[name](run_dir) for name in cfg.trainer.loggers]


def _trainer(cfg: Config, callbacks=(), **kwargs) -> L.Trainer:
    t = cfg.trainer
    bar = [StderrProgressBar()] if t.progress_bar else []
    return L.Trainer(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
                     precision=t.precision, sync_batchnorm=t.sync_batchnorm, enable_progress_bar=t.progress_bar,
                     limit_val_batches=t.limit_val_batches, use_distributed_sampler=False, num_sanity_val_steps=0,
                     enable_model_summary=False, plugins=[AtomicCheckpointIO()], callbacks=[*callbacks, *bar],
                     **kwargs)


def train(cfg: Config) -> TrainResult:
    """Train as ``cfg`` says (see ``docs/training.md``); resume when ``cfg.resume`` is set.

    Args:
        cfg: a :class:`Config`, or what :func:`load_config` reads (a YAML path, a mapping);
            checked again here, before any data is read.

    Returns:
        :class:`TrainResult`: the run folder, ``best.ckpt`` (best validation top-1 among the
        epochs at the final RT/RS), ``last.ckpt``, the last validation metrics, and the
        :func:`budget_warnings` of the run (also warned as :class:`BudgetWarning`).
    """
    cfg = load_config(cfg)
    data = VideoDataModule(cfg.data, seed=cfg.seed)
    class_names = data.class_names()            # reads the lists: data errors before any model is built
    resume = _resume_path(cfg)
    L.seed_everything(cfg.seed, verbose=False)   # model initialisation
    model, mult = build_model(cfg)
    run_dir = Path(cfg.run_dir)
    multi_label = cfg.data.dataset().multi_label
    module = AFNetModule(model, cfg, multi_label=multi_label, classifier_lr_mult=mult, class_names=class_names)
    ckpt_dir = run_dir / "checkpoints"
    # best first, then last: last.ckpt then holds the best-tracking state of this epoch too.
    # (Lightning's save_last writes only when the top-k file changed, not every epoch.)
    best = BestAtTargets(best_from_epoch(cfg, module), dirpath=ckpt_dir, filename="best",
                         monitor="val/checkpoint_score", mode="max", save_top_k=1,
                         enable_version_counter=False, auto_insert_metric_name=False)
    last = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, every_n_epochs=1,
                           enable_version_counter=False)
    t = cfg.trainer
    loggers = make_loggers(cfg, run_dir)
    callbacks = [best, last, EpochReport(run_dir / "train.log", echo=not t.progress_bar)]
    callbacks += [LearningRateMonitor("step")] if loggers else []   # it logs through them
    if t.stop_at is not None:  # only the threshold stops (patience never runs out)
        callbacks.append(EarlyStopping("val/checkpoint_score", mode="max", stopping_threshold=t.stop_at,
                                       patience=cfg.optim.epochs + 1))
    trainer = _trainer(cfg, max_epochs=cfg.optim.epochs, callbacks=callbacks,
                       gradient_clip_val=cfg.optim.clip_grad, gradient_clip_algorithm="norm",
                       logger=loggers,
                       log_every_n_steps=t.log_every_n_steps, limit_train_batches=t.limit_train_batches,
                       default_root_dir=run_dir)
    if trainer.is_global_zero:
        dump_config(cfg, run_dir / "config.yaml")
    trainer.fit(module, datamodule=data, ckpt_path=resume)
    found = []
    learned = module.with_ratio or module.with_region_ratio
    if learned and trainer.is_global_zero and (ckpt_dir / "best.ckpt").is_file():
        found = budget_warnings(cfg, module.with_ratio, module.with_region_ratio,
                                read_checkpoint(ckpt_dir / "best.ckpt").get("metrics") or {})
        with open(run_dir / "train.log", "a") as f:
            f.writelines(f"warning: {message}\n" for message in found)
        for message in found:
            warnings.warn(message, BudgetWarning, stacklevel=2)
    return TrainResult(run_dir, ckpt_dir / "best.ckpt", ckpt_dir / "last.ckpt", dict(module.val_results), found)


def evaluate(cfg: Config, checkpoint, *, out_dir=None) -> dict:
    """Validation-set metrics of ``checkpoint`` (any file ``afnet.load_checkpoint`` reads) with
    ``eval.num_clips`` x ``eval.num_crops`` views: top1, top5, class_mean_acc (mAP for
    multi-label), gflops_per_video (all views), kept_ratio (per navigation point; empty for
    baselines), mean_kept_ratio; spatial models: region_ratio (per focal block), mean_region_ratio.
    Rank 0 writes ``metrics.json`` and ``kept_ratio.png`` to
    ``out_dir`` (default ``run_dir/eval``)."""
    cfg = load_config(cfg)
    e = cfg.eval
    data = VideoDataModule(cfg.data, seed=cfg.seed, num_clips=e.num_clips, num_crops=e.num_crops)
    data.setup("validate")
    cfg.model.pretrained = None
    model, _ = build_model(cfg, checkpoint=checkpoint)
    module = AFNetModule(model, cfg, multi_label=cfg.data.dataset().multi_label)
    trainer = _trainer(cfg, logger=False, enable_checkpointing=False)
    trainer.validate(module, datamodule=data, verbose=False)
    metrics = {k: v for k, v in module.val_results.items() if k not in ("epoch", "step")}
    metrics.update(checkpoint=str(checkpoint), num_clips=e.num_clips, num_crops=e.num_crops)
    if trainer.is_global_zero:
        out = Path(out_dir or Path(cfg.run_dir) / "eval")
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
        if e.plot and metrics["kept_ratio"]:
            from afnet.engine.plot import plot_kept_ratio
            metrics["plot"] = str(plot_kept_ratio(metrics["kept_ratio"], out / "kept_ratio.png",
                                                  title=f"{cfg.model.name}, RT={cfg.objective.target_ratio}"))
    return metrics


def calibrate(cfg: Config, checkpoint, *, out=None, max_videos: int = 512) -> dict:
    """Calibrate the learned keep/skip threshold of ``checkpoint`` to the run's RT
    (``objective.target_ratio``; :func:`afnet.models.calibration.calibrate_threshold`) on the
    first ``max_videos`` training videos, read as evaluation reads them (one view each); the
    validation set stays unseen. Writes the checkpoint with the shifted navigation biases to
    ``out`` (default: ``calibrated.ckpt`` beside ``checkpoint``), with a ``calibration`` entry
    (ratio, shifts, kept: the share each navigation keeps on those videos, mean_kept, videos).
    Returns that entry and the ``checkpoint`` path."""
    import torch

    from afnet.data.dataset import SkippedSample
    from afnet.models.calibration import calibrate_threshold
    from afnet.models.layers import Navigation

    cfg = load_config(cfg)
    if max_videos < 1:
        raise ValueError(f"max_videos must be positive, got {max_videos}")
    cfg.model.pretrained = None
    model, _ = build_model(cfg, checkpoint=checkpoint)
    data = VideoDataModule(cfg.data, seed=cfg.seed)
    videos = data.build_split("train", train=False)
    picked = range(min(max_videos, len(videos)))
    batch = cfg.data.val_batch_size or cfg.data.batch_size

    def batches():
        clips = []
        for i in picked:
            sample = videos[i]
            if isinstance(sample, SkippedSample):
                continue
            clips.append(sample[0][0])   # the first (centre) view
            if len(clips) == batch:
                yield torch.stack(clips)
                clips = []
        if clips:
            yield torch.stack(clips)

    ratio = cfg.objective.target_ratio
    result = calibrate_threshold(model, batches, ratio)
    ckpt = read_checkpoint(checkpoint)
    state = model.state_dict()
    for name, module in model.named_modules():
        if isinstance(module, Navigation):
            key = f"{name}.conv2.bias"
            if key not in ckpt.get("state_dict", {}):
                raise CheckpointError(f"{checkpoint}: no {key} to calibrate (not a checkpoint of this project)")
            ckpt["state_dict"][key] = state[key].clone()
    out = Path(out) if out is not None else Path(checkpoint).with_name("calibrated.ckpt")
    ckpt["calibration"] = {"ratio": ratio, "shifts": result.shifts, "kept": result.kept,
                           "mean_kept": result.mean_kept, "videos": len(picked), "source": str(checkpoint)}
    atomic_torch_save(ckpt, out)
    return {**ckpt["calibration"], "checkpoint": str(out)}
