"""Proxy-Anchor loss (Kim, Kim, Cho and Kwak, "Proxy Anchor Loss for Deep Metric Learning",
CVPR 2020), with one learnable proxy per class.

Each proxy acts as an anchor over the whole batch::

    s(x, p) = cos(x, p)
    L = 1/|P+| Σ_{p ∈ P+} log(1 + Σ_{x ∈ X_p+} exp(-α (s(x, p) - δ)))
      + 1/|P|  Σ_{p ∈ P}  log(1 + Σ_{x ∈ X_p-} exp( α (s(x, p) + δ)))

where ``P`` is every proxy, ``P+`` the proxies of the classes present in the batch, ``X_p+`` the
batch samples of proxy ``p``'s class and ``X_p-`` all the others.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.losses.proxy_loss import PROXY_LR_MULTIPLIER, ProxyLoss

# Both from the paper's implementation details (and the authors' released training script).
DEFAULT_ALPHA = 32.0
DEFAULT_DELTA = 0.1


def _log1p_sum_exp(z: Tensor, mask: Tensor) -> Tensor:
    """``log(1 + Σ_j mask[i, j] · exp(z[i, j]))`` per row, without overflow at α = 32.

    ``z`` float (R, M), ``mask`` bool (R, M); returns (R,). An all-False row gives 0.
    """
    masked = z.masked_fill(~mask, float("-inf"))
    # The constant 1 is exp(0): a zero column makes logsumexp compute log(1 + Σ exp) stably.
    zero = torch.zeros(z.shape[0], 1, dtype=z.dtype, device=z.device)
    return torch.logsumexp(torch.cat([zero, masked], dim=1), dim=1)


def proxy_anchor_loss(
    embeddings: Tensor, labels: Tensor, proxies: Tensor, alpha: float, delta: float
) -> Tensor:
    """The Proxy-Anchor loss of a batch against a given set of proxies.

    ``embeddings`` float (N, D) (any norm: cosine similarity is used), ``labels`` int64 (N,) in
    ``[0, K)``, ``proxies`` float (K, D). Returns a float scalar.
    """
    cos = F.normalize(embeddings, dim=1) @ F.normalize(proxies, dim=1).T  # (N, K)
    one_hot = F.one_hot(labels, num_classes=proxies.shape[0]).bool()  # (N, K)
    present = one_hot.any(dim=0)  # (K,)
    pos = _log1p_sum_exp((-alpha * (cos - delta)).T, one_hot.T)  # (K,)
    neg = _log1p_sum_exp((alpha * (cos + delta)).T, ~one_hot.T)  # (K,)
    return pos[present].sum() / present.sum() + neg.mean()


class ProxyAnchorLoss(ProxyLoss):
    """Proxy-Anchor loss with learnable per-class proxies (float32 (num_classes, embedding_dim)).

    ``forward(embeddings (N, D) float, labels (N,) int64 in [0, num_classes)) -> scalar``.
    Proxies are initialised Kaiming-normal (fan-out), as in the authors' code, and learn at
    ``lr_multiplier`` × the base lr (see :meth:`param_groups`).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        alpha: float = DEFAULT_ALPHA,
        delta: float = DEFAULT_DELTA,
        lr_multiplier: float = PROXY_LR_MULTIPLIER,
    ) -> None:
        super().__init__(num_classes, embedding_dim, lr_multiplier)
        self.alpha = alpha
        self.delta = delta

    def init_proxies(self, proxies: Tensor) -> None:
        nn.init.kaiming_normal_(proxies, mode="fan_out")

    def loss_with_proxies(self, embeddings: Tensor, labels: Tensor, proxies: Tensor) -> Tensor:
        return proxy_anchor_loss(embeddings, labels, proxies, self.alpha, self.delta)
