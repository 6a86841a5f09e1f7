"""Datasets and loaders: annotation records in, normalised clips out.

One sample (``VideoDataset[SampleKey(index, epoch)]``)::

    VideoRecord ──sample_generator(seed, epoch, index)──> generator
        │
        ├─ open_reader (frame folder | video file) ──> num_frames
        ├─ sample_indices / multi_clip_indices      ──> frame indices ──> evidence (where annotated)
        ├─ reader.get_frames                        ──> uint8 (N, 3, H, W)
        └─ train_transform / eval_transform         ──> float clip
    returns (clip, target, index, evidence)

Shapes: training clip ``(T, 3, S, S)``; evaluation ``(V, T, 3, S, S)`` with
``V = num_clips * num_crops`` views, clip-major (view ``v`` is clip
``v // num_crops``, crop ``v % num_crops``); average the model's outputs over
views with :func:`average_views`. Target: ``int64`` class index, or a float
multi-hot vector ``(num_classes,)`` when ``config.multi_label``. Evidence: for a record
with annotated evidence frames (``evidence_file``), float ``(T,)`` / ``(V, T)``, 1 where the
sampled frame carries the class evidence (for navigation precision); otherwise ``None``.
Where the evidence regions are annotated too, evaluation gives ``(V, T, G, G)`` instead: 1 in
the cell of a G x G grid holding the evidence of an evidence frame, 0 elsewhere (a frame's
mark is its maximum over the grid), for region precision. Only where evaluation keeps the
frame's geometry (a square frame, ``scale_size == input_size``, one crop): a crop would move
the cells, so otherwise, and in training (random crops and flips), the frame marks only.

Errors: a sample that fails to decode, or takes longer than ``decode_timeout``
seconds to read (default :data:`~afnet.data.decoding.DEFAULT_DECODE_TIMEOUT`), raises
:class:`DecodeError` naming the file and its list line (``on_error="raise"``, default), or with
``on_error="skip"`` is logged and returned as a :class:`SkippedSample`, which
:func:`collate_clips` drops and :class:`VideoLoader` counts. No frame or video
is ever substituted.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from afnet.data.annotations import (
    AnnotationError,
    Evidence,
    Problem,
    VideoRecord,
    load_annotations,
    load_class_names,
    load_evidence,
)
from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT, DecodeError, check_timeout, open_reader
from afnet.data.limits import DEFAULT_LIMITS, DecodeLimits
from afnet.data.presets import DatasetConfig, get_preset
from afnet.data.sampling import multi_clip_indices, sample_generator, sample_indices
from afnet.data.transforms import eval_transform, train_transform

log = logging.getLogger("afnet.data")

ON_ERROR = ("raise", "skip")


class SampleKey(NamedTuple):
    """Dataset key: which sample, in which epoch (drives its random choices)."""

    index: int
    epoch: int = 0


class SkippedSample(NamedTuple):
    """Returned instead of a sample under ``on_error="skip"``."""

    index: int
    path: str
    reason: str


class Batch(NamedTuple):
    """A collated batch; ``skipped`` lists the samples dropped from it."""

    clip: torch.Tensor  # (B, T, 3, S, S) train, (B, V, T, 3, S, S) eval
    target: torch.Tensor  # (B,) int64 or (B, num_classes) float multi-hot
    index: torch.Tensor  # (B,) dataset indices
    skipped: tuple[SkippedSample, ...] = ()
    evidence: torch.Tensor | None = None  # (B, T) train, (B, V, T) or (B, V, T, G, G) eval; None unless all have it


def make_target(labels: tuple[int, ...], num_classes: int, multi_label: bool) -> torch.Tensor:
    """Class index (``int64`` scalar) or multi-hot ``float32 (num_classes,)``."""
    if multi_label:
        target = torch.zeros(num_classes, dtype=torch.float32)
        target[list(labels)] = 1.0
        return target
    return torch.tensor(labels[0], dtype=torch.long)


def clip_indices(num_frames: int, config: DatasetConfig, *, train: bool,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Training: ``(T,)`` random indices; evaluation: ``(num_clips, T)``."""
    if train:
        return sample_indices(num_frames, config.num_frames, mode=config.sampling,
                              stride=config.stride, train=True, generator=generator)
    return multi_clip_indices(num_frames, config.num_frames, config.num_clips,
                              mode=config.sampling, stride=config.stride)


def eval_views(frames: torch.Tensor, config: DatasetConfig) -> torch.Tensor:
    """``uint8 (num_clips * T, 3, H, W)`` -> ``float (num_clips * num_crops, T, 3, S, S)``."""
    crops = eval_transform(frames, config)  # (crops, clips*T, 3, S, S)
    c, _, ch, h, w = crops.shape
    views = crops.view(c, config.num_clips, config.num_frames, ch, h, w).transpose(0, 1)
    return views.reshape(config.num_clips * c, config.num_frames, ch, h, w)


def read_clip(reader, config: DatasetConfig, *, train: bool,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample, decode and transform one clip from an open reader: ``(clip, indices)``, the
    frame indices sampled (``(T,)`` in training, ``(num_clips, T)`` in evaluation)."""
    indices = clip_indices(len(reader), config, train=train, generator=generator)
    frames = reader.get_frames(indices.flatten())
    clip = train_transform(frames, config, generator) if train else eval_views(frames, config)
    return clip, indices


def regions_kept_geometry(config: DatasetConfig) -> bool:
    """Evaluation views keep a square frame's geometry: no crop moves the annotated cells."""
    return config.scale_size == config.input_size and config.num_crops == 1


def evidence_marks(indices: torch.Tensor, evidence: Evidence, config: DatasetConfig) -> torch.Tensor:
    """1 where a sampled frame is one of the video's evidence frames: ``(T,)`` for training
    indices, ``(V, T)`` for evaluation ones (one row per view, clip-major as the views); with
    annotated regions, in evaluation that keeps the geometry (:func:`regions_kept_geometry`),
    ``(V, T, G, G)``: the evidence frames' marks in the cell that holds their evidence."""
    marks = torch.isin(indices, torch.tensor(evidence.frames, dtype=indices.dtype)).float()
    if indices.ndim == 1:
        return marks
    if evidence.regions is not None and regions_kept_geometry(config):
        g = evidence.grid
        if int(indices.max()) >= len(evidence.regions):
            raise ValueError(f"frame {int(indices.max())} sampled, but the evidence file gives regions for "
                             f"{len(evidence.regions)} frames")
        cells = torch.tensor(evidence.regions)[indices]                          # (clips, T)
        marks = torch.nn.functional.one_hot(cells, g * g).float() * marks[..., None]
        marks = marks.view(*indices.shape, g, g)
    return marks.repeat_interleave(config.num_views // config.num_clips, dim=0)


class VideoDataset(Dataset):
    """Map-style dataset over :class:`VideoRecord` objects (frame folders or videos).

    Keys are ``int`` (epoch 0) or :class:`SampleKey`; the random choices of a
    sample depend only on ``(seed, epoch, index)``.
    """

    def __init__(self, records: list[VideoRecord], config: DatasetConfig, *, train: bool,
                 backend: str = "pyav", seed: int = 0, on_error: str = "raise",
                 class_names: list[str] | None = None, threads: int = 1,
                 decode_timeout: float | None = DEFAULT_DECODE_TIMEOUT, limits: DecodeLimits = DEFAULT_LIMITS):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error={on_error!r}; accepted: {', '.join(ON_ERROR)}")
        self.decode_timeout = check_timeout(decode_timeout, "decode_timeout")
        self.records = list(records)
        self.config = config
        self.train = train
        self.backend = backend
        self.seed = seed
        self.on_error = on_error
        self.class_names = class_names
        self.threads = threads
        self.limits = limits

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_views(self) -> int:
        return 1 if self.train else self.config.num_views

    def __getitem__(self, key):
        index, epoch = (key.index, key.epoch) if isinstance(key, tuple) else (int(key), 0)
        record = self.records[index]
        generator = sample_generator(self.seed, epoch, index) if self.train else None
        try:
            with open_reader(record.path, template=self.config.frame_template,
                             num_frames=record.num_frames, backend=self.backend,
                             threads=self.threads, timeout=self.decode_timeout, limits=self.limits) as reader:
                clip, indices = read_clip(reader, self.config, train=self.train, generator=generator)
        except DecodeError as exc:
            where = f" (listed at {record.where})" if record.list_file else ""
            if self.on_error == "raise":
                raise type(exc)(f"{exc}{where}") from exc
            log.warning("skipping sample %d: %s%s", index, exc, where)
            return SkippedSample(index, record.path, str(exc))
        target = make_target(record.labels, self.config.num_classes, self.config.multi_label)
        evidence = None if record.evidence is None else evidence_marks(indices, record.evidence, self.config)
        return clip, target, index, evidence


# ------------------------------------------------------------------- building
def _default_class_file(annotation_file, kind: str):
    if kind == "sthv2_json" or str(annotation_file).lower().endswith(".json"):
        candidate = os.path.join(os.path.dirname(os.path.abspath(annotation_file)), "labels.json")
        if os.path.isfile(candidate):
            return candidate
    return None


def build_dataset(preset: str | DatasetConfig, root, annotation_file, *, train: bool,
                  kind: str = "auto", class_file=None, backend: str = "pyav", seed: int = 0,
                  on_error: str = "raise", threads: int = 1, evidence_file=None,
                  decode_timeout: float | None = DEFAULT_DECODE_TIMEOUT, limits: DecodeLimits = DEFAULT_LIMITS,
                  **overrides) -> VideoDataset:
    """Build a dataset from a preset, a data root and an annotation file.

    Args:
        preset: a preset name or a :class:`DatasetConfig`.
        root: the folder the annotation's paths are relative to.
        annotation_file: list file, Kinetics CSV or SthV2 JSON (see
            :mod:`afnet.data.annotations`); for an ``image_folder`` preset (``imagefolder``),
            the folder of class folders (a path, or relative to ``root``).
        train: training sampling and augmentation, else evaluation views.
        kind: the annotation format (``auto``: guessed).
        class_file: class names (default: found beside the annotation file).
        backend: video decoder. seed: sampling and augmentation seed.
        on_error: ``raise`` on an unreadable sample, or ``skip`` it (reported in the batch).
        threads: decoder threads.
        evidence_file: the videos' evidence frames
            (:func:`~afnet.data.annotations.load_evidence`), attached to their records.
        decode_timeout: seconds to read one video (``None``: no limit).
        limits: the most one sample may decode (frame pixels, frames, seconds), checked from
            headers; a sample over one is a :class:`~afnet.data.limits.LimitExceeded` error.
        **overrides: preset fields replaced (e.g. ``num_frames=16``).

    Returns:
        A :class:`VideoDataset` (an ``ImageFolderDataset`` for image presets). Annotation
        errors raise :class:`AnnotationError` naming file and line.
    """
    config = get_preset(preset, **overrides)
    if config.source == "image_folder":
        from afnet.data.images import ImageFolderDataset
        folder = annotation_file if os.path.isdir(annotation_file) else os.path.join(root, annotation_file)
        return ImageFolderDataset(folder, config, train=train, seed=seed, limits=limits)
    class_file = class_file or _default_class_file(annotation_file, kind)
    class_names = load_class_names(class_file) if class_file else None
    if class_names is not None and len(class_names) != config.num_classes:
        raise AnnotationError([Problem(str(class_file), 0,
                                       f"{len(class_names)} class names but num_classes="
                                       f"{config.num_classes} (preset {config.name!r})")])
    records = load_annotations(annotation_file, root, kind=kind,
                               num_classes=config.num_classes,
                               multi_label=config.multi_label, class_names=class_names)
    if evidence_file is not None:
        evidence = load_evidence(evidence_file, root)
        records = [dataclasses.replace(r, evidence=evidence.get(os.path.normpath(r.path))) for r in records]
    return VideoDataset(records, config, train=train, backend=backend, seed=seed,
                        on_error=on_error, class_names=class_names, threads=threads,
                        decode_timeout=decode_timeout, limits=limits)


def load_video(path, preset: str | DatasetConfig = "sthv2", *, backend: str = "pyav",
               threads: int = 1, timeout: float | None = DEFAULT_DECODE_TIMEOUT,
               **overrides) -> torch.Tensor:
    """Evaluation clip(s) of one video file or frame folder, for inference:
    ``float (V, T, 3, S, S)``, ``V = num_clips * num_crops`` (see :func:`average_views`).
    ``timeout``: seconds allowed for opening and for decoding (``None`` or 0: no limit)."""
    config = get_preset(preset, **overrides)
    with open_reader(str(path), template=config.frame_template, backend=backend,
                     threads=threads, timeout=timeout) as reader:
        return read_clip(reader, config, train=False)[0]


def average_views(logits: torch.Tensor, num_views: int, softmax: bool = False) -> torch.Tensor:
    """Average ``(B * V, C)`` (or ``(B, V, C)``) outputs over the ``V`` views of
    each video -> ``(B, C)``; with ``softmax`` average probabilities instead."""
    if logits.ndim == 2:
        if logits.shape[0] % num_views:
            raise ValueError(f"{logits.shape[0]} rows is not a multiple of num_views={num_views}")
        logits = logits.view(-1, num_views, logits.shape[-1])
    if logits.ndim != 3 or logits.shape[1] != num_views:
        raise ValueError(f"expected (B*V, C) or (B, V={num_views}, C), got {tuple(logits.shape)}")
    if softmax:
        logits = logits.softmax(dim=-1)
    return logits.mean(dim=1)


# ------------------------------------------------------------------- loading
class EpochSampler(Sampler):
    """Yields :class:`SampleKey` (index, epoch); shuffled per epoch from ``(seed, epoch)``.

    With ``num_replicas > 1`` each rank takes every ``num_replicas``-th key
    (the index list is padded by wrapping so that all ranks get as many).
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                 num_replicas: int = 1, rank: int = 0):
        self.size, self.shuffle, self.seed, self.epoch = size, shuffle, seed, epoch
        self.num_replicas, self.rank = num_replicas, rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.size // self.num_replicas)

    def _order(self) -> list[int]:
        """The epoch's order of every rank's keys, padded by wrapping to ``len(self) * num_replicas``."""
        if self.shuffle:
            state = np.random.SeedSequence([int(self.seed), int(self.epoch)]).generate_state(1)
            g = torch.Generator().manual_seed(int(state[0]))
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = len(self) * self.num_replicas
        return (order * (total // max(len(order), 1) + 1))[:total]

    def __iter__(self):
        for i in self._order()[self.rank::self.num_replicas]:
            yield SampleKey(i, self.epoch)

    def padding(self) -> frozenset[int]:
        """The indices this rank is given only to pad the ranks to equal lengths: repeats of samples
        another rank has (metrics over the whole split leave them out). An index is never both a
        rank's sample and its padding, so the set identifies the repeats."""
        order = self._order()
        return frozenset(order[p] for p in range(self.size, len(order)) if p % self.num_replicas == self.rank)


def collate_clips(samples) -> Batch:
    """Stack ``(clip, target, index, evidence)`` samples, dropping :class:`SkippedSample` ones."""
    kept = [s for s in samples if not isinstance(s, SkippedSample)]
    skipped = tuple(s for s in samples if isinstance(s, SkippedSample))
    if not kept:
        return Batch(torch.empty(0), torch.empty(0), torch.empty(0, dtype=torch.long), skipped)
    clips, targets, indices, evidence = zip(*kept)
    evidence = None if any(e is None for e in evidence) else torch.stack(evidence)
    return Batch(torch.stack(clips), torch.stack(targets), torch.tensor(indices), skipped, evidence)


def worker_init(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's signature
    """One intra-op thread per worker (workers already run in parallel)."""
    torch.set_num_threads(1)


class VideoLoader:
    """A DataLoader of :class:`Batch` es plus the epoch and the skip count.

    ``set_epoch(e)`` before iterating selects epoch ``e``'s shuffle and
    augmentation; ``num_skipped`` counts samples dropped under
    ``on_error="skip"`` (batches left empty are not yielded).
    """

    def __init__(self, loader: DataLoader, sampler: EpochSampler):
        self.loader, self.sampler = loader, sampler
        self.num_skipped = 0

    @property
    def dataset(self) -> VideoDataset:
        return self.loader.dataset

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if batch.skipped:
                self.num_skipped += len(batch.skipped)
                log.warning("dropped %d undecodable sample(s) from a batch (%d so far)",
                            len(batch.skipped), self.num_skipped)
            if len(batch.index):
                yield batch


def build_dataloader(dataset: VideoDataset, *, batch_size: int, shuffle: bool | None = None,
                     num_workers: int = 2, drop_last: bool | None = None, seed: int = 0,
                     epoch: int = 0, pin_memory: bool | None = None,
                     num_replicas: int = 1, rank: int = 0) -> VideoLoader:
    """A :class:`VideoLoader` over ``dataset``: shuffles and drops the last partial
    batch in training (by default), worker processes, pinned memory when CUDA
    is available. Reproducible: batches depend only on ``(seed, epoch)`` and the
    dataset's seed, not on the number of workers."""
    shuffle = dataset.train if shuffle is None else shuffle
    drop_last = dataset.train if drop_last is None else drop_last
    pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed, epoch=epoch,
                           num_replicas=num_replicas, rank=rank)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        collate_fn=collate_clips, pin_memory=pin_memory, drop_last=drop_last,
        worker_init_fn=worker_init if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
    )
    return VideoLoader(loader, sampler)
