"""What a loss term with learnable state needs from the training step, declared by the term.

Two kinds of need occur: optimiser groups of its own in the network's optimiser (proxies learn
at 100× the base lr) and a step of its own after backward (center-loss centers: their own SGD
on the *unweighted* gradient). :class:`OptimizerNeeds` covers both, so the trainer asks the
loss, never what kind of loss it is.

The trainer's order in one step: zero the gradients of the network *and of every loss
parameter* (``nn.Module.zero_grad`` on the whole loss, so state stepped here needs no zeroing of
its own); forward; ``scaler.scale(total).backward()``; average loss-parameter gradients over DDP
ranks; ``scaler.step(network optimiser)``; :meth:`OptimizerNeeds.after_backward`;
``scaler.update()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch


class OptimizerNeeds(Protocol):
    """A loss term's learnable state, as the optimisers see it."""

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Groups for the network's optimiser, each ``{"params": [...], "lr": ...}`` (a group
        without ``"lr"`` gets ``base_lr``). Parameters stepped by :meth:`after_backward` are in
        none of them; ``[]`` when there are no others."""
        ...

    def after_backward(self, scaler: torch.amp.GradScaler, loss_weight: float) -> None:
        """Step the state the network's optimiser does not (no-op when there is none).

        ``scaler``: the step's gradient scaler (disabled without AMP); gradients are still
        scaled by it. ``loss_weight``: the factor this term's loss was multiplied by in the
        backpropagated total (so ``grad / loss_weight`` is the unweighted gradient).
        """
        ...

    def optimizer_state_dict(self) -> dict[str, Any]:
        """State of the optimiser(s) this term owns, for checkpoints; ``{}`` when none."""
        ...

    def load_optimizer_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`optimizer_state_dict` returned."""
        ...


class NetworkOptimizerOnly:
    """The part of :class:`OptimizerNeeds` for state the network's optimiser steps alone
    (proxies): nothing to do after backward, no optimiser of its own. Subclasses add
    ``param_groups``."""

    def after_backward(self, scaler: torch.amp.GradScaler, loss_weight: float) -> None:
        return None

    def optimizer_state_dict(self) -> dict[str, Any]:
        return {}

    def load_optimizer_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} owns no optimiser, got state {dict(state)}")
