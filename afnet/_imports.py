"""Import machinery shared by the packages: lazy public names and optional dependencies.

- :func:`lazy_exports`: a package lists its public names and the module of each; a name is
  imported on first use (``afnet.create_model`` imports torch then, ``import afnet`` does not).
  This keeps ``afnet --help`` and argument errors fast and ``import afnet`` free of
  Lightning and matplotlib.
- :func:`require`: import an optional dependency, or raise an ImportError that names the
  extra to install (``pip install 'afnet[video]'``).
"""
from __future__ import annotations

import importlib
import importlib.util

# Optional dependency -> the extra of pyproject.toml that installs it.
EXTRAS = {"av": "video", "lightning": "train", "torchmetrics": "train", "tensorboard": "train",
          "tqdm": "train", "omegaconf": "train", "matplotlib": "viz", "onnx": "export", "onnxscript": "export",
          "onnxruntime": "export", "fastapi": "serve", "uvicorn": "serve", "python_multipart": "serve",
          "mlflow": "mlflow", "wandb": "wandb"}


def require(module: str, purpose: str):
    """``import module``, or ImportError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS.get(module.partition(".")[0], "all")
        raise ImportError(f"{purpose} needs {module.partition('.')[0]}, which is not installed: "
                          f"pip install 'afnet[{extra}]'") from exc


def lazy_exports(namespace: dict, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for the package whose ``globals()`` is ``namespace``: its
    public names ``exports`` map to the module that defines each; a name is imported on first
    access, then cached in the package. Submodules import on first access too (``afnet.data``)."""
    package = namespace["__name__"]

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
                return importlib.import_module(f"{package}.{name}")  # a submodule: afnet.data
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
