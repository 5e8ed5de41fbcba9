"""The network's optimiser: Adam with coupled (L2) weight decay, as reid-strong-baseline and
centroids-reid (``torch.optim.Adam(..., weight_decay=...)``, not AdamW)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

# centroids-reid ``SOLVER.BASE_LR``: 3.5e-4 for person re-ID (Market-1501, DukeMTMC-reID),
# 1e-4 for fashion retrieval (DeepFashion, Street2Shop).
REID_BASE_LR = 3.5e-4
FASHION_BASE_LR = 1e-4
# reid-strong-baseline / centroids-reid ``SOLVER.WEIGHT_DECAY``.
DEFAULT_WEIGHT_DECAY = 5e-4

ParamsOrGroups = Iterable[nn.Parameter] | Iterable[dict[str, Any]]


def make_optimizer(
    params_or_groups: ParamsOrGroups, base_lr: float, weight_decay: float = DEFAULT_WEIGHT_DECAY
) -> torch.optim.Adam:
    """Adam over ``params_or_groups`` (parameters, or param-group dicts, which may set their own
    ``lr`` / ``weight_decay``; groups without one get ``base_lr`` / ``weight_decay``).

    Weight decay is coupled: Adam adds ``weight_decay · θ`` to the gradient before its moment
    estimates, which is what the reference trained with.
    """
    if base_lr <= 0.0:
        raise ValueError(f"base_lr must be positive, got {base_lr}")
    if weight_decay < 0.0:
        raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
    return torch.optim.Adam(params_or_groups, lr=base_lr, weight_decay=weight_decay)
