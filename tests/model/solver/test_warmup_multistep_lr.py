"""Warm-up multi-step schedule: hand-derived factors per epoch, and resuming from state_dict."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.solver.warmup_multistep_lr import WarmupMultiStepLR

BASE_LR = 3.5e-4
# Defaults: milestones (40, 70), gamma 0.1, warm-up factor 0.1 over 10 epochs.
# epoch 5: alpha = 0.5 -> 0.1·0.5 + 0.5 = 0.55; from epoch 10 on: 1, ×0.1 at 40, ×0.01 at 70.
EXPECTED_FACTORS = {0: 0.1, 5: 0.55, 9: 0.91, 10: 1.0, 39: 1.0, 40: 0.1, 69: 0.1, 70: 0.01}


def make(base_lr: float = BASE_LR) -> tuple[torch.optim.Optimizer, WarmupMultiStepLR]:
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=base_lr)
    return optimizer, WarmupMultiStepLR(optimizer)


def lrs_over(
    optimizer: torch.optim.Optimizer, scheduler: WarmupMultiStepLR, epochs: int
) -> list[float]:
    """The lr in force during each of the next ``epochs`` epochs (one scheduler step each)."""
    out = []
    for _ in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_factors_at_hand_derived_epochs() -> None:
    optimizer, scheduler = make()
    lrs = lrs_over(optimizer, scheduler, 80)
    for epoch, factor in EXPECTED_FACTORS.items():
        assert lrs[epoch] == pytest.approx(BASE_LR * factor, rel=1e-9), epoch
        assert scheduler.factor(epoch) == pytest.approx(factor, rel=1e-12)


def test_every_group_is_scaled_from_its_own_base_lr() -> None:
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.01)
    scheduler = WarmupMultiStepLR(optimizer, milestones=(2,), gamma=0.5, warmup_epochs=0)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.005, 0.5])


def test_resume_from_state_dict_continues_the_schedule() -> None:
    optimizer, scheduler = make()
    uninterrupted = lrs_over(optimizer, scheduler, 75)

    optimizer, scheduler = make()
    before = lrs_over(optimizer, scheduler, 38)
    saved = (optimizer.state_dict(), scheduler.state_dict())

    resumed_optimizer, resumed = make(base_lr=1.0)  # wrong lr on purpose: the state must win
    resumed_optimizer.load_state_dict(saved[0])
    resumed.load_state_dict(saved[1])
    assert resumed.last_epoch == 38
    after = lrs_over(resumed_optimizer, resumed, 75 - 38)
    assert before + after == pytest.approx(uninterrupted, rel=1e-12)
    assert after[40 - 38] == pytest.approx(BASE_LR * 0.1) and after[70 - 38] == pytest.approx(
        BASE_LR * 0.01
    )


def test_unsorted_milestones_are_refused() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="increasing"):
        WarmupMultiStepLR(optimizer, milestones=(70, 40))
