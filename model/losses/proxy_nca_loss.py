"""Proxy-NCA loss (Movshovitz-Attias et al., "No Fuss Distance Metric Learning using Proxies",
ICCV 2017) in pytorch-metric-learning's form, with one learnable proxy per class.

The form (PML's ``ProxyNCALoss`` with its defaults): embeddings and proxies are L2-normalised,
``d(x, p) = ||x̂ - p̂||²`` (squared Euclidean, so in [0, 4]) and the loss of a sample is the
cross-entropy of a softmax over *all* proxies, the target included in the denominator::

    L = mean_i  -log( exp(-s · d(x_i, p_{y_i})) / Σ_{k} exp(-s · d(x_i, p_k)) )

with ``s = softmax_scale``. The original paper's denominator excludes the target proxy, which
lets the loss go negative; PML's (and Proxy-NCA++'s) inclusion keeps it a cross-entropy (≥ 0).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.losses.proxy_anchor_loss import PROXY_LR_MULTIPLIER

# PML's default. Proxy-NCA++ (Teh et al., ECCV 2020) reports a temperature of 1/9 (s = 9)
# working better; it is a constructor argument so a config can choose.
DEFAULT_SOFTMAX_SCALE = 1.0


def proxy_nca_loss(
    embeddings: Tensor, labels: Tensor, proxies: Tensor, softmax_scale: float
) -> Tensor:
    """The Proxy-NCA loss of a batch against a given set of proxies.

    ``embeddings`` float (N, D), ``labels`` int64 (N,) in ``[0, K)``, ``proxies`` float (K, D).
    Returns a float scalar (mean over the N samples).
    """
    x = F.normalize(embeddings, dim=1)
    p = F.normalize(proxies, dim=1)
    # ||x - p||² = 2 - 2 x·p for unit vectors; the clamp only removes rounding below zero.
    sq_dist = (2.0 - 2.0 * x @ p.T).clamp_min(0.0)  # (N, K)
    return F.cross_entropy(-softmax_scale * sq_dist, labels)


class ProxyNCALoss(nn.Module):
    """Proxy-NCA loss with learnable per-class proxies (float32 (num_classes, embedding_dim)).

    ``forward(embeddings (N, D) float, labels (N,) int64 in [0, num_classes)) -> scalar``.
    Proxies are initialised standard normal (PML's default; only their direction matters).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        softmax_scale: float = DEFAULT_SOFTMAX_SCALE,
    ) -> None:
        super().__init__()
        if num_classes < 1 or embedding_dim < 1:
            raise ValueError("num_classes and embedding_dim must be positive")
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.softmax_scale = softmax_scale
        self.proxies = nn.Parameter(torch.randn(num_classes, embedding_dim))

    def loss_with_proxies(self, embeddings: Tensor, labels: Tensor, proxies: Tensor) -> Tensor:
        """This loss's form against other proxies (K, D), labels in ``[0, K)``; used by HPL."""
        return proxy_nca_loss(embeddings, labels, proxies, self.softmax_scale)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.loss_with_proxies(embeddings, labels, self.proxies)

    def proxy_parameters(self) -> list[nn.Parameter]:
        return [self.proxies]

    def param_groups(
        self, base_lr: float, lr_multiplier: float = PROXY_LR_MULTIPLIER
    ) -> list[dict[str, Any]]:
        """Optimiser groups for the proxies: ``lr = base_lr * lr_multiplier``."""
        return [{"params": self.proxy_parameters(), "lr": base_lr * lr_multiplier}]
