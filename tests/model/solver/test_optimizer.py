"""Adam with coupled weight decay: a hand-computed first step tells it apart from AdamW."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.solver.optimizer import make_optimizer


def test_first_step_uses_coupled_weight_decay() -> None:
    # θ = 4, zero loss gradient, lr 0.1, wd 0.5. Coupled (Adam): g = wd·θ = 2, and Adam's first
    # step is lr·g/|g| = 0.1 -> 3.9. Decoupled (AdamW) would give θ·(1 - lr·wd) = 3.8.
    theta = nn.Parameter(torch.tensor([4.0], dtype=torch.float64))
    optimizer = make_optimizer([theta], base_lr=0.1, weight_decay=0.5)
    assert type(optimizer) is torch.optim.Adam
    theta.grad = torch.zeros_like(theta)
    optimizer.step()
    assert theta.item() == pytest.approx(3.9, abs=1e-6)


def test_groups_keep_their_own_lr_and_get_defaults() -> None:
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3))
    optimizer = make_optimizer([{"params": [a]}, {"params": [b], "lr": 1e-2}], base_lr=3.5e-4)
    assert [g["lr"] for g in optimizer.param_groups] == [3.5e-4, 1e-2]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4, 5e-4]


def test_bad_settings_are_refused() -> None:
    p = nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="base_lr"):
        make_optimizer([p], base_lr=0.0)
    with pytest.raises(ValueError, match="weight_decay"):
        make_optimizer([p], base_lr=1e-4, weight_decay=-1.0)
