"""Model registry: two-line entry points registered by name, one builder per family, and
the one place where the rules on model options live (:func:`option_problems`)."""
from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from afnet.errors import did_you_mean
from afnet.models.options import CONFIGURE_OPTIONS, TEMPORAL_NAVIGATION, is_number, selection_problems

if TYPE_CHECKING:
    from afnet.models.base import VideoModel

class ModelEntry(NamedTuple):
    build: Callable[..., VideoModel]
    navigation: bool   # has a focal branch and navigation (frame selection)
    spatial: bool      # can be built with spatial navigation (``spatial=True``)


_MODELS: dict[str, ModelEntry] = {}

# The small variant: fewer and narrower blocks, trains on 2 CPU cores in minutes.
SMALL_LAYERS = (2, 2, 2, 1)
SMALL_WIDTHS = (16, 32, 64, 128)


def _family(name: str):
    """A model class, imported on first use: listing the zoo (and checking options) needs no torch."""
    module = "afnet.models.mobilenetv3" if "MobileNet" in name else "afnet.models.resnet"
    return getattr(importlib.import_module(module), name)


def register_model(fn: Callable[..., VideoModel] | None = None, *, navigation: bool = False, spatial: bool = False):
    """Register a builder under its function name (``@register_model`` or
    ``@register_model(navigation=True, spatial=True)``)."""
    def add(fn):
        _MODELS[fn.__name__] = ModelEntry(fn, navigation, spatial)
        return fn
    return add if fn is None else add(fn)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_MODELS)


def create_model(name: str, *, num_classes: int, num_frames: int, shift: bool | None = None,
                 selection: str | None = None, ratio: float | None = None, dropout: float = 0.5,
                 navigation_bias: tuple[float, float] | None = None, spatial: bool = False,
                 region_grid: int | tuple[int, int, int] = 7, temporal_navigation: str | None = None,
                 region_selection: str | None = None, region_ratio: float | None = None,
                 execution: str = "auto", dense_above: float | None = None, shared_navigation: bool = False,
                 pretrained: str | os.PathLike | None = None) -> VideoModel:
    """Build a model of the zoo.

    Args:
        name: one of :func:`list_models`.
        num_classes: classifier outputs.
        num_frames: frames per video (T); the navigation and the temporal shift are sized by it.
        shift: temporal shift (TSM) in every block; ``None`` takes the model's default (off,
            except AF-MobileNetV3 whose release always shifts).
        selection, ratio, execution, dense_above: see :meth:`VideoModel.configure`;
            ``selection`` defaults to ``navigation`` for AF models, ``all`` for baselines.
        dropout: before the classifier.
        navigation_bias: initial (skip, keep) bias of the navigation's last layer; ``None``:
            (1, 10) as released.
        shared_navigation: beyond the paper (AF-ResNet family): the temporal navigation's last
            layer shared by every frame position instead of one per position
            (:class:`~afnet.models.layers.Navigation`).
        spatial: spatial navigation (paper §3.3, AF-ResNet family).
        region_grid: regions per side with ``spatial`` (an int, or one per AF stage).
        temporal_navigation: ``"block"`` (one navigation per focal block) or ``"first"`` (one
            at the first layer); ``None``: ``"first"`` with ``spatial``, else ``"block"``.
        region_selection, region_ratio: see :meth:`VideoModel.configure`;
            ``region_selection`` defaults to ``navigation`` for spatial models.
        pretrained: weights loaded into the model (:func:`afnet.load_checkpoint`): a checkpoint
            or package path, an http(s) URL, or ``hf-hub:org/repo[/file]`` (:mod:`afnet.weights`).
            Not a model option: the engine's config has ``model.pretrained`` of its own.

    Returns:
        The :class:`VideoModel`, in training mode. Raises ValueError naming every broken rule.

    Every keyword here is a model option: the engine's ``model:`` config section is derived
    from this signature (:func:`model_options`), and the rules on the values live in
    :func:`option_problems`. Options of the constructor (those not of
    :meth:`VideoModel.configure`) left at their default here take the model's own default.
    """
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in locals().items()
               if k not in ("name", "num_classes", "num_frames", "pretrained")}
    problems = option_problems(name, options)
    if problems:
        raise ValueError("; ".join(problems))
    defaults = model_options()
    build = {k: v for k, v in options.items() if k not in CONFIGURE_OPTIONS and v != defaults[k]}
    try:
        model = _MODELS[name].build(num_classes=num_classes, num_frames=num_frames, **build)
    except TypeError as exc:   # an option of another family (e.g. spatial=True on a MobileNet)
        raise ValueError(f"{name} does not take {', '.join(build)}: {exc}") from None
    model.arch = name
    model.build_args = {k: list(v) if isinstance(v, tuple) else v for k, v in build.items()}
    model.configure(**{k: options[k] for k in CONFIGURE_OPTIONS})   # None: the model's default
    if pretrained is not None:
        from afnet.checkpoint import load_checkpoint

        load_checkpoint(model, pretrained)
    return model


def model_options() -> dict:
    """Every model option of :func:`create_model` and its default (its signature, read once)."""
    return {p.name: p.default for p in inspect.signature(create_model).parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.default is not p.empty and p.name != "pretrained"}


def spatial_models() -> tuple[str, ...]:
    """Models that can be built with spatial navigation."""
    return tuple(n for n, entry in _MODELS.items() if entry.spatial)


def option_problems(name: str, options: dict, *, prefix: str = "", input_size: int | None = None,
                    input_size_key: str = "input_size") -> list[str]:
    """Every rule on :func:`create_model`'s options, one message per broken rule naming the
    option (``prefix`` + its name: ``model.`` in the engine's configs) and what it accepts.
    Options left out take their defaults. ``input_size``: also check that the region grids
    divide the focal maps at that input size. Used by ``create_model``, the engine's
    config and the command line."""
    p = prefix
    if name not in _MODELS:
        return [f"{p}name={name!r}: unknown model{did_you_mean(name, list_models())}; "
                f"known models: {', '.join(list_models())}"]
    o = {**model_options(), **{k: v for k, v in options.items()}}
    entry = _MODELS[name]
    spatial_ok = entry.spatial
    problems = []
    if o["spatial"] and not spatial_ok:
        problems.append(f"{p}spatial=true: spatial navigation is implemented for {', '.join(spatial_models())}; "
                        f"got {p}name={name!r}")
    tn = o["temporal_navigation"]
    if tn is not None and tn not in TEMPORAL_NAVIGATION:
        problems.append(f"{p}temporal_navigation={tn!r}; accepted: {', '.join(TEMPORAL_NAVIGATION)} or null")
    elif tn is not None and not spatial_ok:
        problems.append(f"{p}temporal_navigation={tn!r} is an option of {', '.join(spatial_models())}; "
                        f"got {p}name={name!r}")
    grid = o["region_grid"]
    grids = [grid] * 3 if isinstance(grid, int) else list(grid) if isinstance(grid, (list, tuple)) else None
    if grids is None or len(grids) != 3 or not all(type(g) is int and g >= 1 for g in grids):
        problems.append(f"{p}region_grid={_show(grid)}; accepted: a positive integer, or a list of 3 "
                        "(one per AF stage)")
    elif o["spatial"] and spatial_ok and input_size is not None:
        sizes = _family("AFResNet").focal_map_sizes(input_size)
        bad = [f"stage {i + 1}: {g} on {s}" for i, (g, s) in enumerate(zip(grids, sizes)) if s % g]
        if bad:
            problems.append(f"{p}region_grid={_show(grid)} does not divide the focal maps at "
                            f"{input_size_key}={input_size} "
                            f"(sides {sizes}; {', '.join(bad)}): choose a grid per AF stage, or an input size, "
                            "so that each grid divides its map")
    elif not o["spatial"] and tuple(grids) != (model_options()["region_grid"],) * 3:
        problems.append(f"{p}region_grid={_show(grid)} needs {p}spatial=true")
    bias = o["navigation_bias"]
    if bias is not None and not (isinstance(bias, (list, tuple)) and len(bias) == 2 and all(map(is_number, bias))
                                 and bias[1] > bias[0]):
        problems.append(f"{p}navigation_bias={_show(bias)}; accepted: [skip, keep] numbers with keep > skip, or null")
    elif bias is not None and not entry.navigation:
        problems.append(f"{p}navigation_bias={_show(bias)}: {name} has no navigation; leave it null")
    if o["shared_navigation"] not in (True, False):
        problems.append(f"{p}shared_navigation={o['shared_navigation']!r}; accepted: true or false")
    elif o["shared_navigation"] and not spatial_ok:
        problems.append(f"{p}shared_navigation=true is an option of {', '.join(spatial_models())}; "
                        f"got {p}name={name!r}")
    if not is_number(o["dropout"]) or not 0.0 <= o["dropout"] < 1.0:
        problems.append(f"{p}dropout={o['dropout']!r}; accepted: [0, 1)")
    spatial = bool(o["spatial"]) and spatial_ok
    problems += selection_problems({k: o[k] for k in CONFIGURE_OPTIONS}, has_navigation=entry.navigation,
                                   spatial=spatial, model=name, prefix=p)
    return problems


def _show(value):
    """Lists as YAML/JSON write them (``[4, 2]``), other values as repr."""
    return str(list(value)) if isinstance(value, (list, tuple)) else repr(value)


# ------------------------------------------------------------------ AF models
@register_model(navigation=True, spatial=True)
def af_resnet50(**kwargs) -> VideoModel:
    return _family("AFResNet")((3, 4, 6, 3), **kwargs)


@register_model(navigation=True, spatial=True)
def af_resnet101(**kwargs) -> VideoModel:
    return _family("AFResNet")((4, 8, 18, 3), **kwargs)


@register_model(navigation=True, spatial=True)
def af_resnet_small(**kwargs) -> VideoModel:
    return _family("AFResNet")(SMALL_LAYERS, widths=SMALL_WIDTHS, **kwargs)


@register_model(navigation=True)
def af_mobilenetv3(**kwargs) -> VideoModel:
    return _family("AFMobileNetV3")(**kwargs)


@register_model(navigation=True)
def nav_resnet50(**kwargs) -> VideoModel:
    """Table 5's single-branch ablation: navigation inside a plain ResNet-50."""
    return _family("NavResNet")((3, 4, 6, 3), **kwargs)


@register_model(navigation=True)
def nav_resnet_small(**kwargs) -> VideoModel:
    return _family("NavResNet")(SMALL_LAYERS, widths=SMALL_WIDTHS, **kwargs)


# ------------------------------------------------------------------ baselines
@register_model
def tsn_resnet50(shift: bool = False, **kwargs) -> VideoModel:
    return _family("ResNet")((3, 4, 6, 3), shift=shift, **kwargs)


@register_model
def tsm_resnet50(shift: bool = True, **kwargs) -> VideoModel:
    return _family("ResNet")((3, 4, 6, 3), shift=shift, **kwargs)


@register_model
def tsn_resnet101(shift: bool = False, **kwargs) -> VideoModel:
    return _family("ResNet")((3, 4, 23, 3), shift=shift, **kwargs)


@register_model
def tsm_resnet101(shift: bool = True, **kwargs) -> VideoModel:
    return _family("ResNet")((3, 4, 23, 3), shift=shift, **kwargs)


@register_model
def tsn_resnet_small(shift: bool = False, **kwargs) -> VideoModel:
    return _family("ResNet")(SMALL_LAYERS, widths=SMALL_WIDTHS, shift=shift, **kwargs)


@register_model
def tsm_resnet_small(shift: bool = True, **kwargs) -> VideoModel:
    return _family("ResNet")(SMALL_LAYERS, widths=SMALL_WIDTHS, shift=shift, **kwargs)


@register_model
def tsn_mobilenetv3(shift: bool = False, **kwargs) -> VideoModel:
    return _family("MobileNetV3")(shift=shift, **kwargs)


@register_model
def tsm_mobilenetv3(shift: bool = True, **kwargs) -> VideoModel:
    return _family("MobileNetV3")(shift=shift, **kwargs)


# Models built with spatial navigation (``spatial=True``).
SPATIAL_MODELS = spatial_models()
