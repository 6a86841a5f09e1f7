"""Experiment configs: YAML data, one schema of defaults, dotted overrides, checks that name the key.

    file.yaml ──base: chain (relative to the file)──> merged dict
        ──overrides ("optim.lr=0.02", YAML-parsed values)──> checked against DEFAULTS
        ──resolve (dataset preset fills frames, size, classes)──> config dict

A config is a plain nested dict (saved as ``config.yaml`` in the run directory). Every key
exists in :data:`DEFAULTS`; an unknown key or an impossible value raises :class:`ConfigError`
naming the key and what would be accepted, before any data is read or any step is run.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

DEFAULTS: dict = {
    "seed": 0,
    "run_dir": "runs/experiment",   # results: config.yaml, checkpoints/, tensorboard/, csv/
    "resume": None,                 # path of a Lightning checkpoint, or "last" (run_dir/checkpoints/last.ckpt)
    "model": {
        "name": "af_resnet50",      # any name of afnet.list_models()
        "shift": None,              # temporal shift (TSM); None: the model's default
        "selection": None,          # navigation | all | uniform | random | normal | soft; None: model default
        "ratio": None,              # share of frames kept by a fixed policy (uniform/random/normal)
        "dropout": 0.5,
        "pretrained": None,         # afnet or authors' checkpoint (ImageNet backbone or video model)
        "skip_classifier": False,   # fine-tune on another label set: leave the classifier fresh
        "navigation_bias": None,    # [skip, keep] initial W2 bias; None: [1, 10] as released (AF models)
        "spatial": False,           # spatial navigation (paper §3.3): af_resnet50, af_resnet101, af_resnet_small
        "region_grid": 7,           # regions per side of each focal map: an int, or one per AF stage [g1, g2, g3]
        "temporal_navigation": None,  # block | first (one navigation at the first layer); None: first if spatial
        "region_selection": None,   # navigation | all | random | center (spatial models); None: navigation
        "region_ratio": None,       # share of regions computed by a fixed region policy (random/center)
    },
    "data": {
        "preset": "synthetic",      # sthv1 sthv2 jester minikinetics activitynet kinetics synthetic imagefolder
        "root": None,
        "train_list": None,         # relative paths are taken relative to data.root
        "val_list": None,
        "class_file": None,
        "kind": "auto",             # annotation kind (see docs/data.md)
        "backend": "pyav",
        "num_frames": None,         # None: the preset's
        "input_size": None,
        "scale_size": None,
        "num_classes": None,
        "batch_size": 32,           # per process
        "val_batch_size": None,     # None: batch_size
        "num_workers": 2,
        "on_error": "raise",
    },
    "objective": {
        "target_ratio": 1.0,        # RT, in (0, 1]
        "ratio_weight": 0.5,        # lambda of Eq. 16
        "rt_begin": 10,             # epochs: RT held at 1 before, stepped down to RT by rt_end
        "rt_end": 20,
        "target_region_ratio": 1.0, # RS, in (0, 1]: the region term's target (learned region selection)
        "region_ratio_weight": None,  # lambda_s of the region term; None: ratio_weight
        "rs_begin": None,           # epochs: RS held at 1 before, stepped down to RS by rs_end; None: rt_begin
        "rs_end": None,             # None: rt_end
        "t_end": 50,                # epochs: Gumbel temperature decays 1 -> 0.01 over these
        "t_start": 1.0,
        "t_min": 0.01,
    },
    "optim": {
        "epochs": 55,
        "lr": 0.01,                 # for batch_size x processes as configured (not rescaled)
        "momentum": 0.9,
        "weight_decay": 5.0e-4,     # not on BN parameters and biases
        "schedule": "step",         # step | cosine
        "lr_steps": [25, 45],       # epochs where the lr is multiplied by lr_decay
        "lr_decay": 0.1,
        "warmup_epochs": 0.0,       # linear warm-up (fractional epochs allowed)
        "clip_grad": 20.0,          # gradient-norm clipping; null: off
        "navigation_lr_mult": 10.0,
        "classifier_lr_mult": None, # [weight, bias]; None: [5, 10] from an ImageNet backbone, else [1, 1]
    },
    "trainer": {
        "accelerator": "auto",
        "devices": "auto",
        "num_nodes": 1,
        "strategy": "auto",         # ddp under torchrun/SLURM or with devices > 1
        "precision": "32-true",     # e.g. bf16-mixed, 16-mixed
        "sync_batchnorm": False,
        "log_every_n_steps": 10,
        "limit_train_batches": None,
        "limit_val_batches": None,
        "progress_bar": True,
    },
    "eval": {
        "num_clips": 1,             # paper: 1 clip x 1 centre crop
        "num_crops": 1,             # 1 or 3
        "plot": True,               # kept ratio per block (Fig. 5) as PNG
    },
}

# The kinds of the keys whose default is null (unset).
_PATH = (str, os.PathLike)
NULLABLE = {
    "resume": _PATH, "model.shift": bool, "model.selection": str, "model.ratio": float, "model.pretrained": _PATH,
    "data.root": _PATH, "data.train_list": _PATH, "data.val_list": _PATH, "data.class_file": _PATH,
    "data.num_frames": int, "data.input_size": int, "data.scale_size": int, "data.num_classes": int,
    "data.val_batch_size": int, "optim.classifier_lr_mult": list, "model.navigation_bias": list, "trainer.limit_train_batches": float,
    "trainer.limit_val_batches": float, "model.temporal_navigation": str, "model.region_selection": str,
    "model.region_ratio": float, "objective.region_ratio_weight": float, "objective.rs_begin": float,
    "objective.rs_end": float,
}
# Keys that take another kind beside their default's.
ALTERNATIVES = {"model.region_grid": list}

SCHEDULES = ("step", "cosine")
PRESET_EXTRA = ("imagefolder",)


class ConfigError(ValueError):
    """A config key that does not exist or holds an impossible value; the message names it."""


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
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config_file(path, _seen: tuple = ()) -> dict:
    """A YAML file with its ``base:`` chain merged in (``base`` is relative to the file)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    return _merge(read_config_file(path.parent / base, _seen + (path,)), data)


def apply_override(cfg: dict, item: str) -> None:
    """``"optim.lr=0.02"``: set a dotted key to a YAML-parsed value (numbers like ``2e-2`` too)."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE with a dotted key, e.g. optim.lr=0.02")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
    if isinstance(value, str):  # YAML 1.1 reads "2e-2" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    parts = key.strip().split(".")
    node = cfg
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
    node[parts[-1]] = value


def load_config(path, overrides=(), *, resolve: bool = True) -> dict:
    """Read ``path`` (with its ``base:`` chain), apply ``overrides`` (``"dotted.key=value"``),
    fill defaults, check every key and value, and resolve dataset-dependent values."""
    cfg = _merge(DEFAULTS, read_config_file(path))
    for item in overrides:
        apply_override(cfg, item)
    return check_config(cfg, resolve=resolve)


def dump_config(cfg: dict, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    os.replace(tmp, path)


# ------------------------------------------------------------------ checking
def _check_keys(cfg: dict, defaults: dict, prefix: str = "") -> list[str]:
    problems = []
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if key not in defaults:
            problems.append(f"unknown config key {name!r}; accepted in {prefix.rstrip('.') or 'the top level'}: "
                            f"{', '.join(defaults)}")
            continue
        default = defaults[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                problems.append(f"config key {name!r} is a section; got {value!r}")
            else:
                problems += _check_keys(value, default, name + ".")
        elif value is None:
            continue
        elif name in ALTERNATIVES and _of_kind(value, ALTERNATIVES[name]):
            continue
        elif default is not None and not _same_kind(value, default):
            kind = type(default).__name__ + (f" or {ALTERNATIVES[name].__name__}" if name in ALTERNATIVES else "")
            problems.append(f"config key {name!r}: expected {kind}, got {value!r}")
        elif default is None and not _of_kind(value, NULLABLE.get(name, object)):
            kind = NULLABLE[name]
            kind = "path" if kind is _PATH else kind.__name__
            problems.append(f"config key {name!r}: expected {kind} or null, got {value!r}")
    return problems


def _same_kind(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):  # "auto" defaults accept numbers too (devices=2)
        return isinstance(value, (str, int)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _of_kind(value, kind) -> bool:
    if isinstance(value, bool):
        return kind in (bool, object)
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _in_unit(x) -> bool:
    return isinstance(x, (int, float)) and 0.0 < x <= 1.0


def check_config(cfg: dict, *, resolve: bool = True) -> dict:
    """Raise :class:`ConfigError` listing every unknown key and impossible value; return ``cfg``
    with the dataset preset's values filled in (``resolve``)."""
    from afnet.models import list_models
    from afnet.models.layers import SELECTIONS

    problems = _check_keys(cfg, DEFAULTS)
    if problems:
        raise ConfigError("\n".join(problems))
    m, d, o, p, e = cfg["model"], cfg["data"], cfg["objective"], cfg["optim"], cfg["eval"]
    if m["name"] not in list_models():
        problems.append(f"model.name={m['name']!r}: unknown model; accepted: {', '.join(list_models())}")
    if m["selection"] is not None and m["selection"] not in SELECTIONS:
        problems.append(f"model.selection={m['selection']!r}; accepted: {', '.join(SELECTIONS)}")
    if m["ratio"] is not None and not _in_unit(m["ratio"]):
        problems.append(f"model.ratio={m['ratio']!r} is outside (0, 1]")
    if m["selection"] in ("uniform", "random", "normal") and m["ratio"] is None:
        problems.append(f"model.selection={m['selection']!r} needs model.ratio in (0, 1]")
    problems += _spatial_problems(m, o)
    if not 0.0 <= m["dropout"] < 1.0:
        problems.append(f"model.dropout={m['dropout']!r}; accepted: [0, 1)")
    if not _in_unit(o["target_ratio"]):
        problems.append(f"objective.target_ratio={o['target_ratio']!r} is outside (0, 1]")
    if o["ratio_weight"] < 0:
        problems.append(f"objective.ratio_weight={o['ratio_weight']!r}; accepted: >= 0")
    if not 0 <= o["rt_begin"] <= o["rt_end"]:
        problems.append(f"objective.rt_begin={o['rt_begin']!r}, rt_end={o['rt_end']!r}; need 0 <= rt_begin <= rt_end")
    if o["t_end"] <= 0 or not 0 < o["t_min"] <= o["t_start"]:
        problems.append(f"objective.t_end={o['t_end']!r}, t_start={o['t_start']!r}, t_min={o['t_min']!r}; "
                        "need t_end > 0 and 0 < t_min <= t_start")
    if not isinstance(p["epochs"], int) or p["epochs"] < 1:
        problems.append(f"optim.epochs={p['epochs']!r}; accepted: a positive integer")
    if p["lr"] <= 0:
        problems.append(f"optim.lr={p['lr']!r}; accepted: > 0")
    if p["schedule"] not in SCHEDULES:
        problems.append(f"optim.schedule={p['schedule']!r}; accepted: {', '.join(SCHEDULES)}")
    if not all(isinstance(s, (int, float)) for s in p["lr_steps"]):
        problems.append(f"optim.lr_steps={p['lr_steps']!r}; accepted: a list of epochs")
    if p["warmup_epochs"] < 0:
        problems.append(f"optim.warmup_epochs={p['warmup_epochs']!r}; accepted: >= 0")
    if p["classifier_lr_mult"] is not None and (not isinstance(p["classifier_lr_mult"], list)
                                                or len(p["classifier_lr_mult"]) != 2):
        problems.append(f"optim.classifier_lr_mult={p['classifier_lr_mult']!r}; accepted: [weight, bias] or null")
    bias = cfg["model"]["navigation_bias"]
    if bias is not None and not (isinstance(bias, list) and len(bias) == 2
                                 and all(isinstance(b, (int, float)) for b in bias) and bias[1] > bias[0]):
        problems.append(f"model.navigation_bias={bias!r}; accepted: [skip, keep] numbers with keep > skip, or null")
    for key in ("batch_size",):
        if not isinstance(d[key], int) or d[key] < 1:
            problems.append(f"data.{key}={d[key]!r}; accepted: a positive integer")
    if not isinstance(d["num_workers"], int) or d["num_workers"] < 0:
        problems.append(f"data.num_workers={d['num_workers']!r}; accepted: an integer >= 0")
    if e["num_crops"] not in (1, 3) or not isinstance(e["num_clips"], int) or e["num_clips"] < 1:
        problems.append(f"eval.num_clips={e['num_clips']!r}, eval.num_crops={e['num_crops']!r}; "
                        "accepted: clips >= 1, crops 1 or 3")
    if cfg["trainer"]["sync_batchnorm"] and cfg["trainer"]["accelerator"] == "cpu":
        problems.append("trainer.sync_batchnorm=true needs GPUs (torch's SyncBatchNorm has no CPU kernel); "
                        "set it false with trainer.accelerator=cpu")
    if problems:
        raise ConfigError("\n".join(problems))
    if resolve:
        resolve_data(cfg)
        if m["spatial"]:
            _check_region_grid(m, d)
    return cfg


def region_grids(model_cfg: dict) -> list:
    """``model.region_grid`` as one grid per AF stage."""
    grid = model_cfg["region_grid"]
    return list(grid) if isinstance(grid, list) else [grid] * 3


def rs_epochs(objective: dict) -> tuple:
    """(rs_begin, rs_end) of the RS schedule: the RT epochs where unset."""
    o = objective
    return (o["rt_begin"] if o["rs_begin"] is None else o["rs_begin"],
            o["rt_end"] if o["rs_end"] is None else o["rs_end"])


def focal_map_sizes(input_size: int) -> list[int]:
    """Side of AF-ResNet's focal maps in its three AF stages (strides 4, 8, 16, rounded up)."""
    return [-(-input_size // stride) for stride in (4, 8, 16)]


def _spatial_problems(m: dict, o: dict) -> list[str]:
    """The spatial navigation keys: model.spatial ... model.region_ratio, the objective's RS keys."""
    from afnet.models.layers import REGION_SELECTIONS, TEMPORAL_NAVIGATION
    from afnet.models.registry import SPATIAL_MODELS

    problems = []
    if m["spatial"] and m["name"] not in SPATIAL_MODELS:
        problems.append(f"model.spatial=true: spatial navigation is implemented for {', '.join(SPATIAL_MODELS)}; "
                        f"got model.name={m['name']!r}")
    if m["temporal_navigation"] is not None:
        if m["temporal_navigation"] not in TEMPORAL_NAVIGATION:
            problems.append(f"model.temporal_navigation={m['temporal_navigation']!r}; accepted: "
                            f"{', '.join(TEMPORAL_NAVIGATION)} or null")
        elif m["name"] not in SPATIAL_MODELS:
            problems.append(f"model.temporal_navigation={m['temporal_navigation']!r} is an option of "
                            f"{', '.join(SPATIAL_MODELS)}; got model.name={m['name']!r}")
    if m["region_selection"] is not None and m["region_selection"] not in REGION_SELECTIONS:
        problems.append(f"model.region_selection={m['region_selection']!r}; accepted: {', '.join(REGION_SELECTIONS)}")
    if m["region_ratio"] is not None and not _in_unit(m["region_ratio"]):
        problems.append(f"model.region_ratio={m['region_ratio']!r} is outside (0, 1]")
    if not m["spatial"]:
        problems += [f"model.{key}={m[key]!r} needs model.spatial=true" for key in ("region_selection", "region_ratio")
                     if m[key] is not None]
        if o["target_region_ratio"] != 1.0:
            problems.append(f"objective.target_region_ratio={o['target_region_ratio']!r} needs model.spatial=true "
                            "(the region term applies to spatial navigation); leave it at 1.0")
    elif m["region_selection"] in ("random", "center") and m["region_ratio"] is None:
        problems.append(f"model.region_selection={m['region_selection']!r} needs model.region_ratio in (0, 1]")
    grids = region_grids(m)
    if len(grids) != 3 or not all(type(g) is int and g >= 1 for g in grids):
        problems.append(f"model.region_grid={m['region_grid']!r}; accepted: a positive integer, or a list of 3 "
                        "(one per AF stage)")
    if not _in_unit(o["target_region_ratio"]):
        problems.append(f"objective.target_region_ratio={o['target_region_ratio']!r} is outside (0, 1]")
    if o["region_ratio_weight"] is not None and o["region_ratio_weight"] < 0:
        problems.append(f"objective.region_ratio_weight={o['region_ratio_weight']!r}; accepted: >= 0 or null")
    begin, end = rs_epochs(o)
    if not 0 <= begin <= end:
        problems.append(f"objective.rs_begin={begin!r}, rs_end={end!r} (null: the rt_ value); "
                        "need 0 <= rs_begin <= rs_end")
    return problems


def _check_region_grid(m: dict, d: dict) -> None:
    sizes = focal_map_sizes(d["input_size"])
    bad = [f"stage {i + 1}: {g} on {s}" for i, (g, s) in enumerate(zip(region_grids(m), sizes)) if s % g]
    if bad:
        raise ConfigError(f"model.region_grid={m['region_grid']!r} does not divide the focal maps at "
                          f"data.input_size={d['input_size']} (sides {sizes}; {', '.join(bad)}): choose a grid per "
                          "AF stage, or an input size, so that each grid divides its map")


def dataset_overrides(data: dict) -> dict:
    """The ``data`` keys that override preset fields (those set in the config)."""
    fields = ("num_frames", "input_size", "scale_size", "num_classes")
    return {k: data[k] for k in fields if data[k] is not None}


def resolve_data(cfg: dict) -> None:
    """Fill ``data.num_frames/input_size/scale_size/num_classes`` from the dataset preset (the
    synthetic preset reads the dataset's ``synthetic.json`` when it exists)."""
    from afnet.data import get_preset
    from afnet.data.presets import PRESETS

    d = cfg["data"]
    if d["preset"] in PRESET_EXTRA:
        from afnet.engine.images import image_config
        preset = _named(lambda: image_config(d))
    elif d["preset"] not in PRESETS:
        raise ConfigError(f"data.preset={d['preset']!r}: unknown dataset preset; accepted: "
                          f"{', '.join(list(PRESETS) + list(PRESET_EXTRA))}")
    elif d["preset"] == "synthetic" and d["root"] and (Path(d["root"]) / "synthetic.json").is_file():
        from afnet.data.synthetic import synthetic_config
        preset = _named(lambda: synthetic_config(d["root"], **dataset_overrides(d)))
    else:
        preset = _named(lambda: get_preset(d["preset"], **dataset_overrides(d)))
    for key in ("num_frames", "input_size", "scale_size", "num_classes"):
        d[key] = getattr(preset, key)


def _named(build):
    try:
        return build()
    except ValueError as exc:
        raise ConfigError(f"data: {exc}") from None


def dataset_preset(cfg: dict, **overrides):
    """The :class:`~afnet.data.DatasetConfig` a resolved config describes."""
    from afnet.data import get_preset

    d = cfg["data"]
    if d["preset"] in PRESET_EXTRA:
        from afnet.engine.images import image_config
        return image_config(d, **overrides)
    base = d["preset"]
    return get_preset(base, **{**dataset_overrides(d), **overrides})
