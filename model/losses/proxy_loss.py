"""What the proxy losses (Proxy-Anchor, Proxy-NCA) share: one learnable proxy per class, a loss
form that can be evaluated against any set of proxies (HPL's coarse level uses it), and an
optimiser group of their own at ``lr_multiplier`` × the base lr."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from model.losses.optimizer_needs import NetworkOptimizerOnly

# Proxies learn 100× faster than the network, as in Kim et al.'s implementation details
# (Proxy Anchor, CVPR 2020): each proxy gets gradient only from its class's few samples per
# batch, yet starts at random.
PROXY_LR_MULTIPLIER = 100.0


class ProxyLoss(NetworkOptimizerOnly, nn.Module):
    """``forward(embeddings (N, D) float, labels (N,) int64 in [0, num_classes)) -> scalar``.

    ``proxies``: Parameter float32 (num_classes, embedding_dim), initialised by
    :meth:`init_proxies` (each loss keeps its authors' scheme). Subclasses define
    :meth:`loss_with_proxies`.
    """

    def __init__(
        self, num_classes: int, embedding_dim: int, lr_multiplier: float = PROXY_LR_MULTIPLIER
    ) -> None:
        super().__init__()
        if num_classes < 1 or embedding_dim < 1:
            raise ValueError("num_classes and embedding_dim must be positive")
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.lr_multiplier = lr_multiplier
        self.proxies = nn.Parameter(torch.empty(num_classes, embedding_dim))
        with torch.no_grad():
            self.init_proxies(self.proxies)

    def init_proxies(self, proxies: Tensor) -> None:
        """Fill ``proxies`` (num_classes, embedding_dim) in place."""
        raise NotImplementedError

    def loss_with_proxies(self, embeddings: Tensor, labels: Tensor, proxies: Tensor) -> Tensor:
        """This loss's form against other proxies (K, D), labels in ``[0, K)``; used by HPL."""
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.loss_with_proxies(embeddings, labels, self.proxies)

    def proxy_parameters(self) -> list[nn.Parameter]:
        return [self.proxies]

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Optimiser groups for the proxies: ``lr = base_lr * lr_multiplier``."""
        return [{"params": self.proxy_parameters(), "lr": base_lr * self.lr_multiplier}]
