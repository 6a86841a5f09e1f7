"""Sharded, resumable batch prediction on Lightning (``afnet batch-predict``).

::

    videos ──pending (shards.py: skip those with a line already)──> todo
    todo ──ShardBatches (rank r of W takes items r, r+W, ...)──> this rank's videos
         ──DataLoader workers: read_or_failure (sampling, decoding, transforms)──> Sample | failure
         ──Trainer.predict: predict_sample (run_model, one video per call)──> JSON line
         ──ShardWriter (BasePredictionWriter): OUT.shard-<rank>.jsonl, flushed and fsynced per batch
    all ranks done ──merge (rank 0)──> OUT, in input order

Lightning runs the processes: ``devices`` > 1 (or ``num_nodes`` > 1) starts one process per
device with the DDP strategy (CPU processes talk over gloo), and under torchrun or SLURM it
takes the ranks the launcher made. Prediction needs no gradient synchronisation, so shards may
differ in length; the only collective calls are two barriers: after every rank has read the
done set (before any writes) and after every rank has written its shard (before the merge).
Decoding runs in DataLoader worker processes while the model computes.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

from torch.utils.data import DataLoader, Dataset, Sampler

from afnet._imports import require
from afnet.data.dataset import worker_init
from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT
from afnet.data.limits import DEFAULT_LIMITS, DecodeLimits
from afnet.data.presets import DatasetConfig
from afnet.errors import OptionError
from afnet.inference.model import InferenceModel
from afnet.inference.predict import VideoPrediction, predict_sample, read_or_failure
from afnet.inference.report import to_json_line
from afnet.inference.shards import MergeResult, cut_partial_line, merge, pending, shard_files, shard_path
from afnet.io import append_lines

L = require("lightning", "batch prediction (afnet batch-predict)")
from lightning.pytorch.callbacks import BasePredictionWriter, Callback  # noqa: E402


class ShardBatches(Sampler):
    """The batches of rank ``rank`` of ``world``: it takes the items ``rank, rank + world, ...`` of
    ``size`` (together complete and disjoint, without the repeats a DistributedSampler pads with),
    ``batch_size`` at a time. A rank left without items gets one empty batch: Lightning stops a
    run where one rank's loader is empty and another's is not."""

    def __init__(self, size: int, rank: int, world: int, batch_size: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        self.items, self.batch_size = range(rank, size, world), batch_size

    def __len__(self) -> int:
        return max(1, -(-len(self.items) // self.batch_size))

    def __iter__(self):
        for start in range(0, max(1, len(self.items)), self.batch_size):
            yield list(self.items[start:start + self.batch_size])


class PendingVideos(Dataset):
    """``(path, Sample | failed VideoPrediction)`` per pending video, read in a worker."""

    def __init__(self, videos: list[str], config: DatasetConfig, *, backend: str = "pyav",
                 timeout: float | None = DEFAULT_DECODE_TIMEOUT, limits: DecodeLimits = DEFAULT_LIMITS):
        self.videos, self.config, self.backend, self.timeout = videos, config, backend, timeout
        self.limits = limits

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int):
        path = self.videos[i]
        return path, read_or_failure(path, self.config, backend=self.backend, timeout=self.timeout, limits=self.limits)


def as_list(items: list) -> list:
    """The collate function: a batch is the list of its items (one model call per video)."""
    return items


class CorpusData(L.LightningDataModule):
    """The videos still to predict, sharded over the ranks. ``setup`` reads the done set on
    every rank, then waits for all, so that no rank writes before every rank has read."""

    def __init__(self, videos: list[str], out, config: DatasetConfig, *, workers: int = 1, batch_size: int = 4,
                 backend: str = "pyav", timeout: float | None = DEFAULT_DECODE_TIMEOUT,
                 retry_failed: bool = False, limits: DecodeLimits = DEFAULT_LIMITS):
        super().__init__()
        self.limits = limits
        self.videos, self.out, self.config = videos, out, config
        self.workers, self.batch_size, self.backend, self.timeout = workers, batch_size, backend, timeout
        self.retry_failed = retry_failed
        self.todo: list[str] = []

    def setup(self, stage: str) -> None:
        self.todo = [path for _, path in pending(self.videos, self.out, retry_failed=self.retry_failed)]
        self.trainer.strategy.barrier("afnet-pending-read")

    def predict_dataloader(self) -> DataLoader:
        t = self.trainer
        return DataLoader(PendingVideos(self.todo, self.config, backend=self.backend, timeout=self.timeout,
                                        limits=self.limits),
                          batch_sampler=ShardBatches(len(self.todo), t.global_rank, t.world_size, self.batch_size),
                          num_workers=self.workers, collate_fn=as_list,
                          worker_init_fn=worker_init if self.workers else None)


class PredictModule(L.LightningModule):
    """``predict_step``: the JSON line of each video of the batch (``afnet predict --json``)."""

    def __init__(self, im: InferenceModel, *, top_k: int = 5, flops: bool = True):
        super().__init__()
        self.model = im.model      # registered: Lightning moves it to the device
        self.im, self.top_k, self.flops = im, top_k, flops

    def predict_step(self, batch, batch_idx: int) -> list[str]:
        return [to_json_line(read if isinstance(read, VideoPrediction) else
                             predict_sample(path, read, self.im, top_k=self.top_k, flops=self.flops))
                for path, read in batch]


class ShardWriter(BasePredictionWriter):
    """Appends each batch's lines to this rank's shard file in one write, fsynced
    (:func:`afnet.io.append_lines`): a killed job loses at most the batches not yet written, a full
    disk stops it with :class:`afnet.io.DiskFull` and the shard ending on a complete line."""

    def __init__(self, out):
        super().__init__("batch")
        self.out, self.file = out, None

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        path = shard_path(self.out, trainer.global_rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        cut_partial_line(path)
        self.file = open(path, "ab")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        append_lines(self.file, prediction)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class Progress(Callback):
    """Rank 0: videos done by all ranks (lines added to every shard file), videos/s and ETA on
    stderr (tqdm), refreshed at most every ``interval`` seconds. No collective call: the shard
    files are the count."""

    def __init__(self, out, interval: float = 0.5):
        self.out, self.interval = out, interval
        self.bar, self.seen, self.last = None, {}, 0.0

    def _new_lines(self) -> int:
        count = 0
        for path in shard_files(self.out):
            at = self.seen.get(path, 0)
            with open(path, "rb") as f:
                f.seek(at)
                data = f.read()
            self.seen[path] = at + len(data)
            count += data.count(b"\n")
        return count

    def on_predict_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        from tqdm import tqdm

        self._new_lines()   # lines written before this run are not progress
        self.bar = tqdm(total=len(trainer.datamodule.todo), desc="batch-predict", unit="video",
                        file=sys.stderr, dynamic_ncols=True)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.bar is not None and time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            self.bar.update(self._new_lines())

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.update(self._new_lines())
            self.bar.close()
            self.bar = None


def default_threads(devices: int, workers: int) -> int:
    """Torch threads per process on CPU: the usable cores left by the decoding workers (one each),
    shared among the ``devices`` processes; at least 1. More threads than free cores make
    OpenMP's threads wait for each other (measured in docs/inference.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    devices = max(1, devices)
    return max(1, (cores - devices * max(0, workers)) // devices)


def predict_corpus(videos: list[str], im: InferenceModel, out, *, devices: int = 1, num_nodes: int = 1,
                   accelerator: str = "auto", workers: int = 1, batch_size: int = 4, top_k: int = 5,
                   flops: bool = True, backend: str = "pyav", timeout: float | None = DEFAULT_DECODE_TIMEOUT,
                   retry_failed: bool = False, progress: bool = False,
                   limits: DecodeLimits = DEFAULT_LIMITS) -> MergeResult | None:
    """The batch-prediction pipeline: ``videos`` decoded by DataLoader workers, predicted, and
    written into ``out`` (JSON Lines, input order), resuming from what ``out`` and its shards
    already hold.

    Args:
        videos: video files or frame folders.
        im: the model, from :func:`load_model_for_inference`.
        out: the JSON Lines file (its shards are written beside it).
        devices, num_nodes, accelerator: Lightning's; more than one process runs its DDP
            strategy, whose launcher starts the other ranks by re-running the command line, so
            call this from a script (``afnet batch-predict``), not from an interactive session
            or a test process.
        workers: decoding worker processes per device (0: decode in the main process).
        batch_size: videos per forward pass.
        top_k, flops: as for :func:`predict_video`.
        backend: video decoder. timeout: seconds to read one video (``None``: no limit).
        retry_failed: predict again the videos ``out`` records as failed.
        progress: a progress line on stderr.
        limits: the most one video may decode (frame pixels, frames, seconds), from its headers.

    Returns:
        The merge (:class:`MergeResult`) on global rank 0, ``None`` on the other ranks.
    """
    for name, value in (("devices", devices), ("num_nodes", num_nodes), ("batch_size", batch_size)):
        if value < 1:
            raise OptionError(f"{{{name}}} must be positive, got {value}", name)
    if workers < 0:
        raise OptionError(f"{{workers}} must be >= 0, got {workers}", "workers")
    out = Path(out)
    if out.is_dir():
        raise OptionError(f"{{out}} {out} is a folder; give the output file (JSON Lines)", "out")
    distributed = devices * num_nodes > 1
    callbacks = [ShardWriter(out)] + ([Progress(out)] if progress else [])
    trainer = L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                        strategy="ddp" if distributed else "auto", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                        callbacks=callbacks)
    data = CorpusData(videos, out, im.config, workers=workers, batch_size=batch_size, backend=backend,
                      timeout=timeout, retry_failed=retry_failed, limits=limits)
    with warnings.catch_warnings():
        # Lightning 2.6 under torch >= 2.10 warns of its own use of a deprecated pytree name at every batch,
        # and of any custom batch sampler in prediction (ShardBatches returns every index: tests/test_corpus.py)
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        warnings.filterwarnings("ignore", message="You are using a custom batch sampler `ShardBatches`")
        trainer.predict(PredictModule(im, top_k=top_k, flops=flops), datamodule=data, return_predictions=False)
    trainer.strategy.barrier("afnet-shards-written")
    return merge(out, videos) if trainer.is_global_zero else None
