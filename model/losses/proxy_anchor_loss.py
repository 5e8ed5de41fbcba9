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

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Both from the paper's implementation details (and the authors' released training script).
DEFAULT_ALPHA = 32.0
DEFAULT_DELTA = 0.1
# Proxies learn 100× faster than the network, as in Kim et al.'s implementation details: each
# proxy gets gradient only from its class's few samples per batch, yet starts at random.
PROXY_LR_MULTIPLIER = 100.0


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


class ProxyAnchorLoss(nn.Module):
    """Proxy-Anchor loss with learnable per-class proxies (float32 (num_classes, embedding_dim)).

    ``forward(embeddings (N, D) float, labels (N,) int64 in [0, num_classes)) -> scalar``.
    Proxies are initialised Kaiming-normal (fan-out), as in the authors' code. Give them their
    own optimiser group: see :meth:`param_groups`.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        alpha: float = DEFAULT_ALPHA,
        delta: float = DEFAULT_DELTA,
    ) -> None:
        super().__init__()
        if num_classes < 1 or embedding_dim < 1:
            raise ValueError("num_classes and embedding_dim must be positive")
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.alpha = alpha
        self.delta = delta
        self.proxies = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.kaiming_normal_(self.proxies, mode="fan_out")

    def loss_with_proxies(self, embeddings: Tensor, labels: Tensor, proxies: Tensor) -> Tensor:
        """This loss's form against other proxies (K, D), labels in ``[0, K)``; used by HPL."""
        return proxy_anchor_loss(embeddings, labels, proxies, self.alpha, self.delta)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.loss_with_proxies(embeddings, labels, self.proxies)

    def proxy_parameters(self) -> list[nn.Parameter]:
        return [self.proxies]

    def param_groups(
        self, base_lr: float, lr_multiplier: float = PROXY_LR_MULTIPLIER
    ) -> list[dict[str, Any]]:
        """Optimiser groups for the proxies: ``lr = base_lr * lr_multiplier``."""
        return [{"params": self.proxy_parameters(), "lr": base_lr * lr_multiplier}]
