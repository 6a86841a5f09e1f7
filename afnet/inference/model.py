"""A model ready for inference: rebuilt from a checkpoint, prepared once, with its class
names, navigation-point names and the evaluation preset its inputs are read with.

Two kinds of checkpoint:

- project checkpoints (``afnet.save_checkpoint``: ``format: "afnet"``): the architecture
  and its arguments are stored, so the file alone suffices. ``class_names`` (stored by
  ``afnet train``) and the run's ``config`` (its ``data.preset``, ``data.input_size`` and
  frame/region policy ``model.selection`` ...) are used when present.
- the authors' released checkpoints: no architecture is stored, so ``model``, ``frames``,
  ``num_classes`` and ``labels`` (a class-name file) must be given.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from afnet.checkpoint import FORMAT, load_checkpoint, read_checkpoint
from afnet.data.annotations import load_class_names
from afnet.data.presets import DatasetConfig, get_preset
from afnet.errors import OptionError
from afnet.models import create_model
from afnet.runtime import bf16_for, compile_forward, prepare_for_inference, resolve_device

DEFAULT_PRESET = "sthv2"


@dataclass(repr=False)
class InferenceModel:
    """A prepared model (eval mode, BN folded, channels-last) and what describes its output.

    ``points``: one name per navigation point (focal block), in the order of
    ``VideoOutput.masks`` (e.g. ``layer1.0``); empty for the TSN/TSM baselines. ``config``: the evaluation
    preset (sampling, resize, crop, normalisation) with ``num_frames`` set to the model's.
    ``compiled``: the model's forward under ``torch.compile`` (``compile_mode``), called in place
    of ``model`` by :func:`~afnet.inference.predict.run_model`; ``None``: eager.
    """

    model: nn.Module
    arch: str
    class_names: list[str] | None
    config: DatasetConfig
    points: list[str]
    checkpoint: str = ""
    source: str = ""
    warmed: set = field(default_factory=set)
    compiled: Callable | None = field(default=None, repr=False)
    compile_mode: str | None = None

    @property
    def device(self) -> torch.device:
        """Where the model computes (its parameters' device; an ONNX Runtime model: the CPU)."""
        params = self.model.parameters() if isinstance(self.model, nn.Module) else iter(())
        return next(params, torch.empty(0)).device

    def __call__(self, clip: torch.Tensor):
        """The model (compiled, where it was) on ``clip``, moved to the model's device."""
        clip = clip.to(self.device, non_blocking=True)
        return (self.model if self.compiled is None else self.compiled)(clip)

    @property
    def num_frames(self) -> int:
        return self.model.num_frames

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def class_name(self, index: int) -> str | None:
        return None if self.class_names is None else self.class_names[index]

    def __repr__(self) -> str:
        c, m = self.config, self.model
        policy = m.selection + ("" if m.ratio is None else f" {m.ratio}")
        return (f"InferenceModel({self.arch}, {self.num_frames} frames, {self.num_classes} classes"
                f"{'' if self.class_names is None else ' (named)'}, {c.input_size}px {c.name}, "
                f"selection {policy}, {len(self.points)} navigation points, {self.source} {self.checkpoint})")


def checkpoint_defaults(ckpt: dict) -> tuple[str | None, int | None, int | None]:
    """(preset name, input size, resize size) of the run that wrote the checkpoint: its
    config's ``data.preset``, ``data.input_size`` and ``data.scale_size``, if recorded."""
    data = (ckpt.get("config") or {}).get("data") if isinstance(ckpt.get("config"), dict) else None
    if not isinstance(data, dict):
        return None, None, None
    preset, size, scale = data.get("preset"), data.get("input_size"), data.get("scale_size")

    def whole(v):
        return int(v) if isinstance(v, int) and not isinstance(v, bool) else None

    return (preset if isinstance(preset, str) else None), whole(size), whole(scale)


def stored_selection(ckpt: dict) -> dict:
    """How the checkpoint's run selected frames and regions (``config["model"]`` of an engine
    checkpoint: ``selection``, ``ratio``, ``region_selection``, ``region_ratio``), as
    :meth:`VideoModel.configure` arguments; empty when not recorded. A model trained with a
    fixed policy is run with that policy, not with its untrained navigation."""
    model_cfg = (ckpt.get("config") or {}).get("model") if isinstance(ckpt.get("config"), dict) else None
    if not isinstance(model_cfg, dict):
        return {}
    return {k: model_cfg[k] for k in ("selection", "ratio", "region_selection", "region_ratio")
            if model_cfg.get(k) is not None}


def resolve_class_names(stored, labels: str | os.PathLike | None, num_classes: int) -> list[str] | None:
    """The class names: those of the file ``labels`` (category.txt, classInd.txt, labels.json)
    when given, else ``stored`` (None: unnamed); their count must be the model's."""
    if labels is not None:
        if not os.path.isfile(labels):
            raise FileNotFoundError(f"class-name file not found: {labels}")
        stored = load_class_names(labels)
    if stored is None:
        return None
    names = [str(name) for name in stored]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names{f' in {labels}' if labels else ''} "
                         f"but the model has {num_classes} classes")
    return names


def eval_config(preset: str | DatasetConfig, num_frames: int, num_classes: int,
                size: int | None = None, scale_size: int | None = None) -> DatasetConfig:
    """The preset's evaluation transforms for a model of ``num_frames`` frames; ``size``
    sets the crop and ``scale_size`` the resized short side (when not given, the preset's
    crop/resize ratio, e.g. 224/256, is kept)."""
    config = get_preset(preset)
    overrides = {"num_frames": num_frames, "num_classes": num_classes}
    if size is not None:
        if size < 1:
            raise OptionError(f"{{size}} must be a positive integer, got {size}", "size")
        overrides["input_size"] = size
        overrides["scale_size"] = scale_size or max(size, round(size * config.scale_size / config.input_size))
    return get_preset(config, **overrides)


@dataclass
class Rebuilt:
    """A model rebuilt from a checkpoint and loaded, before any preparation for inference
    (:func:`rebuild_model`): what :func:`load_model_for_inference` prepares and
    :func:`convert_checkpoint` packages."""

    model: nn.Module
    arch: str
    class_names: list[str] | None
    config: DatasetConfig
    checkpoint: str
    source: str


def rebuild_model(checkpoint: str | os.PathLike, model: str | None = None, frames: int | None = None,
                  num_classes: int | None = None, labels: str | os.PathLike | None = None, *,
                  preset: str | None = None, size: int | None = None, shift: bool | None = None,
                  ratio: float | None = None, region_ratio: float | None = None) -> Rebuilt:
    """The model of ``checkpoint`` (any weights source of :func:`afnet.checkpoint.read_checkpoint`),
    loaded and configured as it was trained (or with ``ratio``/``region_ratio``), its class
    names and evaluation preset; the arguments are :func:`load_model_for_inference`'s."""
    path = str(checkpoint)
    ckpt = read_checkpoint(path)
    stored_preset, stored_size, stored_scale = checkpoint_defaults(ckpt)
    if ckpt.get("format") == FORMAT:
        arch, args = ckpt.get("arch"), dict(ckpt.get("model_args") or {})
        if not isinstance(arch, str) or "num_classes" not in args or "num_frames" not in args:
            raise ValueError(f"{path}: project checkpoint lacks 'arch' or 'model_args'")
        for name, given, stored in (("model", model, arch), ("frames", frames, args["num_frames"]),
                                    ("num_classes", num_classes, args["num_classes"])):
            if given is not None and given != stored:
                raise OptionError(f"{{{name}}} {given} contradicts the checkpoint {path} ({stored})", name)
        class_names = ckpt.get("class_names")
        source = "afnet"
    else:
        missing = [name for name, value in (("model", model), ("frames", frames),
                                            ("num_classes", num_classes), ("labels", labels)) if value is None]
        if missing:
            raise OptionError(f"{path} is not a project checkpoint (no architecture stored): "
                              f"give {', '.join('{' + name + '}' for name in missing)}", *missing)
        arch, args = model, {"num_classes": num_classes, "num_frames": frames, "shift": shift}
        class_names = None
        source = "authors'"
    class_names = resolve_class_names(class_names, labels, args["num_classes"])
    net = create_model(arch, **args)
    load_checkpoint(net, path)
    given = {k: v for k, v in (("ratio", ratio), ("region_ratio", region_ratio)) if v is not None}
    net.configure(**{**stored_selection(ckpt), **given})
    # a package records its whole evaluation config (normalisation included); a run, its preset and sizes
    recorded = ckpt.get("preprocessing")
    base = preset or (DatasetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()})
                      if isinstance(recorded, dict) else None) or stored_preset or DEFAULT_PRESET
    # the run's own crop and resize, as its validation read the videos (unless --size changes the crop)
    config = eval_config(base, net.num_frames, net.num_classes,
                         size if size is not None else stored_size, None if size is not None else stored_scale)
    return Rebuilt(net, arch, class_names, config, path, source)


def load_model_for_inference(checkpoint: str | os.PathLike, model: str | None = None,
                             frames: int | None = None, num_classes: int | None = None,
                             labels: str | os.PathLike | None = None, *, preset: str | None = None,
                             size: int | None = None, shift: bool | None = None,
                             ratio: float | None = None, region_ratio: float | None = None,
                             precision: str = "fp32", tune_malloc: bool = False,
                             channels_last: bool = True, device: str | torch.device = "cpu",
                             compile: str | None = None) -> InferenceModel:
    """Rebuild, load and prepare a model for inference (once per model).

    Args:
        checkpoint: a project checkpoint or package (``afnet convert``), or one of the authors';
            a local path, an http(s) URL or ``hf-hub:org/repo[/file]`` (:mod:`afnet.weights`).
        model, frames, num_classes: the architecture; a project checkpoint stores it (given, they
            must agree with it), an authors' checkpoint needs them.
        labels: class-name file; overrides a project checkpoint's stored names, required for
            an authors' checkpoint.
        preset: evaluation transforms; default the checkpoint's config, else ``sthv2``.
        size: crop side; default the checkpoint's config, else the preset's.
        shift: temporal shift, for an authors' checkpoint (default: the model's).
        ratio: a fixed budget of frames per video and navigation point in place of the trained
            one (learned navigation: the static-k policy; see :meth:`VideoModel.configure`).
        region_ratio: likewise for the regions of each kept frame (spatial models; learned
            region navigation: static-k regions).
        precision: ``fp32``, ``bf16`` or ``auto`` (bf16 only where the device computes it
            natively, a CUDA GPU with bf16 included; see :func:`afnet.runtime.bf16_for`).
        tune_malloc: see :func:`afnet.runtime.prepare_for_inference` (process-wide; off by default).
        channels_last: see there (an ONNX export leaves it: the graph is NCHW whatever the
            torch memory format).
        device: where the model computes: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``
            (:func:`afnet.runtime.resolve_device`; a GPU asked for where there is none is a
            one-line :class:`~afnet.errors.OptionError`).
        compile: a ``torch.compile`` mode (``default``, ``reduce-overhead``: CUDA graphs ...;
            :func:`afnet.runtime.compile_forward`) for the forward, or ``None`` (eager).

    Returns:
        An :class:`InferenceModel`. Raises FileNotFoundError / ValueError (an
        :class:`~afnet.errors.OptionError` naming the argument) with a one-line message on
        user errors.
    """
    target = resolve_device(device)   # before the checkpoint is read: a missing GPU fails fast
    r = rebuild_model(checkpoint, model, frames, num_classes, labels, preset=preset, size=size, shift=shift,
                      ratio=ratio, region_ratio=region_ratio)
    points = [p.name for p in r.model.navigation_points()]
    r.model.to(target)   # before the preparation: precision "auto" decides by the device
    prepare_for_inference(r.model, bf16=bf16_for(precision), tune_malloc=tune_malloc, channels_last=channels_last)
    compiled = None if compile is None else compile_forward(r.model, compile)
    return InferenceModel(r.model, r.arch, r.class_names, r.config, points, r.checkpoint, r.source,
                          compiled=compiled, compile_mode=compile)


def convert_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, model: str | None = None,
                       frames: int | None = None, num_classes: int | None = None,
                       labels: str | os.PathLike | None = None, *, preset: str | None = None,
                       size: int | None = None, shift: bool | None = None, ratio: float | None = None) -> Path:
    """Write ``checkpoint`` (any that :func:`load_model_for_inference` takes, with the same
    arguments) as a package folder ``out_dir`` (:mod:`afnet.package`): safetensors weights and
    a config.json of architecture, frames, labels, frame selection and preprocessing."""
    from afnet.package import write_package

    r = rebuild_model(checkpoint, model, frames, num_classes, labels, preset=preset, size=size, shift=shift,
                      ratio=ratio)
    return write_package(out_dir, r.model, labels=r.class_names, preprocessing=asdict(r.config))
