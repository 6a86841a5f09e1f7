"""Experiment configs: typed dataclasses, built once from YAML plus ``key=value`` overrides.

    file.yaml ──base: chain (relative to the file)──> mapping
        ──overrides ("optim.lr=0.02", YAML-parsed values)──> mapping
        ──OmegaConf structured merge (unknown keys, types)──> Config
        ──Config.validate (one problems() per section, cross-field checks)──> checked
        ──DataConfig.resolve (the dataset preset fills frames, size, classes)──> the run's Config

The schema is :class:`Config` and its sections; :class:`ModelConfig` is derived from
:func:`afnet.create_model`'s signature (a model option added there is a config key here),
and its values are checked by the models' own :func:`~afnet.models.registry.option_problems`.
The run directory keeps the resolved config as ``config.yaml`` (:func:`dump_config`); it
loads back to an equal :class:`Config`. Every error names the key and what it accepts.
"""
import copy
import dataclasses
import inspect
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from afnet._imports import require
from afnet.models.options import in_unit_interval
from afnet.overrides import OverrideError, parse_override

require("omegaconf", "experiment configs (afnet.engine)")
from omegaconf import OmegaConf  # noqa: E402 - after the check above
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException  # noqa: E402

Number = Union[int, float]   # kept as written (0 stays 0, 2e-2 a float)
SCHEDULES = ("step", "cosine")


class ConfigError(ValueError):
    """A config key that does not exist or holds an impossible value; the message names it."""


# ------------------------------------------------------------------ model: from create_model's signature
def _option_type(hint, default):
    """The config type of one create_model option: a plain (nullable) scalar, or Any for
    anything richer (``region_grid``: int or list), whose values option_problems checks."""
    union = typing.get_origin(hint) in (Union, types.UnionType)
    args = typing.get_args(hint) if union else (hint,)
    kinds = [a for a in args if a is not type(None)]
    if len(kinds) != 1 or kinds[0] not in (bool, int, float, str):
        return Any
    kind = Number if kinds[0] is float else kinds[0]
    return Optional[kind] if (len(kinds) < len(args) or default is None) else kind


def _model_config_class():
    from afnet.models.options import RUNTIME_OPTIONS
    from afnet.models.registry import create_model, model_options

    # only the options' hints are read: the return type (VideoModel, a torch class the registry
    # imports lazily) is not resolved, so a config loads without torch
    hints = typing.get_type_hints(create_model, localns={"VideoModel": object})
    options = {k: v for k, v in model_options().items() if k not in RUNTIME_OPTIONS}
    fields = [("name", str, field(default="af_resnet50"))]
    fields += [(k, _option_type(hints[k], d), field(default_factory=lambda d=d: list(d)) if isinstance(d, (list, tuple))
                else field(default=d)) for k, d in options.items()]
    fields += [("pretrained", Optional[str], field(default=None)),     # afnet or authors' checkpoint
               ("skip_classifier", bool, field(default=False))]        # fine-tune on another label set

    def options_of(self) -> dict:
        """The create_model keyword arguments of this section."""
        return {k: getattr(self, k) for k in options}

    def problems(self, input_size: Optional[int] = None) -> list:
        from afnet.models.registry import option_problems
        return option_problems(self.name, self.options(), prefix="model.", input_size=input_size,
                               input_size_key="data.input_size")

    doc = ("The ``model:`` section: ``name``, every option of :func:`afnet.create_model` but the run-time "
           f"ones ({', '.join(options)}), ``pretrained`` and ``skip_classifier``.")
    return dataclasses.make_dataclass("ModelConfig", fields, namespace={
        "options": options_of, "problems": problems, "__doc__": doc, "__module__": __name__})


ModelConfig = _model_config_class()


# ------------------------------------------------------------------ data
_RESOLVED = ("num_frames", "input_size", "scale_size", "num_classes")


@dataclass
class DataConfig:
    preset: str = "synthetic"              # a name of afnet.data.PRESETS (imagefolder: class folders, T=1)
    root: Optional[str] = None
    train_list: Optional[str] = None       # relative paths are taken relative to root
    val_list: Optional[str] = None
    class_file: Optional[str] = None       # class names, stored in the checkpoints
    evidence_file: Optional[str] = None    # {video: evidence frames} JSON: navigation precision in validation
    kind: str = "auto"                     # annotation kind (docs/data.md)
    backend: str = "pyav"
    num_frames: Optional[int] = None       # None: the preset's (filled by resolve)
    input_size: Optional[int] = None
    scale_size: Optional[int] = None
    num_classes: Optional[int] = None
    scales: Optional[list] = None          # training crops (multi-scale crop, shares of the short side); None: preset's
    flip: Optional[bool] = None            # training horizontal flip; None: the preset's
    batch_size: int = 32                   # per process
    val_batch_size: Optional[int] = None   # None: batch_size
    num_workers: int = 2
    on_error: str = "raise"
    # seconds to read one video (afnet.data.DEFAULT_DECODE_TIMEOUT); null/0: none
    decode_timeout: Optional[Number] = 60.0
    # the most one sample may decode (afnet.data.limits.DecodeLimits), checked from headers; 0: none
    max_frame_pixels: int = 4096 * 4096
    max_frames: int = 1_000_000
    max_seconds: Number = 4 * 3600.0

    def problems(self) -> list:
        from afnet.data.presets import PRESETS
        from afnet.errors import did_you_mean

        problems = []
        if self.preset not in PRESETS:
            problems.append(f"data.preset={self.preset!r}: unknown dataset preset{did_you_mean(self.preset, PRESETS)}; "
                            f"accepted: {', '.join(PRESETS)}")
        if self.batch_size < 1:
            problems.append(f"data.batch_size={self.batch_size!r}; accepted: a positive integer")
        if self.num_workers < 0:
            problems.append(f"data.num_workers={self.num_workers!r}; accepted: an integer >= 0")
        if self.decode_timeout is not None and not 0 <= self.decode_timeout < float("inf"):
            problems.append(f"data.decode_timeout={self.decode_timeout!r}; accepted: seconds >= 0, or null (no limit)")
        for key in ("max_frame_pixels", "max_frames", "max_seconds"):
            if not 0 <= getattr(self, key) < float("inf"):
                problems.append(f"data.{key}={getattr(self, key)!r}; accepted: a number >= 0 (0: no limit)")
        return problems

    def limits(self):
        """The :class:`~afnet.data.limits.DecodeLimits` of ``max_frame_pixels``, ``max_frames``, ``max_seconds``."""
        from afnet.data.limits import DecodeLimits

        return DecodeLimits.of(self.max_frame_pixels, self.max_frames, self.max_seconds)

    def dataset(self, **overrides):
        """The :class:`~afnet.data.DatasetConfig` this section describes (the synthetic preset
        reads the dataset's ``synthetic.json`` when it exists)."""
        from afnet.data import get_preset

        fields = {k: getattr(self, k) for k in _RESOLVED if getattr(self, k) is not None}
        fields.update({k: v for k, v in (("scales", None if self.scales is None else tuple(self.scales)),
                                         ("flip", self.flip)) if v is not None})
        fields.update(overrides)
        try:
            if self.preset == "synthetic" and self.root and (Path(self.root) / "synthetic.json").is_file():
                from afnet.data.synthetic import synthetic_config
                return synthetic_config(self.root, **fields)
            return get_preset(self.preset, **fields)
        except ValueError as exc:
            raise ConfigError(f"data: {exc}") from None

    def resolve(self) -> None:
        """Fill num_frames, input_size, scale_size, num_classes from the preset."""
        preset = self.dataset()
        for key in _RESOLVED:
            setattr(self, key, getattr(preset, key))

    def paths(self) -> dict:
        """``train_list``, ``val_list``, ``class_file``, ``evidence_file`` resolved against
        ``root`` (the synthetic preset defaults to the files ``make_synthetic`` writes). Raises
        FileNotFoundError / ConfigError naming the key."""
        if not self.root:
            raise ConfigError("data.root is not set; give the dataset's root folder (data.root=/path)")
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"data.root={self.root!r}: no such folder")
        defaults = {"train_list": "train_frames.txt", "val_list": "val_frames.txt", "class_file": "category.txt"} \
            if self.preset == "synthetic" else {}
        if self.preset == "synthetic":
            from afnet.data.synthetic import EVIDENCE_FILE
            if os.path.isfile(os.path.join(self.root, EVIDENCE_FILE)):
                defaults["evidence_file"] = EVIDENCE_FILE
        paths = {}
        for key in ("train_list", "val_list", "class_file", "evidence_file"):
            value = getattr(self, key) or defaults.get(key)
            if value is None:
                if key not in ("class_file", "evidence_file"):
                    raise ConfigError(f"data.{key} is not set; give the annotation file of the split")
                paths[key] = None
                continue
            path = value if os.path.isabs(value) else os.path.join(self.root, value)
            if not os.path.exists(path):
                raise FileNotFoundError(f"data.{key}={value!r}: not found (looked at {path})")
            paths[key] = path
        return paths


# ------------------------------------------------------------------ objective, optimiser, trainer, eval
@dataclass
class ObjectiveConfig:
    target_ratio: Number = 1.0               # RT, in (0, 1]
    ratio_weight: Number = 0.5               # lambda of Eq. 16
    rt_begin: Number = 10                    # epochs: RT held at 1 before, stepped down to RT by rt_end
    rt_end: Number = 20
    target_region_ratio: Number = 1.0        # RS, in (0, 1]: the region term's target (spatial models)
    region_ratio_weight: Optional[Number] = None  # lambda_s; None: ratio_weight
    rs_begin: Optional[Number] = None        # None: rt_begin
    rs_end: Optional[Number] = None          # None: rt_end
    ratio_tolerance: Optional[Number] = None  # best.ckpt only among epochs whose val kept (region) ratio is
                                             # within this of RT (RS); null: any epoch at the final targets
    t_end: Number = 50                       # epochs: Gumbel temperature decays t_start -> t_min over these
    t_start: Number = 1.0
    t_min: Number = 0.01
    saliency_weight: Number = 0.0            # mu of the saliency term (beyond the paper; objective.py); 0: off
    region_saliency_weight: Number = 0.0     # mu_s of the region saliency term (spatial navigation; likewise)

    def rs_epochs(self) -> tuple:
        """(rs_begin, rs_end) of the RS schedule: the RT epochs where unset."""
        return (self.rt_begin if self.rs_begin is None else self.rs_begin,
                self.rt_end if self.rs_end is None else self.rs_end)

    def problems(self) -> list:
        problems = [f"objective.{k}={getattr(self, k)!r} is outside (0, 1]"
                    for k in ("target_ratio", "target_region_ratio") if not in_unit_interval(getattr(self, k))]
        for key in ("ratio_weight", "saliency_weight", "region_saliency_weight"):
            if getattr(self, key) < 0:
                problems.append(f"objective.{key}={getattr(self, key)!r}; accepted: >= 0")
        if self.ratio_tolerance is not None and not 0 <= self.ratio_tolerance < 1:
            problems.append(f"objective.ratio_tolerance={self.ratio_tolerance!r}; accepted: [0, 1) or null")
        if self.region_ratio_weight is not None and self.region_ratio_weight < 0:
            problems.append(f"objective.region_ratio_weight={self.region_ratio_weight!r}; accepted: >= 0 or null")
        if not 0 <= self.rt_begin <= self.rt_end:
            problems.append(f"objective.rt_begin={self.rt_begin!r}, rt_end={self.rt_end!r}; "
                            "need 0 <= rt_begin <= rt_end")
        begin, end = self.rs_epochs()
        if not 0 <= begin <= end:
            problems.append(f"objective.rs_begin={begin!r}, rs_end={end!r} (null: the rt_ value); "
                            "need 0 <= rs_begin <= rs_end")
        if self.t_end <= 0 or not 0 < self.t_min <= self.t_start:
            problems.append(f"objective.t_end={self.t_end!r}, t_start={self.t_start!r}, t_min={self.t_min!r}; "
                            "need t_end > 0 and 0 < t_min <= t_start")
        return problems


@dataclass
class OptimConfig:
    epochs: int = 55
    lr: Number = 0.01                        # for batch_size x processes as configured (not rescaled)
    momentum: Number = 0.9
    weight_decay: Number = 5.0e-4            # not on BN parameters and biases
    schedule: str = "step"                   # step | cosine
    lr_steps: list = field(default_factory=lambda: [25, 45])   # epochs where the lr is multiplied by lr_decay
    lr_decay: Number = 0.1
    warmup_epochs: Number = 0.0              # linear warm-up (fractional epochs allowed)
    clip_grad: Optional[Number] = 20.0       # gradient-norm clipping; null: off
    navigation_lr_mult: Number = 10.0
    classifier_lr_mult: Optional[list] = None  # [weight, bias]; None: [5, 10] from an ImageNet backbone, else [1, 1]

    def problems(self) -> list:
        problems = []
        if self.epochs < 1:
            problems.append(f"optim.epochs={self.epochs!r}; accepted: a positive integer")
        if self.lr <= 0:
            problems.append(f"optim.lr={self.lr!r}; accepted: > 0")
        if self.schedule not in SCHEDULES:
            problems.append(f"optim.schedule={self.schedule!r}; accepted: {', '.join(SCHEDULES)}")
        if not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in self.lr_steps):
            problems.append(f"optim.lr_steps={self.lr_steps!r}; accepted: a list of epochs")
        if self.warmup_epochs < 0:
            problems.append(f"optim.warmup_epochs={self.warmup_epochs!r}; accepted: >= 0")
        mult = self.classifier_lr_mult
        if mult is not None and not (len(mult) == 2 and all(isinstance(m, (int, float)) for m in mult)):
            problems.append(f"optim.classifier_lr_mult={mult!r}; accepted: [weight, bias] or null")
        return problems


LOGGERS = ("csv", "tensorboard", "mlflow", "wandb")   # trainer.loggers (built by afnet.engine.run.make_loggers)


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Union[int, str] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"                   # ddp under torchrun/SLURM or with devices > 1
    precision: Union[int, str] = "32-true"   # e.g. bf16-mixed, 16-mixed
    sync_batchnorm: bool = False
    log_every_n_steps: int = 10
    limit_train_batches: Optional[Number] = None   # int: batches, float: share of the epoch
    limit_val_batches: Optional[Number] = None
    progress_bar: bool = True
    stop_at: Optional[Number] = None         # stop once the validation score (best.ckpt's) reaches this
    loggers: list[str] = field(default_factory=lambda: ["tensorboard", "csv"])   # of LOGGERS, under run_dir

    def problems(self) -> list:
        unknown = [name for name in self.loggers if name not in LOGGERS]
        if unknown:
            return [f"trainer.loggers: {', '.join(map(repr, unknown))}; accepted: {', '.join(LOGGERS)} "
                    "(mlflow and wandb with the extras afnet[mlflow], afnet[wandb])"]
        if self.stop_at is not None and not 0 < self.stop_at <= 1:
            return [f"trainer.stop_at={self.stop_at!r}; accepted: a top-1 (mAP) in (0, 1], or null"]
        if self.sync_batchnorm and self.accelerator == "cpu":
            return ["trainer.sync_batchnorm=true needs GPUs (torch's SyncBatchNorm has no CPU kernel); "
                    "set it false with trainer.accelerator=cpu"]
        return []


@dataclass
class EvalConfig:
    num_clips: int = 1                       # paper: 1 clip x 1 centre crop
    num_crops: int = 1                       # 1 or 3
    plot: bool = True                        # kept ratio per block (Fig. 5) as PNG

    def problems(self) -> list:
        if self.num_crops not in (1, 3) or self.num_clips < 1:
            return [f"eval.num_clips={self.num_clips!r}, eval.num_crops={self.num_crops!r}; "
                    "accepted: clips >= 1, crops 1 or 3"]
        return []


# ------------------------------------------------------------------ the whole experiment
@dataclass
class Config:
    seed: int = 0
    run_dir: str = "runs/experiment"        # config.yaml, checkpoints/, tensorboard/, csv/
    resume: Optional[str] = None            # a Lightning checkpoint, or "last" (run_dir/checkpoints/last.ckpt)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def problems(self) -> list:
        """Every section's problems, then the checks across sections."""
        problems = [p for section in (self.model, self.data, self.objective, self.optim, self.trainer, self.eval)
                    for p in section.problems()]
        if not self.model.spatial and self.objective.target_region_ratio != 1.0:
            problems.append(f"objective.target_region_ratio={self.objective.target_region_ratio!r} needs "
                            "model.spatial=true (the region term applies to spatial navigation); leave it at 1.0")
        return problems

    def validate(self, resolve: bool = True) -> "Config":
        """Raise :class:`ConfigError` listing every impossible value; with ``resolve``, fill
        the data section from its preset and check what depends on it (the region grids)."""
        problems = self.problems()
        if not problems and resolve:
            self.data.resolve()
            problems = self.model.problems(input_size=self.data.input_size)
        if problems:
            raise ConfigError("\n".join(problems))
        return self

    def to_dict(self) -> dict:
        """Plain nested dict (YAML- and checkpoint-safe)."""
        return dataclasses.asdict(self)


# ------------------------------------------------------------------ loading
def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def _merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def read_config_file(path, _seen: tuple = ()) -> dict:
    """A YAML file with its ``base:`` chain merged in (``base`` is relative to the file)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    data = _read_yaml(path)
    base = data.pop("base", None)
    return data if base is None else _merge(read_config_file(path.parent / base, _seen + (path,)), data)


def apply_override(cfg: dict, item: str) -> None:
    """``"optim.lr=0.02"``: set a dotted key to a YAML-parsed value (:func:`afnet.overrides.parse_override`)."""
    try:
        key, value = parse_override(item)
    except OverrideError as exc:
        raise ConfigError(str(exc)) from None
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
    node[leaf] = value


def _plain(value):
    """Paths as strings, tuples as lists (what YAML would have given)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, os.PathLike) else value


def _schema_at(parts: list):
    """(the dataclass holding the key ``parts``, the key's type); type None if unknown."""
    cls = Config
    for part in parts[:-1]:
        cls = {f.name: f.type for f in dataclasses.fields(cls)}.get(part)
    hints = typing.get_type_hints(cls) if inspect.isclass(cls) and dataclasses.is_dataclass(cls) else {}
    return cls, hints.get(parts[-1])


def _kind(tp) -> str:
    args = typing.get_args(tp) if typing.get_origin(tp) is Union else (tp,)
    rest = tuple(a for a in args if a is not type(None))
    names = ["number"] if set(rest) == {int, float} else [getattr(a, "__name__", "value") for a in rest]
    return " or ".join(names) + (" or null" if len(rest) < len(args) else "")


def _typed(raw: dict) -> Config:
    """The Config of a nested mapping: OmegaConf merges it into the schema (unknown keys and
    types rejected), then builds the dataclasses."""
    for f in dataclasses.fields(Config):
        if dataclasses.is_dataclass(f.type) and f.name in raw and not isinstance(raw[f.name], dict):
            raise ConfigError(f"config key {f.name!r} is a section; got {raw[f.name]!r}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), raw))
    except ConfigKeyError as exc:
        parts = str(exc.full_key).split(".")
        section = dataclasses.fields(_schema_at(parts)[0])
        where = ".".join(parts[:-1]) or "the top level"
        raise ConfigError(f"unknown config key {exc.full_key!r}; accepted in {where}: "
                          f"{', '.join(f.name for f in section)}") from None
    except OmegaConfBaseException as exc:
        parts = str(exc.full_key or "").split(".")
        value = raw
        for part in parts:
            value = value.get(part) if isinstance(value, dict) else None
        tp = _schema_at(parts)[1] if exc.full_key else None
        if tp is None:
            raise ConfigError(f"config: {str(exc).splitlines()[0]}") from None
        raise ConfigError(f"config key {exc.full_key!r}: expected {_kind(tp)}, got {value!r}") from None


def load_config(source, overrides=(), *, resolve: bool = True) -> Config:
    """The :class:`Config` of ``source`` (a YAML file with its ``base:`` chain, a mapping, or a
    Config) with ``overrides`` (``"dotted.key=value"``) applied, checked, and (``resolve``)
    with the dataset preset's values filled in. Raises :class:`ConfigError` naming the key."""
    if isinstance(source, Config):
        raw = source.to_dict()
    elif isinstance(source, typing.Mapping):
        raw = copy.deepcopy(dict(source))
    else:
        raw = read_config_file(source)
    for item in overrides:
        apply_override(raw, item)
    return _typed(_plain(raw)).validate(resolve=resolve)


def dump_config(cfg: Config, path) -> None:
    """Write ``cfg`` as YAML (atomically: :func:`afnet.io.write_text`)."""
    from afnet.io import write_text

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
