"""Checkpoint I/O: the project's own checkpoints and the authors' released ones.

One loader for every source; model files never read files themselves.

- afnet checkpoints: ``{"format": "afnet", "arch", "model_args", "state_dict", ...}``.
- afnet packages (:mod:`afnet.package`): ``model.safetensors`` + ``config.json``, read as an afnet checkpoint.
- Authors' ImageNet backbones: ``{"state_dict": {"module.<name>": ...}}``, stage 4 and a
  1000-class classifier; navigation and classifier are left freshly initialised (the
  loader reports which entries it skipped and why).
- Authors' video models (Something-Something V1): ``module.base_model.*`` plus
  ``module.new_fc.*`` (MobileNetV3 keeps its classifier inside ``base_model.fc``).

Files are read with ``torch.load(..., weights_only=True)``: a checkpoint never executes code.
Every mismatch is reported by name: missing and unexpected keys, shape mismatches (with the
frame count a navigation convolution implies), a different classifier size.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("afnet")

FORMAT = "afnet"
BACKBONE_SOURCES = ("authors' ImageNet", "afnet image backbone (T=1)")
# Temporal and spatial navigation modules, at any depth (``navigation.`` alone: the one module
# of ``temporal_navigation="first"``): not part of an image backbone.
_NAVIGATION = re.compile(r"(^|\.)(navigation|spatial)\.")
_SPATIAL = re.compile(r"(^|\.)spatial\.")
_NAVIGATION_LAST = re.compile(r"(^|\.)navigation\.(\d+\.)*conv2\.")   # the frame navigation's last layer

# The authors' module names -> ours, applied in order (paper words: ample, focal, navigation, fusion).
_AUTHORS_PREFIX = ((r"^module\.base_model\.", ""), (r"^module\.new_fc\.", "fc."), (r"^module\.", ""))
_AUTHORS_RENAMES = (
    # AF-MobileNetV3 stage containers
    (r"^features_head\.", "stage0."),
    (r"^list_gen(\d)\.", r"stage\1.navigation."),
    (r"^features_stage(\d)_base\.", r"stage\1.ample."),
    (r"^features_stage(\d)_refine\.", r"stage\1.focal."),
    (r"^features_stage(\d)_fuse\.0\.", r"stage\1.fusion_block."),
    (r"^att_gen(\d)\.", r"stage\1.fusion."),
    (r"^features_stage(\d)\.", r"stage\1."),
    # AF-ResNet stage members
    (r"\.list_gen\.", ".navigation."),
    (r"\.base_module\.", ".ample."),
    (r"\.refine_module\.", ".focal."),
    (r"\.base_transform\.", ".ample_proj."),
    (r"\.fusion\.0\.", ".fusion_block."),
    (r"\.att_gen\.", ".fusion."),
    # navigation module: W1, BN, W2 of paper Eq. 2-3
    (r"\.conv_pool\.", ".conv1."),
    (r"(\.navigation\.\d+)\.bn\.", r"\1.bn1."),
    (r"\.conv_gs\.", ".conv2."),
    # block shortcuts
    (r"\.downsample\.", ".shortcut."),
    (r"\.res_connect\.", ".shortcut."),
)


# Module names of afnet checkpoints written before a rename -> today's (one entry per rename;
# applied to keys the model does not have).
_AFNET_RENAMES = (
    (r"^head\.", "stage0."),   # AF-MobileNetV3's first inverted residual (was ``head``)
)


def translate_afnet_key(key: str, own: set) -> str:
    """An afnet checkpoint's key under today's module names (``own``: the model's keys)."""
    if key in own:
        return key
    for pattern, repl in _AFNET_RENAMES:
        key = re.sub(pattern, repl, key)
    return key


def translate_authors_key(key: str) -> str:
    """Map one key of the authors' checkpoints onto this package's module names."""
    for pattern, repl in _AUTHORS_PREFIX:
        new = re.sub(pattern, repl, key)
        if new != key:
            key = new
            break
    for pattern, repl in _AUTHORS_RENAMES:
        key = re.sub(pattern, repl, key)
    return key


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did: the source kind, how many tensors it copied, and
    the entries it left as initialised (``skipped``: key -> reason; also an image backbone's
    navigation entries the model has no place for)."""

    source: str
    loaded: int
    skipped: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def is_backbone(self) -> bool:
        """An image-pretrained backbone (authors' ImageNet file, or an afnet checkpoint trained
        with T=1 loaded into a video model): navigation and classifier start fresh."""
        return self.source in BACKBONE_SOURCES

    def __str__(self) -> str:
        lines = [f"loaded {self.loaded} tensors from a {self.source} checkpoint"]
        lines += [f"  left initialised: {k} ({why})" for k, why in self.skipped.items()]
        return "\n".join(lines)


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message names every offending key."""


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra) -> None:
    """Write ``model`` (and ``extra`` entries: optimiser, epoch, config, metrics, ...)
    atomically: to a temporary file in the same folder, then renamed over ``path``, so an
    interrupted save never leaves a truncated checkpoint behind."""
    path = Path(path)
    state = {
        "format": FORMAT,
        "arch": getattr(model, "arch", type(model).__name__),
        "model_args": model_args(model),
        "state_dict": model.state_dict(),
        **extra,
    }
    atomic_torch_save(state, path)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the target's folder, fsynced, then renamed over the
    target (:func:`afnet.io.torch_save`): a reader sees the old file or the new one, never a
    truncated one; a full disk is a :class:`afnet.io.DiskFull` naming the file."""
    from afnet.io import torch_save

    torch_save(obj, path)


def model_args(model: nn.Module) -> dict:
    """The arguments :func:`create_model` needs to rebuild ``model``, as the model describes
    itself (:meth:`VideoModel.model_args`)."""
    return model.model_args()


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict of a weights source (:func:`afnet.weights.resolve`: a file, a package
    folder, a URL or ``hf-hub:``): a package as :func:`afnet.package.read_package` gives it, a
    file by ``torch.load`` with ``weights_only=True``; errors name the source."""
    from afnet.package import is_package, read_package
    from afnet.weights import is_remote, resolve

    if not is_remote(path) and not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    path = resolve(path)
    if is_package(path):
        return read_package(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (a folder, but no afnet package: no config.json)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or corrupt file
        raise CheckpointError(f"{path}: cannot read as a weights-only torch checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, skip_classifier: bool = False) -> LoadReport:
    """Load an afnet or authors' checkpoint into ``model`` in place.

    Args:
        model: the network to fill (built by :func:`~afnet.models.create_model`).
        path: an afnet checkpoint or package, one of the authors' (video or ImageNet), or a plain
            state_dict; a local path, an http(s) URL or ``hf-hub:org/repo[/file]`` (:mod:`afnet.weights`).
        skip_classifier: leave the classifier as initialised (fine-tuning on another label set).

    Returns:
        A :class:`LoadReport` of what was loaded and left as initialised. Raises
        :class:`CheckpointError` naming missing/unexpected keys and shape mismatches.
    """
    ckpt = read_checkpoint(path)
    state = ckpt.get("state_dict", ckpt)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' must map names to tensors")
    if ckpt.get("format") == FORMAT:
        trained_frames = (ckpt.get("model_args") or {}).get("num_frames")
        source = BACKBONE_SOURCES[1] if trained_frames == 1 and model.num_frames != 1 else "afnet"
        own = set(model.state_dict())
        state = {translate_afnet_key(k, own): v for k, v in state.items()}
    elif any(k.startswith("module.base_model.") for k in state):
        source = "authors' video"
        state = {translate_authors_key(k): v for k, v in state.items()}
    elif any(k.startswith("module.") for k in state):
        source = "authors' ImageNet"
        state = {translate_authors_key(k): v for k, v in state.items()}
    else:
        source = "plain state_dict"
    report = _copy_state(model, state, source, path, skip_classifier)
    report.meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    # Entries left as initialised are worth a user's attention (logging's default handler
    # prints warnings to stderr); a complete load is only informational.
    log.log(logging.WARNING if report.skipped else logging.INFO, "%s: %s", path, report)
    return report


def _classifier_prefix(model: nn.Module) -> str:
    target = model.classifier()
    return next(name for name, m in model.named_modules() if m is target) + "."


def _copy_state(model, state, source, path, skip_classifier) -> LoadReport:
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    head = _classifier_prefix(model)
    fresh_ok = source in BACKBONE_SOURCES  # navigation and classifier are not part of a backbone
    # a temporal-only video model (e.g. a released one) starting a spatial model of the same layout
    add_spatial = not any(_SPATIAL.search(k) for k in state)
    report = LoadReport(source, 0)
    problems = []

    def optional(key: str) -> str | None:
        """Why ``key`` may stay as initialised when the checkpoint lacks or misfits it."""
        if key.startswith(head) and fresh_ok:
            return "classifier, freshly initialised"
        if _NAVIGATION.search(key) and fresh_ok:
            return "navigation, freshly initialised (image backbone)"
        if _SPATIAL.search(key) and add_spatial:
            return "spatial navigation, freshly initialised (the checkpoint has none)"
        return None

    for key in sorted(set(state) - set(own)):
        if _NAVIGATION.search(key) and fresh_ok:  # e.g. per-block navigation, the model's is at the first layer
            report.skipped[key] = "backbone navigation the model does not have, not loaded"
        else:
            problems.append(f"unexpected key {key} {tuple(state[key].shape)}")
    to_load = {}
    for key, value in own.items():
        if skip_classifier and key.startswith(head):
            report.skipped[key] = "classifier, freshly initialised"
            continue
        if fresh_ok and _NAVIGATION_LAST.search(key):   # a T=1 backbone's frame navigation never chose
            # frames: its last layer (the starting bias) fresh even where its shape fits (shared over positions)
            report.skipped[key] = "navigation, freshly initialised (image backbone)"
            continue
        reason = optional(key)
        if key not in state:
            if reason:
                report.skipped[key] = reason
            else:
                problems.append(f"missing key {key} {tuple(value.shape)}")
            continue
        if state[key].shape != value.shape:
            if reason:
                report.skipped[key] = f"{reason}; checkpoint shape {tuple(state[key].shape)}"
                continue
            problems.append(_shape_problem(key, state[key].shape, value.shape, head))
            continue
        to_load[key] = state[key]
    if problems:
        raise CheckpointError(f"{path} ({source}) does not fit {type(model).__name__}:\n  " + "\n  ".join(problems))
    with torch.no_grad():
        for key, value in to_load.items():
            _get(model, key).copy_(value)
    report.loaded = len(to_load)
    return report


def _shape_problem(key, theirs, ours, head) -> str:
    msg = f"shape mismatch at {key}: checkpoint {tuple(theirs)}, model {tuple(ours)}"
    if re.search(r"(^|\.)navigation\.", key) and key.split(".")[-2] == "conv2":
        msg += (f" (the navigation conv is sized by the frame count: checkpoint T={theirs[0] // 2}, "
                f"model T={ours[0] // 2})")
    elif key.startswith(head) and theirs[0] != ours[0]:
        msg += (f" (classifier size: checkpoint has {theirs[0]} classes, model {ours[0]}; "
                "use skip_classifier=True to fine-tune)")
    return msg


def _get(model: nn.Module, key: str) -> torch.Tensor:
    module_name, _, attr = key.rpartition(".")
    return getattr(model.get_submodule(module_name), attr)
