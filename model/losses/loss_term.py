"""One named, weighted term of a training objective (:class:`WeightedLossSum`'s element)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from model.losses.net_output_like import NetOutputLike
from model.losses.optimizer_needs import OptimizerNeeds


@dataclass(frozen=True)
class LossTerm:
    """``weight · loss(source(output), labels)``. ``name`` must be unique in its sum and a valid
    module name (no ``.``); it keys the term's logged value, its state_dict and its optimiser
    state.

    ``needs``: how the loss's learnable state is optimised (its proxies' groups, its centers'
    own SGD). None: the loss's trainable parameters, if any, go with the network at the base
    lr.
    """

    name: str
    weight: float
    loss: nn.Module
    source: Callable[[NetOutputLike], Tensor]
    needs: OptimizerNeeds | None = None
