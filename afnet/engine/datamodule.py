"""The LightningDataModule over ``afnet.data``.

Sharding: each process builds its own :class:`~afnet.data.VideoLoader` with
``num_replicas=trainer.world_size, rank=trainer.global_rank`` (the loader's
``EpochSampler`` takes every world_size-th sample of the epoch's shuffle, padding by
wrapping so all ranks see as many batches). The trainer runs with
``use_distributed_sampler=False``: a VideoLoader is not a plain DataLoader, and its sampler
yields (index, epoch) keys that drive augmentation. Lightning sees an :class:`EpochLoader`
(a sized iterable) that sets the index of the epoch in progress on the loader each time an epoch
starts iterating, so a resumed run sees the same order and augmentation.
"""
from __future__ import annotations

from afnet._imports import require
from afnet.data import build_dataloader, build_dataset
from afnet.engine.schema import DataConfig

L = require("lightning", "training (afnet.engine)")


def padding_of(loader) -> frozenset[int]:
    """The dataset indices that ``loader`` (an :class:`EpochLoader`) yields on this rank only as
    padding (see :meth:`~afnet.data.dataset.EpochSampler.padding`); empty for any other loader."""
    sampler = getattr(getattr(loader, "loader", None), "sampler", None)
    return sampler.padding() if hasattr(sampler, "padding") else frozenset()


def epoch_in_progress(trainer) -> int:
    """The index of the epoch being run. Lightning's ``current_epoch`` counts completed epochs and
    still reads the previous one when a resumed run starts; its epoch progress does not."""
    return trainer.fit_loop.epoch_progress.current.processed


class EpochLoader:
    """A :class:`~afnet.data.VideoLoader` as a sized iterable that selects the trainer's epoch."""

    def __init__(self, loader, trainer):
        self.loader, self.trainer = loader, trainer

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.loader.set_epoch(epoch_in_progress(self.trainer))
        return iter(self.loader)


class VideoDataModule(L.LightningDataModule):
    """The train and val splits of a ``data`` config section (``seed``: augmentation and
    shuffling; ``num_clips`` x ``num_crops``: the evaluation views)."""

    def __init__(self, data: DataConfig, *, seed: int = 0, num_clips: int = 1, num_crops: int = 1):
        super().__init__()
        self.data, self.seed = data, seed
        self.num_clips, self.num_crops = num_clips, num_crops
        self.train_set = self.val_set = None

    def build_split(self, split: str, train: bool | None = None):
        """The train or val dataset: training sampling and augmentation for train, evaluation
        views for val (``train`` chooses otherwise, e.g. ``False``: the training videos read as
        evaluation reads them)."""
        d, paths = self.data, self.data.paths()
        train = split == "train" if train is None else train
        overrides = {} if train else {"num_clips": self.num_clips, "num_crops": self.num_crops}
        return build_dataset(d.dataset(**overrides), d.root, paths[f"{split}_list"], train=train, kind=d.kind,
                             class_file=paths["class_file"], backend=d.backend, seed=self.seed, on_error=d.on_error,
                             evidence_file=paths["evidence_file"], decode_timeout=d.decode_timeout,
                             limits=d.limits())

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_set is None:
            self.train_set = self.build_split("train")
        if self.val_set is None:
            self.val_set = self.build_split("val")

    def class_names(self) -> list | None:
        """The class names of the data (its class file, or an image folder's class folders)."""
        self.setup("fit")
        return self.train_set.class_names

    def _loader(self, dataset, batch_size: int):
        loader = build_dataloader(dataset, batch_size=batch_size, num_workers=self.data.num_workers,
                                  seed=self.seed, num_replicas=self.trainer.world_size,
                                  rank=self.trainer.global_rank)
        return EpochLoader(loader, self.trainer)

    def train_dataloader(self):
        return self._loader(self.train_set, self.data.batch_size)

    def val_dataloader(self):
        return self._loader(self.val_set, self.data.val_batch_size or self.data.batch_size)
