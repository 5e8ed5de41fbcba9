"""One named, weighted term of a training objective (:class:`WeightedLossSum`'s element)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from model.losses.net_output_like import NetOutputLike


@dataclass(frozen=True)
class LossTerm:
    """``weight · loss(source(output), labels)``. ``name`` must be unique in its sum and a valid
    module name (no ``.``); it keys the term's logged value and its state_dict."""

    name: str
    weight: float
    loss: nn.Module
    source: Callable[[NetOutputLike], Tensor]
