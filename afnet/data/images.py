"""A minimal image-folder dataset for ImageNet pre-training of the two-branch backbone: the
``imagefolder`` preset (``source="image_folder"``), built by :func:`afnet.data.build_dataset`.

``<split folder>/<class name>/<image>`` (the ImageNet layout); classes are the sorted folder
names. Each image is a one-frame clip (T=1) through the video transforms, so the same
loaders, collate function and models serve images: training ``(1, 3, S, S)`` with the
multi-scale crop, evaluation ``(V, 1, 3, S, S)``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from afnet.data.dataset import eval_views
from afnet.data.decoding import decode_image
from afnet.data.limits import DEFAULT_LIMITS, DecodeLimits
from afnet.data.presets import DatasetConfig
from afnet.data.sampling import sample_generator
from afnet.data.transforms import train_transform

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class ImageFolderDataset(Dataset):
    def __init__(self, folder, config: DatasetConfig, *, train: bool, seed: int = 0,
                 limits: DecodeLimits = DEFAULT_LIMITS):
        folder = Path(folder)
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if len(classes) != config.num_classes:
            raise ValueError(f"{folder}: {len(classes)} class folders but num_classes={config.num_classes}")
        self.samples = [(str(f), label) for label, name in enumerate(classes)
                        for f in sorted((folder / name).iterdir()) if f.suffix.lower() in IMAGE_EXTENSIONS]
        if not self.samples:
            raise FileNotFoundError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
        self.class_names, self.config, self.train, self.seed = classes, config, train, seed
        self.limits = limits

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        index, epoch = (key.index, key.epoch) if isinstance(key, tuple) else (int(key), 0)
        path, label = self.samples[index]
        frames = torch.from_numpy(decode_image(path, limits=self.limits)).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W)
        if self.train:
            clip = train_transform(frames, self.config, sample_generator(self.seed, epoch, index))
        else:
            clip = eval_views(frames, self.config)
        return clip, torch.tensor(label), index, None
