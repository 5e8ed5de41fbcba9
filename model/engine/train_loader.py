"""The training DataLoader: whole P×K batches of augmented images, sharded over DDP ranks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import DataLoader

from model.config.train_config import TrainConfig
from model.data.dataset_split import DatasetSplit
from model.data.image_dataset import ImageDataset
from model.data.pk_batch_sampler import PKBatchSampler
from model.data.pk_sampler import PKSampler
from model.data.transforms import train_transform
from model.engine.distributed import DistInfo
from model.engine.seeding import worker_init_fn


def make_train_loader(
    split: DatasetSplit,
    label_map: dict[str, int],
    cfg: TrainConfig,
    fill_mean: Sequence[float],
    dist: DistInfo,
) -> tuple[DataLoader[Any], PKSampler]:
    """``(loader, sampler)``: the loader yields ``(images (N, 3, H, W) float [0, 1], labels
    (N,) int64 in [0, len(label_map)), sample indices (N,) int64)`` per P×K batch of this
    rank's shard; call ``sampler.set_epoch(e)`` before each epoch. ``fill_mean``: 3 values in
    [0, 1], the network's input mean (random erasing fills with it)."""
    dataset = ImageDataset(
        split.train,
        label_map,
        train_transform(
            cfg.data.input_size,
            pad=cfg.data.pad,
            flip_p=cfg.data.flip_p,
            erase_p=cfg.data.erase_p,
            fill_mean=tuple(fill_mean),
        ),
    )
    labels = [label_map[s.item] for s in split.train]
    sampler = PKSampler(
        labels, cfg.data.p, cfg.data.k, seed=cfg.seed, rank=dist.rank, world_size=dist.world_size
    )
    # Whole P×K batches: without resampling a batch can be smaller than p·k, so the DataLoader
    # must not re-cut the index stream.
    loader: DataLoader[Any] = DataLoader(
        dataset,
        batch_sampler=PKBatchSampler(sampler),
        num_workers=cfg.data.num_workers,
        worker_init_fn=worker_init_fn,
        persistent_workers=False,
        pin_memory=False,
    )
    return loader, sampler
