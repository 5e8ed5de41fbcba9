"""The center-loss centers' own optimiser (reid-strong-baseline / centroids-reid
``optimizer_center``): plain SGD on the *unweighted* center-loss gradient, outside the network's
Adam, as the :class:`~model.losses.optimizer_needs.OptimizerNeeds` of a center-loss term."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from model.losses.center_loss import CenterLoss

# reid-strong-baseline / centroids-reid ``SOLVER.CENTER_LR``.
DEFAULT_CENTER_LR = 0.5


def make_center_optimizer(
    center_loss: CenterLoss, lr: float = DEFAULT_CENTER_LR
) -> torch.optim.SGD:
    """The reference's centers optimiser: plain SGD (no momentum, no weight decay) at ``lr``."""
    return torch.optim.SGD(center_loss.parameters(), lr=lr)


def step_centers(center_loss: CenterLoss, optimizer: torch.optim.Optimizer, weight: float) -> None:
    """Step the centers on the unweighted center-loss gradient.

    Call after ``total.backward()`` where ``total`` contains ``weight · center_loss(...)``:
    the centers' ``.grad`` is multiplied by ``1 / weight`` in place, then ``optimizer`` (which
    should own only the centers, e.g. ``SGD(center_loss.parameters(), lr=0.5)``) steps. So the
    centers move at the center lr whatever the loss weight, as the reference's
    ``param.grad.data *= 1.0 / CENTER_LOSS_WEIGHT`` before ``optimizer_center.step()``.
    Centers without a gradient are left as they are.
    """
    if weight <= 0.0:
        raise ValueError(f"center loss weight must be positive, got {weight}")
    with torch.no_grad():
        for param in center_loss.parameters():
            if param.grad is not None:
                param.grad.mul_(1.0 / weight)
    optimizer.step()


class CenterSGD:
    """``LossTerm(..., CenterLoss(...), needs=CenterSGD(that_center_loss, lr))``.

    ``optimizer``: the SGD over the centers alone. The centers are in no group of the network's
    optimiser; :meth:`after_backward` steps them with the term's weight divided out.
    """

    def __init__(self, center_loss: CenterLoss, lr: float = DEFAULT_CENTER_LR) -> None:
        self.center_loss = center_loss
        self.optimizer = make_center_optimizer(center_loss, lr)

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        return []

    def after_backward(self, scaler: torch.amp.GradScaler, loss_weight: float) -> None:
        """Unscale (under AMP), then step on ``grad / loss_weight``; a step whose center
        gradients are not all finite is skipped, as the scaler skips the network's."""
        # The scaler does not step this optimiser, so it has to unscale its gradients here.
        if scaler.is_enabled():
            scaler.unscale_(self.optimizer)
        grads_finite = all(
            p.grad is None or bool(torch.isfinite(p.grad).all())
            for group in self.optimizer.param_groups
            for p in group["params"]
        )
        if grads_finite:
            step_centers(self.center_loss, self.optimizer, loss_weight)

    def optimizer_state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_optimizer_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(dict(state))

    def __repr__(self) -> str:
        return f"CenterSGD(lr={self.optimizer.param_groups[0]['lr']})"
