"""Dataset presets: everything that differs between the paper's datasets.

A preset is a frozen :class:`DatasetConfig`; every field can be overridden::

    cfg = get_preset("sthv2", num_frames=8, frame_template="{:05d}.jpg")

Unknown keys are rejected with an error naming the key and listing the
accepted ones.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from afnet.errors import did_you_mean

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SAMPLING_MODES = ("tsn", "dense")
SOURCES = ("video", "image_folder")


@dataclass(frozen=True)
class DatasetConfig:
    """How one dataset is read, sampled and transformed.

    Attributes:
        name: preset name.
        num_classes: number of classes (labels must lie in ``[0, num_classes)``).
        frame_template: file name of frame ``i`` (numbered from 1) inside a
            frame folder, formatted with ``template.format(i)``.
        flip: whether random horizontal flip is allowed in training (False for
            datasets whose labels name directions: Something-Something, Jester).
        num_frames: frames per clip ``T`` (the paper's setting per dataset).
        sampling: ``"tsn"`` (one frame per segment) or ``"dense"`` (stride).
        stride: frame stride for dense sampling.
        input_size: side of the square crop fed to the model.
        scale_size: short side after resizing in evaluation.
        scales: multi-scale crop sizes, as fractions of the short side.
        num_clips: clips per video in evaluation (multi-clip testing).
        num_crops: 1 (centre crop) or 3 (three-crop) in evaluation.
        multi_label: targets are multi-hot vectors (ActivityNet, evaluated by mAP).
        mean, std: normalisation statistics (ImageNet).
        source: ``"video"`` (annotation file of videos or frame folders) or
            ``"image_folder"`` (``<split>/<class>/<image>``, one frame per image; the
            annotation file is the split's folder).
    """

    name: str = "custom"
    num_classes: int = 0
    frame_template: str = "{:05d}.jpg"
    flip: bool = True
    num_frames: int = 8
    sampling: str = "tsn"
    stride: int = 2
    input_size: int = 224
    scale_size: int = 256
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    num_clips: int = 1
    num_crops: int = 1
    multi_label: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = "video"

    def __post_init__(self) -> None:
        problems = []
        if self.num_classes < 1:
            problems.append(f"num_classes={self.num_classes!r} (expected a positive integer)")
        if self.num_frames < 1:
            problems.append(f"num_frames={self.num_frames!r} (expected a positive integer)")
        if self.sampling not in SAMPLING_MODES:
            problems.append(f"sampling={self.sampling!r} (expected one of {SAMPLING_MODES})")
        if self.stride < 1:
            problems.append(f"stride={self.stride!r} (expected a positive integer)")
        if self.num_clips < 1:
            problems.append(f"num_clips={self.num_clips!r} (expected a positive integer)")
        if self.num_crops not in (1, 3):
            problems.append(f"num_crops={self.num_crops!r} (expected 1 or 3)")
        if not self.scales or not all(isinstance(x, (int, float)) and 0 < x <= 1 for x in self.scales):
            problems.append(f"scales={self.scales!r} (expected crop scales in (0, 1])")
        if self.source not in SOURCES:
            problems.append(f"source={self.source!r} (expected one of {SOURCES})")
        elif self.source == "image_folder" and self.num_frames != 1:
            problems.append(f"num_frames={self.num_frames!r} (an image folder has one frame per image)")
        if self.input_size > self.scale_size:
            problems.append(
                f"input_size={self.input_size} > scale_size={self.scale_size} "
                "(the crop must fit in the resized frame)"
            )
        try:
            self.frame_template.format(1)
        except (IndexError, KeyError, ValueError) as exc:
            problems.append(
                f"frame_template={self.frame_template!r} cannot format a frame number ({exc}); "
                "expected e.g. '{:05d}.jpg'"
            )
        if problems:
            raise ValueError(f"invalid DatasetConfig {self.name!r}: " + "; ".join(problems))

    @property
    def num_views(self) -> int:
        """Views per video in evaluation (clips x crops)."""
        return self.num_clips * self.num_crops


PRESETS: dict[str, DatasetConfig] = {
    "sthv1": DatasetConfig(
        name="sthv1", num_classes=174, frame_template="{:05d}.jpg", flip=False, num_frames=12
    ),
    "sthv2": DatasetConfig(
        name="sthv2", num_classes=174, frame_template="{:06d}.jpg", flip=False, num_frames=12
    ),
    "jester": DatasetConfig(
        name="jester", num_classes=27, frame_template="{:05d}.jpg", flip=False, num_frames=8
    ),
    "minikinetics": DatasetConfig(
        name="minikinetics", num_classes=200, frame_template="image_{:05d}.jpg", flip=True,
        num_frames=8,
    ),
    "activitynet": DatasetConfig(
        name="activitynet", num_classes=200, frame_template="image_{:05d}.jpg", flip=True,
        num_frames=12, multi_label=True,
    ),
    "kinetics": DatasetConfig(
        name="kinetics", num_classes=400, frame_template="img_{:05d}.jpg", flip=True, num_frames=8
    ),
    # Output of ``afnet make-synthetic`` (classes name directions: no flip).
    "synthetic": DatasetConfig(
        name="synthetic", num_classes=8, frame_template="{:05d}.jpg", flip=False, num_frames=8,
        input_size=56, scale_size=64, scales=(1.0, 0.875, 0.75),
    ),
    # ImageNet-style folders (<split>/<class>/<image>) for pre-training the backbone, T=1.
    "imagefolder": DatasetConfig(
        name="imagefolder", num_classes=1000, num_frames=1, flip=True, input_size=224, scale_size=256,
        scales=(1.0, 0.875, 0.75, 0.66, 0.5), source="image_folder",
    ),
}

_FIELDS = tuple(f.name for f in dataclasses.fields(DatasetConfig))


def replace_config(config: DatasetConfig, **overrides) -> DatasetConfig:
    """``dataclasses.replace`` that names an unknown key and lists the accepted ones."""
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown dataset option(s) {', '.join(map(repr, unknown))} for preset "
            f"{config.name!r}; accepted: {', '.join(_FIELDS)}"
        )
    if "scales" in overrides:
        overrides["scales"] = tuple(float(s) for s in overrides["scales"])
    return dataclasses.replace(config, **overrides)


def get_preset(name: str | DatasetConfig, **overrides) -> DatasetConfig:
    """Return preset ``name`` (one of :data:`PRESETS`) with ``overrides`` applied."""
    if isinstance(name, DatasetConfig):
        return replace_config(name, **overrides)
    try:
        base = PRESETS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown dataset preset {name!r}{did_you_mean(name, PRESETS)}; accepted: {', '.join(PRESETS)}"
        ) from None
    return replace_config(base, **overrides)
