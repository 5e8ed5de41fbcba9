"""Seeds for a run, its epochs and its DataLoader workers: augmentations depend only on
(seed, epoch, rank), so a run resumed at an epoch boundary repeats an uninterrupted one."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch (all devices) RNGs from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader workers: torch already seeds each worker with base_seed + id; derive the
    Python and NumPy seeds from it so library-level randomness differs per worker too."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed for one epoch on one rank: augmentations then depend only on (seed, epoch, rank),
    so a run resumed at an epoch boundary repeats exactly what an uninterrupted run does."""
    return seed + 1_000_003 * epoch + 7919 * rank
