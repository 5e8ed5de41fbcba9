"""Training recipe: the Hierarchical Proxy-based Loss on the retrieval embedding."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from model.losses.hierarchical_proxy_loss import (
    DEFAULT_LEVEL_WEIGHTS,
    DEFAULT_REFRESH_EVERY,
    HierarchicalProxyLoss,
)
from model.losses.loss_term import LossTerm
from model.losses.output_selectors import EMBEDDINGS
from model.losses.proxy_anchor_loss import ProxyAnchorLoss
from model.losses.proxy_loss import PROXY_LR_MULTIPLIER, ProxyLoss
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
    proxy_lr_multiplier: float = PROXY_LR_MULTIPLIER,
    seed: int = 0,
) -> WeightedLossSum:
    """One term, :data:`HPL` (``"hpl"``), weight 1: :class:`HierarchicalProxyLoss` over
    ``NetOutput.embeddings`` (N, embedding_dim); its proxies (fine, and coarse when learnable)
    learn at ``proxy_lr_multiplier`` × the base lr, one optimiser group each.

    ``base`` is a key of :data:`BASE_PROXY_LOSSES`; ``base_options`` go to its constructor (e.g.
    ``alpha``, ``delta`` or ``softmax_scale``). ``level_weights`` is (w_fine, w_coarse); a YAML
    list is accepted."""
    if base not in BASE_PROXY_LOSSES:
        raise ValueError(
            f"unknown base proxy loss {base!r}; choose from {sorted(BASE_PROXY_LOSSES)}"
        )
    if len(level_weights) != 2:
        raise ValueError(f"level_weights must be (w_fine, w_coarse), got {list(level_weights)}")
    base_loss = BASE_PROXY_LOSSES[base](
        num_classes, embedding_dim, lr_multiplier=proxy_lr_multiplier, **(base_options or {})
    )
    hpl = HierarchicalProxyLoss(
        base_loss,
        num_coarse=num_coarse,
        level_weights=(level_weights[0], level_weights[1]),
        refresh_every=refresh_every,
        learnable_coarse=learnable_coarse,
        seed=seed,
    )
    # Proxies live where retrieval happens: the exported embedding (the losses normalise it).
    return WeightedLossSum([LossTerm(HPL, 1.0, hpl, EMBEDDINGS, needs=hpl)])
