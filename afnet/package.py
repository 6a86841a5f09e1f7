"""A self-describing model package: a folder holding the weights in safetensors and what
rebuilds and feeds the model, as timm and transformers lay theirs out::

    model.safetensors   the state_dict (tensors only: nothing is unpickled when read)
    config.json         format          "afnet-package"
                        afnet_version   the afnet that wrote it
                        arch            the create_model name
                        model_args      create_model's arguments (num_classes, num_frames, shift, ...)
                        selection       VideoModel.configure's frame and region policy as converted
                                        (selection, ratio, region_selection, region_ratio)
                        labels          class names (index order), or null
                        preprocessing   the evaluation DatasetConfig: sampling, input_size,
                                        scale_size, mean, std, ... (as in an ONNX export's metadata)

``afnet convert`` writes one from any checkpoint (:func:`afnet.inference.model.convert_checkpoint`);
:func:`read_package` gives it back in the shape of a project checkpoint, so that
:func:`afnet.checkpoint.read_checkpoint`, and through it every loader, reads a package as it
reads a file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from afnet._imports import require

FORMAT = "afnet-package"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PACKAGE_FILES = (CONFIG_FILE, WEIGHTS_FILE)
SELECTION_KEYS = ("selection", "ratio", "region_selection", "region_ratio")


def is_package(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def write_package(out_dir: str | os.PathLike, model, *, labels: list[str] | None, preprocessing: dict) -> Path:
    """Write ``model`` (a :class:`~afnet.models.VideoModel`, not prepared for inference: its
    batch norms unfolded) with its ``labels`` and ``preprocessing`` (``asdict`` of the evaluation
    :class:`~afnet.data.DatasetConfig`) to ``out_dir``; each file atomically."""
    from afnet import __version__

    safetensors_torch = require("safetensors.torch", "afnet packages")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "afnet_version": __version__, "arch": model.arch, "model_args": model.model_args(),
              "selection": {k: getattr(model, k) for k in SELECTION_KEYS if getattr(model, k, None) is not None},
              "labels": labels, "preprocessing": preprocessing}
    # safetensors refuses tensors that share storage: each entry is its own copy
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    _atomic(out / WEIGHTS_FILE, lambda tmp: safetensors_torch.save_file(state, str(tmp), metadata={"format": "pt"}))
    _atomic(out / CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(config, indent=1) + "\n"))
    return out


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_config(path: str | os.PathLike) -> dict:
    """The ``config.json`` of the package folder ``path``, checked to be one."""
    file = Path(path) / CONFIG_FILE
    try:
        config = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{file}: cannot read as JSON: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{file}: not an afnet package config (expected \"format\": \"{FORMAT}\")")
    missing = [k for k in ("arch", "model_args", "preprocessing") if k not in config]
    if missing:
        raise ValueError(f"{file}: lacks {', '.join(missing)}")
    return config


def read_package(path: str | os.PathLike) -> dict:
    """The package at ``path`` as a project checkpoint dict: ``format: "afnet"``, ``arch``,
    ``model_args``, ``state_dict``, ``class_names`` and a ``config`` with the ``data`` and
    ``model`` entries a training run records (preset, sizes; frame and region policy), plus
    ``preprocessing`` and ``package`` (the config.json)."""
    safetensors_torch = require("safetensors.torch", "afnet packages")
    config = read_config(path)
    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: package has no {WEIGHTS_FILE}")
    prep = config["preprocessing"]
    data = {"preset": prep.get("name"), "input_size": prep.get("input_size"), "scale_size": prep.get("scale_size")}
    return {"format": "afnet", "arch": config["arch"], "model_args": config["model_args"],
            "state_dict": safetensors_torch.load_file(str(weights)), "class_names": config.get("labels"),
            "config": {"data": data, "model": dict(config.get("selection") or {})},
            "preprocessing": prep, "package": config}
