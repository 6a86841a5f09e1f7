"""Frame sampling: which frames of a video make a clip.

Every function returns 0-based frame indices (sorted, in ``[0, num_frames)``)
as a ``torch.long`` tensor; randomness comes only from the ``generator``
argument (see :func:`sample_generator`), never from a global RNG.

* TSN segments: the video is cut into ``T`` equal segments (boundaries
  ``floor(i * n / T)``); training picks a uniform random frame inside each
  segment (distinct frames when ``n >= T``), evaluation the segment centre
  ``int(n / T * (i + 0.5))`` (the TSN/TSM test formula). When ``n < T``
  segments are shorter than a frame, so indices repeat (never wrap, never
  invent frames).
* Dense: ``T`` frames ``stride`` apart; random start in training, centred in
  evaluation. When the span ``(T - 1) * stride + 1`` exceeds the video the
  stride shrinks to spread ``T`` frames evenly over the whole video (repeating
  frames when ``n < T``).
* Multi-clip evaluation (:func:`multi_clip_indices`): ``N`` deterministic clips
  spread evenly through the video, shape ``(N, T)``.
"""
from __future__ import annotations

import numpy as np
import torch


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator private to one sample of one epoch.

    Seeded from ``(seed, epoch, index)`` through NumPy's ``SeedSequence`` hash,
    so results do not depend on worker count, worker order or global RNG state.
    """
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(2)
    g = torch.Generator()
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


def _uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64)


def _check(num_frames: int, clip_len: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames}: a video needs at least one frame")
    if clip_len < 1:
        raise ValueError(f"clip_len={clip_len}: expected a positive number of frames")


def segment_indices(num_frames: int, clip_len: int, *, train: bool,
                    generator: torch.Generator | None = None, position: float = 0.5):
    """TSN sampling: one frame per segment (random in training, at ``position``
    (0.5 = centre) of each segment in evaluation)."""
    _check(num_frames, clip_len)
    seg = num_frames / clip_len
    steps = torch.arange(clip_len, dtype=torch.float64)
    if train:
        if generator is None:
            raise ValueError("segment_indices(train=True) needs a generator")
        u = _uniform(clip_len, generator)
        if num_frames >= clip_len:  # integer boundaries: distinct frames
            bounds = torch.floor(torch.arange(clip_len + 1, dtype=torch.float64) * seg).long()
            lengths = bounds[1:] - bounds[:-1]
            idx = bounds[:-1] + torch.floor(u * lengths).long()
        else:
            idx = torch.floor((steps + u) * seg).long()
    else:  # TSN/TSM test-time formula: int(tick * position + tick * i)
        idx = torch.floor(seg * position + seg * steps).long()
    return idx.clamp_(0, num_frames - 1)


def dense_indices(num_frames: int, clip_len: int, stride: int, *, train: bool,
                  generator: torch.Generator | None = None, position: float = 0.5):
    """Dense sampling: ``clip_len`` frames ``stride`` apart, starting at a random
    (train) or relative ``position`` (eval; 0.5 = centred) offset."""
    _check(num_frames, clip_len)
    span = (clip_len - 1) * stride + 1
    if span > num_frames:  # too short: spread evenly over the whole video
        return torch.linspace(0, num_frames - 1, clip_len, dtype=torch.float64).round().long()
    room = num_frames - span
    if train:
        if generator is None:
            raise ValueError("dense_indices(train=True) needs a generator")
        start = int(torch.randint(room + 1, (1,), generator=generator))
    else:
        start = int(round(room * position))
    return start + torch.arange(clip_len) * stride


def sample_indices(num_frames: int, clip_len: int, *, mode: str = "tsn", stride: int = 2,
                   train: bool, generator: torch.Generator | None = None,
                   position: float = 0.5) -> torch.Tensor:
    """Dispatch to :func:`segment_indices` (``mode="tsn"``) or :func:`dense_indices`."""
    if mode == "tsn":
        return segment_indices(num_frames, clip_len, train=train, generator=generator,
                               position=position)
    if mode == "dense":
        return dense_indices(num_frames, clip_len, stride, train=train, generator=generator,
                             position=position)
    raise ValueError(f"unknown sampling mode {mode!r}; accepted: 'tsn', 'dense'")


def multi_clip_indices(num_frames: int, clip_len: int, num_clips: int, *, mode: str = "tsn",
                       stride: int = 2) -> torch.Tensor:
    """Evaluation indices of ``num_clips`` clips, shape ``(num_clips, clip_len)``.

    Clip ``k`` sits at relative position ``(k + 0.5) / num_clips``: inside each
    segment for TSN (``num_clips=1`` gives the centres), of the start offset for
    dense sampling.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips={num_clips}: expected a positive integer")
    return torch.stack([
        sample_indices(num_frames, clip_len, mode=mode, stride=stride, train=False,
                       position=(k + 0.5) / num_clips)
        for k in range(num_clips)
    ])
