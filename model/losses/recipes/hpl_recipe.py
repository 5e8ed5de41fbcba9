"""Training recipe: the Hierarchical Proxy-based Loss on the retrieval embedding.

``hpl_recipe(...)`` builds the loss; :func:`proxy_param_groups` gives the optimiser groups its
proxies need (they learn ``PROXY_LR_MULTIPLIER`` × faster than the network, as in Proxy-Anchor).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from model.losses.hierarchical_proxy_loss import (
    DEFAULT_LEVEL_WEIGHTS,
    DEFAULT_REFRESH_EVERY,
    HierarchicalProxyLoss,
    ProxyLoss,
)
from model.losses.loss_term import LossTerm
from model.losses.output_selectors import EMBEDDINGS
from model.losses.proxy_anchor_loss import PROXY_LR_MULTIPLIER, ProxyAnchorLoss
from model.losses.proxy_nca_loss import ProxyNCALoss
from model.losses.recipes.term_names import HPL
from model.losses.weighted_loss_sum import WeightedLossSum

# name -> constructor(num_classes, embedding_dim, **options) of the per-level proxy loss.
BASE_PROXY_LOSSES: dict[str, Callable[..., ProxyLoss]] = {
    "proxy_anchor": ProxyAnchorLoss,
    "proxy_nca": ProxyNCALoss,
}


def hpl_recipe(
    num_classes: int,
    embedding_dim: int,
    base: str = "proxy_anchor",
    *,
    base_options: Mapping[str, float] | None = None,
    num_coarse: int | None = None,
    level_weights: Sequence[float] = DEFAULT_LEVEL_WEIGHTS,
    refresh_every: int | None = DEFAULT_REFRESH_EVERY,
    learnable_coarse: bool = False,
    seed: int = 0,
) -> WeightedLossSum:
    """One term, :data:`HPL` (``"hpl"``), weight 1: :class:`HierarchicalProxyLoss` over
    ``NetOutput.embeddings`` (N, embedding_dim).

    ``base`` is a key of :data:`BASE_PROXY_LOSSES`; ``base_options`` go to its constructor (e.g.
    ``alpha``, ``delta`` or ``softmax_scale``). ``level_weights`` is (w_fine, w_coarse); a YAML
    list is accepted."""
    if base not in BASE_PROXY_LOSSES:
        raise ValueError(
            f"unknown base proxy loss {base!r}; choose from {sorted(BASE_PROXY_LOSSES)}"
        )
    if len(level_weights) != 2:
        raise ValueError(f"level_weights must be (w_fine, w_coarse), got {list(level_weights)}")
    base_loss = BASE_PROXY_LOSSES[base](num_classes, embedding_dim, **(base_options or {}))
    hpl = HierarchicalProxyLoss(
        base_loss,
        num_coarse=num_coarse,
        level_weights=(level_weights[0], level_weights[1]),
        refresh_every=refresh_every,
        learnable_coarse=learnable_coarse,
        seed=seed,
    )
    # Proxies live where retrieval happens: the exported embedding (the losses normalise it).
    return WeightedLossSum([LossTerm(HPL, 1.0, hpl, EMBEDDINGS)])


def proxy_param_groups(
    loss: nn.Module, base_lr: float, lr_multiplier: float = PROXY_LR_MULTIPLIER
) -> list[dict[str, Any]]:
    """Optimiser groups for every proxy loss inside ``loss`` (outermost ``param_groups`` owner
    wins, so HPL's base proxies are not listed twice). Empty for proxy-free losses."""
    groups: list[dict[str, Any]] = []
    for child in loss.children():
        param_groups = getattr(child, "param_groups", None)
        if callable(param_groups):
            groups.extend(param_groups(base_lr, lr_multiplier))
        else:
            groups.extend(proxy_param_groups(child, base_lr, lr_multiplier))
    return groups
