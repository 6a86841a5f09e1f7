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

import os

from afnet._imports import require
from afnet.data import build_dataloader, build_dataset
from afnet.engine.config import ConfigError, dataset_preset

L = require("lightning", "training (afnet.engine)")


def data_paths(cfg: dict) -> dict:
    """Resolved ``train_list``, ``val_list``, ``class_file`` (relative paths are taken relative to
    ``data.root``; the synthetic preset defaults to the frame lists ``make_synthetic`` writes).
    Raises FileNotFoundError naming the config key."""
    d = cfg["data"]
    if not d["root"]:
        raise ConfigError("data.root is not set; give the dataset's root folder (data.root=/path)")
    if not os.path.isdir(d["root"]):
        raise FileNotFoundError(f"data.root={d['root']!r}: no such folder")
    defaults = {"train_list": "train_frames.txt", "val_list": "val_frames.txt", "class_file": "category.txt"} \
        if d["preset"] == "synthetic" else {}
    paths = {}
    for key in ("train_list", "val_list", "class_file"):
        value = d[key] or defaults.get(key)
        if value is None:
            if key != "class_file":
                raise ConfigError(f"data.{key} is not set; give the annotation file of the split")
            paths[key] = None
            continue
        path = value if os.path.isabs(value) else os.path.join(d["root"], value)
        if not os.path.exists(path):
            raise FileNotFoundError(f"data.{key}={value!r}: not found (looked at {path})")
        paths[key] = path
    return paths


def build_split(cfg: dict, split: str, *, num_clips: int = 1, num_crops: int = 1):
    """The train or val dataset of a resolved config (evaluation views for val)."""
    d = cfg["data"]
    paths = data_paths(cfg)
    train = split == "train"
    if d["preset"] == "imagefolder":
        from afnet.engine.images import ImageFolderDataset
        return ImageFolderDataset(paths[f"{split}_list"], dataset_preset(cfg), train=train, seed=cfg["seed"])
    overrides = {} if train else {"num_clips": num_clips, "num_crops": num_crops}
    return build_dataset(dataset_preset(cfg, **overrides), d["root"], paths[f"{split}_list"], train=train,
                         kind=d["kind"], class_file=paths["class_file"], backend=d["backend"],
                         seed=cfg["seed"], on_error=d["on_error"])


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
    def __init__(self, cfg: dict, *, num_clips: int = 1, num_crops: int = 1):
        super().__init__()
        self.cfg = cfg
        self.num_clips, self.num_crops = num_clips, num_crops
        self.train_set = self.val_set = None

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_set is None:
            self.train_set = build_split(self.cfg, "train")
        if self.val_set is None:
            self.val_set = build_split(self.cfg, "val", num_clips=self.num_clips, num_crops=self.num_crops)

    def _loader(self, dataset, batch_size: int):
        loader = build_dataloader(dataset, batch_size=batch_size, num_workers=self.cfg["data"]["num_workers"],
                                  seed=self.cfg["seed"], num_replicas=self.trainer.world_size,
                                  rank=self.trainer.global_rank)
        return EpochLoader(loader, self.trainer)

    def train_dataloader(self):
        return self._loader(self.train_set, self.cfg["data"]["batch_size"])

    def val_dataloader(self):
        d = self.cfg["data"]
        return self._loader(self.val_set, d["val_batch_size"] or d["batch_size"])
