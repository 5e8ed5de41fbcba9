"""Multi-step learning-rate decay with linear warm-up, stepped once per epoch, in the form of
reid-strong-baseline's ``WarmupMultiStepLR`` (used by centroids-reid).

At epoch e (``last_epoch``, 0 for the first epoch) every group's lr is
``base_lr · warmup(e) · gamma ** (number of milestones <= e)`` with
``warmup(e) = warmup_factor · (1 - e / warmup_epochs) + e / warmup_epochs`` for
``e < warmup_epochs`` and 1 from then on.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

# reid-strong-baseline / centroids-reid ``SOLVER.STEPS``, ``GAMMA``, ``WARMUP_FACTOR``,
# ``WARMUP_ITERS`` (counted in epochs there too), for 120 training epochs.
DEFAULT_MILESTONES = (40, 70)
DEFAULT_GAMMA = 0.1
DEFAULT_WARMUP_FACTOR = 0.1
DEFAULT_WARMUP_EPOCHS = 10


class WarmupMultiStepLR(LRScheduler):
    """Call ``step()`` once at the end of each epoch; ``state_dict()`` / ``load_state_dict()``
    restore the epoch counter and settings for resuming."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: Sequence[int] = DEFAULT_MILESTONES,
        gamma: float = DEFAULT_GAMMA,
        warmup_factor: float = DEFAULT_WARMUP_FACTOR,
        warmup_epochs: int = DEFAULT_WARMUP_EPOCHS,
        last_epoch: int = -1,
    ) -> None:
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {list(milestones)}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be non-negative, got {warmup_epochs}")
        self.milestones = tuple(int(m) for m in milestones)
        self.gamma = gamma
        self.warmup_factor = warmup_factor
        self.warmup_epochs = warmup_epochs
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch: int) -> float:
        """The multiplier of the base lr at ``epoch`` (>= 0)."""
        warmup = 1.0
        if epoch < self.warmup_epochs:
            alpha = epoch / self.warmup_epochs
            warmup = self.warmup_factor * (1.0 - alpha) + alpha
        return warmup * self.gamma ** bisect_right(self.milestones, epoch)

    def get_lr(self) -> list[float | Tensor]:
        # Closed form of the epoch, not a chained update: resuming needs only last_epoch.
        factor = self.factor(max(self.last_epoch, 0))
        return [base_lr * factor for base_lr in self.base_lrs]
