"""GFLOPs per video, counted from the operations a forward pass actually runs.

There is no per-layer formula kept beside the forward: torch's FLOP counter
(``torch.utils.flop_counter.FlopCounterMode``) records every convolution and matrix
multiply dispatched while the model runs, so sparse execution is counted as the gathered
frames it computed. As in the paper, "FLOPs" are multiply-accumulates (the counter's
FLOPs / 2).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(model: nn.Module, video: torch.Tensor, temperature: float = 1.0, *, warmup: bool = True) -> float:
    """GFLOPs (multiply-accumulates) per video for ``model(video)`` in the model's current
    mode and execution, counted on the one forward path that runs.

    Args:
        model: a video model (or anything called as ``model(video, temperature)``).
        video: (B, T, 3, H, W) input; the count is divided by B.
        temperature: passed to the model (Gumbel-Softmax, training mode).
        warmup: a first, uncounted pass that fills per-weight caches (the focal branch's
            response to a skipped frame is computed once, not per video); skip it when the
            model has already run at this shape.

    Returns:
        GFLOPs per video.
    """
    with torch.no_grad():
        if warmup:
            model(video, temperature)
        with FlopCounterMode(display=False) as counter:
            model(video, temperature)
    return counter.get_total_flops() / 2 / 1e9 / video.shape[0]


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BN running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
