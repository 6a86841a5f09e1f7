"""Inference-time preparation: what turns fewer FLOPs into less wall-clock on a CPU.

Each step is measured in ``benchmarks/bench_models.py`` (README, "Speed"):

- channels-last activations (oneDNN's native layout for these convolutions);
- BatchNorm folded into the preceding convolution (eval only): the forward path stays the
  same, the BN modules become identities;
- opt-in (``tune_malloc=True``, process-wide, so never by default): glibc's allocator kept
  from returning large activations to the OS (a fresh ``mmap`` per call costs a page fault
  per 4 KiB page). The ``afnet predict``/``explain``/``zoo`` commands and the benchmarks
  turn it on; a library user decides for their own process;
- optional bfloat16 autocast.

The model's forward path is unchanged: the same ``forward`` runs, on folded weights.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from afnet.errors import OptionError
from afnet.models.options import COMPILE_MODES, PRECISIONS

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_malloc_tuned = False


def check_threads(threads: int | None) -> int | None:
    """``threads`` (a thread count, or ``None`` for the default) when it is positive."""
    if threads is not None and threads < 1:
        raise OptionError(f"{{threads}} must be positive, got {threads}", "threads")
    return threads


def set_threads(threads: int | None, default: int | None = None) -> None:
    """torch's CPU threads: ``threads``, else ``default``; neither: torch's own choice stays."""
    chosen = check_threads(threads) or default
    if chosen is not None:
        torch.set_num_threads(chosen)


def keep_allocations() -> bool:
    """Ask glibc to serve large blocks from the heap and keep freed memory, so activation
    buffers are reused across calls instead of being mmapped (and page-faulted) afresh.
    Returns whether the setting took effect (False off glibc)."""
    global _malloc_tuned
    if _malloc_tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):
        return False
    _malloc_tuned = ok
    return ok


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> bool:
    conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        return False
    setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
    setattr(parent, bn_name, nn.Identity())
    return True


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a convolution into it (eval mode only).

    Pairs are ``convN``/``bnN`` attributes of one module (``conv1``/``bn1``, ``conv``/``bn``,
    ``conv_last``/``bn_last``) and consecutive Conv2d, BatchNorm2d in a Sequential.
    Returns the number of folded pairs.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs model.eval(): folding uses the running statistics")
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            items = list(module._modules.items())
            for (cname, conv), (bname, bn) in zip(items, items[1:]):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    folded += _fold_pair(module, cname, bname)
            continue
        for name in list(module._modules):
            if name.startswith("conv"):
                folded += _fold_pair(module, name, "bn" + name[len("conv"):])
    return folded


# The CPU flags that decide kernel speed, shown with every timing table.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
# Native bf16 arithmetic on x86: without one of these, bf16 runs emulated.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> frozenset:
    """The CPU's feature flags as Linux reports them (``/proc/cpuinfo``); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_description() -> str:
    """The CPU model and its :data:`SPEED_FLAGS`, for the protocol line of a timing table."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    shown = [f for f in SPEED_FLAGS if f in cpu_flags()]
    return f"{model}, flags {' '.join(shown) or 'none of ' + '/'.join(SPEED_FLAGS)}"


def native_bf16(device="cpu") -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA device that supports it, or a CPU with
    AVX-512 BF16 or AMX. Elsewhere bf16 autocast is emulated: on an AVX2-only CPU it made every
    model about 7x slower than fp32 (issue #12)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and any(flag in cpu_flags() for flag in BF16_FLAGS)


def bf16_for(precision: str) -> bool | str:
    """The ``bf16`` argument of :func:`prepare_for_inference` for a precision name of
    :data:`~afnet.models.options.PRECISIONS` (``fp32``, ``bf16``, ``auto``)."""
    choices = dict(zip(PRECISIONS, (False, True, "auto")))
    if precision not in choices:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return choices[precision]


def precision_of(model: nn.Module) -> str:
    """``"bf16"`` where :func:`prepare_for_inference` chose bf16 autocast, else ``"fp32"``."""
    return "bf16" if getattr(model, "autocast_dtype", None) == torch.bfloat16 else "fp32"


def prepare_for_inference(model: nn.Module, *, channels_last: bool = True, fold_bn: bool = True,
                          bf16: bool | str = False, tune_malloc: bool = False) -> nn.Module:
    """Put ``model`` in eval mode and apply the CPU inference steps above, in place.

    ``bf16``: ``"auto"`` autocasts to bf16 only where the model's device computes it natively
    (:func:`native_bf16`); ``True`` forces it, with a warning where it would be emulated.

    ``tune_malloc``: also call :func:`keep_allocations`, which changes glibc's allocator for
    the whole process (off by default: a library must not do that behind its user's back).

    Logits match the unprepared model to float tolerance (bf16: to bf16 tolerance; frame
    choices may then differ where keep and skip logits are nearly tied)."""
    model.eval()
    if fold_bn:
        fold_batchnorm(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if bf16 not in (True, False, "auto"):
        raise ValueError(f"bf16 must be True, False or 'auto', got {bf16!r}")
    device = next(model.parameters()).device
    if bf16 == "auto":
        bf16 = native_bf16(device)
    elif bf16 and not native_bf16(device):
        warnings.warn(f"bf16 forced on {device}, which has no native bf16 ({cpu_description()}): it runs emulated, "
                      f"several times slower than fp32 (7x measured on an AVX2 CPU); bf16='auto' chooses by "
                      f"capability", RuntimeWarning, stacklevel=2)
    model.autocast_dtype = torch.bfloat16 if bf16 else None
    if tune_malloc:
        keep_allocations()
    return model


def quiet_lightning() -> None:
    """For a command that owns its process (``afnet train``, ``eval``, ``calibrate``,
    ``batch-predict``, ``demo``): Lightning's start-up banners ("GPU available ..."), its
    litlogger tip and its own deprecation warnings are kept off stderr; its warnings about the
    run stay. A library call leaves logging alone. (Lightning's progress bar writes to stderr:
    :class:`afnet.engine.run.StderrProgressBar`; stdout carries the commands' JSON.)"""
    import logging

    import lightning.pytorch  # noqa: F401  (its import sets its loggers' level: ours must come after)

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


# ----------------------------------------------------------------------------- devices
DEVICE_CHOICES = "cpu, cuda, cuda:N, mps or auto"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` of a device name: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``
    (``None``: ``auto``; the GPU where torch sees one, else Apple's MPS, else the CPU).

    Raises :class:`~afnet.errors.OptionError` (naming ``{device}``) in one line when the
    device is not one of these or is not there: a GPU asked for where torch sees none."""
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise OptionError(f"{{device}} {text}: not a device; accepted: {DEVICE_CHOICES}", "device") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU or driver is visible"
            raise OptionError(f"{{device}} {text}: {why} (torch {torch.__version__}); use {{device}} cpu or auto",
                              "device")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise OptionError(f"{{device}} {text}: torch sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}",
                              "device")
        return device
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise OptionError(f"{{device}} {text}: no Apple MPS device here; use {{device}} cpu or auto", "device")
        return device
    raise OptionError(f"{{device}} {text}: not supported; accepted: {DEVICE_CHOICES}", "device")


def full_fp32() -> None:
    """Turn off TF32 for CUDA convolutions and matrix products (process-wide: torch lets cuDNN
    use TF32 by default, which rounds fp32 inputs to 10 mantissa bits). A command that owns its
    process and promises fp32 calls it, so a GPU gives the CPU's answer to float tolerance."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def synchronize(device: torch.device | str) -> None:
    """Wait until ``device`` has run the work queued on it (a GPU runs asynchronously: a clock
    read without this times the launch, not the work). Nothing to wait for on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn, *args, device: torch.device | str = "cpu", **kwargs):
    """``(fn(*args, **kwargs), milliseconds)``: the wall-clock of the call with ``device``
    synchronised before and after, so that the time is the device's work, not its queueing."""
    import time

    synchronize(device)
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    synchronize(device)
    return result, (time.perf_counter() - start) * 1e3


# ----------------------------------------------------------------------------- compilation


def compile_forward(model: nn.Module, mode: str = "default"):
    """``model``'s forward compiled by ``torch.compile`` in ``mode`` (:data:`COMPILE_MODES`;
    ``reduce-overhead`` replays CUDA graphs on a GPU), as a separate callable: the model itself
    stays eager (FLOPs are counted on it). A forward whose counts the policy fixes (static-k,
    the fixed policies, masked execution) is one graph; counts read from the masks break it
    there. The first call at each input shape compiles (seconds to a minute)."""
    if mode not in COMPILE_MODES:
        raise OptionError(f"{{compile}} {mode!r}: accepted: {', '.join(COMPILE_MODES)}", "compile")
    return torch.compile(model, mode=None if mode == "default" else mode)
