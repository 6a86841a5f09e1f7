"""Training schedules as pure functions of (epoch, step): a resumed run recomputes exactly
the values an uninterrupted run would have used (the learning rate's ``LambdaLR`` holds only
the step count).

    target_ratio(epoch)              RT of Eq. 16, stepped down from 1 (authors' release);
                                     RS, the target region ratio (§3.3, §4), steps down the same way
    temperature(step, steps/epoch)   Gumbel-Softmax tau, exponential decay per iteration
    lr_factor(step, steps/epoch)     step decay or cosine, optional linear warm-up
"""
from __future__ import annotations

import math


def target_ratio(epoch: int, rt: float, rt_begin: float, rt_end: float) -> float:
    """1 before ``rt_begin``; ``rt + 2/3 (1 - rt)`` until halfway to ``rt_end``; then
    ``rt + 1/3 (1 - rt)``; ``rt`` from ``rt_end`` on."""
    if epoch < rt_begin:
        return 1.0
    if epoch < (rt_begin + rt_end) / 2:
        return rt + 2.0 / 3.0 * (1.0 - rt)
    if epoch < rt_end:
        return rt + 1.0 / 3.0 * (1.0 - rt)
    return rt


def temperature(step: int, steps_per_epoch: int, t_end: float, t_start: float = 1.0,
                t_min: float = 0.01) -> float:
    """``t_start * (t_min / t_start) ** (step / (t_end * steps_per_epoch))``, held at ``t_min``
    after ``t_end`` epochs."""
    progress = min(step / (t_end * steps_per_epoch), 1.0)
    return t_start * (t_min / t_start) ** progress


def lr_factor(step: int, steps_per_epoch: int, *, schedule: str, epochs: int, lr_steps=(),
              lr_decay: float = 0.1, warmup_epochs: float = 0.0) -> float:
    """Multiplier of the base learning rate at global ``step``. ``step``: x ``lr_decay`` at each
    epoch of ``lr_steps`` reached; ``cosine``: half cosine from 1 to 0 over ``epochs``
    (per iteration); warm-up: linear from ``1/warmup_steps`` to 1 over ``warmup_epochs``."""
    epoch = step / steps_per_epoch
    if schedule == "step":
        factor = lr_decay ** sum(int(step // steps_per_epoch) >= s for s in lr_steps)
    elif schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(epoch / epochs, 1.0)))
    else:
        raise ValueError(f"schedule={schedule!r}; accepted: step, cosine")
    warmup_steps = warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor
