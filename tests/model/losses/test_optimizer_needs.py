"""The needs of state the network's optimiser steps alone: nothing after backward, no state."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from model.losses.optimizer_needs import NetworkOptimizerOnly, OptimizerNeeds


class Temperature(NetworkOptimizerOnly, nn.Module):
    """A loss with one learnable scalar, stepped with the network at the base lr."""

    def __init__(self) -> None:
        super().__init__()
        self.t = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.t * x).sum()

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        return [{"params": [self.t]}]


def test_nothing_after_backward_and_no_optimiser_state() -> None:
    loss = Temperature()
    needs: OptimizerNeeds = loss  # structurally an OptimizerNeeds
    loss(torch.ones(3)).backward()
    needs.after_backward(torch.amp.GradScaler("cpu", enabled=False), loss_weight=2.0)
    assert loss.t.item() == 1.0 and loss.t.grad is not None and loss.t.grad.item() == 3.0
    assert needs.optimizer_state_dict() == {}
    needs.load_optimizer_state_dict({})
    with pytest.raises(ValueError, match="owns no optimiser"):
        needs.load_optimizer_state_dict({"state": {}})
