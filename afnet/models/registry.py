"""Model registry: two-line entry points registered by name, one builder per family."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from afnet.models.base import VideoModel

_MODELS: dict[str, Callable[..., "VideoModel"]] = {}

# The small variant: fewer and narrower blocks, trains on 2 CPU cores in minutes.
SMALL_LAYERS = (2, 2, 2, 1)
SMALL_WIDTHS = (16, 32, 64, 128)
# Models built with spatial navigation (``spatial=True``).
SPATIAL_MODELS = ("af_resnet50", "af_resnet101", "af_resnet_small")


def _family(name: str):
    """A model class, imported on first use: listing the zoo needs no torch."""
    module = "afnet.models.mobilenetv3" if "MobileNet" in name else "afnet.models.resnet"
    return getattr(importlib.import_module(module), name)


def register_model(fn: Callable[..., VideoModel]) -> Callable[..., VideoModel]:
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_MODELS)


def create_model(name: str, *, num_classes: int, num_frames: int, shift: bool | None = None,
                 selection: str | None = None, ratio: float | None = None, execution: str = "auto",
                 dense_above: float | None = None, spatial: bool = False, region_selection: str | None = None,
                 region_ratio: float | None = None, **kwargs) -> VideoModel:
    """Build a model of the zoo.

    name: one of :func:`list_models`. shift: temporal shift (TSM) in every block; ``None``
    takes the model's default (off, except AF-MobileNetV3 whose release always shifts).
    selection / ratio / execution / dense_above: see :meth:`VideoModel.configure`;
    ``selection`` defaults to ``navigation`` for AF models, ``all`` for baselines.
    spatial: spatial navigation (paper §3.3, AF-ResNet family): with ``region_grid`` (default
    7) and ``temporal_navigation`` (``"first"`` by default with it, else ``"block"``) passed
    on to :class:`AFResNet`. region_selection / region_ratio: see :meth:`VideoModel.configure`;
    ``region_selection`` defaults to ``navigation`` for spatial models.
    Other keyword arguments (``dropout``, ...) go to the model's constructor.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    if shift is not None:
        kwargs["shift"] = shift
    if spatial:
        if name not in SPATIAL_MODELS:
            raise ValueError(f"spatial navigation is implemented for {', '.join(SPATIAL_MODELS)}; got {name!r}")
        kwargs["spatial"] = True
    model = _MODELS[name](num_classes=num_classes, num_frames=num_frames, **kwargs)
    if selection is None:
        selection = "navigation" if model.has_navigation else "all"
    if region_selection is None:
        region_selection = "navigation" if model.spatial else "all"
    model.configure(selection=selection, ratio=ratio, execution=execution, dense_above=dense_above,
                    region_selection=region_selection, region_ratio=region_ratio)
    model.arch = name
    return model


# ------------------------------------------------------------------ AF models
@register_model
def af_resnet50(**kwargs) -> VideoModel:
    return _family("AFResNet")((3, 4, 6, 3), **kwargs)


@register_model
def af_resnet101(**kwargs) -> VideoModel:
    return _family("AFResNet")((4, 8, 18, 3), **kwargs)


@register_model
def af_resnet_small(**kwargs) -> VideoModel:
    return _family("AFResNet")(SMALL_LAYERS, widths=SMALL_WIDTHS, **kwargs)


@register_model
def af_mobilenetv3(**kwargs) -> VideoModel:
    return _family("AFMobileNetV3")(**kwargs)


@register_model
def nav_resnet50(**kwargs) -> VideoModel:
    """Table 5's single-branch ablation: navigation inside a plain ResNet-50."""
    return _family("NavResNet")((3, 4, 6, 3), **kwargs)


@register_model
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
