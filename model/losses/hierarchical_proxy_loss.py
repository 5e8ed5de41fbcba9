"""Hierarchical Proxy-based Loss (Yang, Bastan, Zhu, Gray and Samaras, "Hierarchical Proxy-based
Loss for Deep Metric Learning", WACV 2022) on top of Proxy-Anchor or Proxy-NCA.

Two levels. The fine level is the base proxy loss with one proxy per class. The coarse level
applies *the same loss form* to coarse proxies, one per cluster of fine proxies, with each
sample labelled by the cluster of its class::

    L = w0 · base(x, y, P_fine) + w1 · base(x, c[y], P_coarse)

The coarse level pulls classes that the model already finds similar towards a shared region,
which is the hierarchical structure the paper learns without needing a label taxonomy.

No public implementation exists; choices the paper (as summarised to us) leaves open are
constructor arguments, with these defaults:

* ``num_coarse``: ``max(2, round(sqrt(num_classes)))``: a geometric middle between one group
  and one group per class (11318 SOP classes → 106; 100 CUB/Cars classes → 10).
* clustering: k-means (k-means++ seeding, fixed ``seed``) over the *L2-normalised* fine proxies,
  since both base losses only see proxy directions.
* ``learnable_coarse=False``: coarse proxies are the cluster means of the current normalised fine
  proxies, recomputed at every forward, so they never drift from the classes they summarise and
  the coarse loss's gradient flows into the fine proxies. With ``True`` they are their own
  parameters, reset to the k-means centroids at each refresh (optimiser moments for them are
  then stale until they decay, which momentum-based optimisers tolerate).
* ``refresh_every=100`` training steps (forward calls in training mode): on CUB/Cars with a
  batch of 180 that is every 2–3 epochs, on SOP a third of an epoch; k-means over the proxies
  costs milliseconds, so refreshing often is cheap. The hierarchy is also built at construction
  and can be rebuilt explicitly with :meth:`HierarchicalProxyLoss.refresh_hierarchy` (for
  example at each epoch start, with ``refresh_every=None``).
* ``level_weights=(1.0, 0.1)``: our reading of the paper's summary.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.losses.optimizer_needs import NetworkOptimizerOnly
from model.losses.proxy_kmeans import kmeans
from model.losses.proxy_loss import ProxyLoss

DEFAULT_LEVEL_WEIGHTS = (1.0, 0.1)
DEFAULT_REFRESH_EVERY = 100


def default_num_coarse(num_classes: int) -> int:
    """``max(2, round(sqrt(num_classes)))``, capped at ``num_classes``."""
    return min(num_classes, max(2, round(math.sqrt(num_classes))))


class HierarchicalProxyLoss(NetworkOptimizerOnly, nn.Module):
    """Two-level proxy loss; ``forward(embeddings (N, D) float, labels (N,) int64) -> scalar``.

    Buffers (saved in checkpoints): ``class_to_cluster`` int64 (num_classes,) in
    ``[0, num_coarse)``; ``step`` int64 scalar, the number of training forwards so far.
    """

    class_to_cluster: Tensor
    step: Tensor

    def __init__(
        self,
        base: ProxyLoss,
        num_coarse: int | None = None,
        level_weights: tuple[float, float] = DEFAULT_LEVEL_WEIGHTS,
        refresh_every: int | None = DEFAULT_REFRESH_EVERY,
        learnable_coarse: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(base, ProxyLoss):
            raise TypeError("base must be a proxy loss module (ProxyAnchorLoss, ProxyNCALoss)")
        num_classes = base.num_classes
        if num_classes < 2:
            raise ValueError("a hierarchy needs at least two classes")
        k = default_num_coarse(num_classes) if num_coarse is None else num_coarse
        if not 1 <= k <= num_classes:
            raise ValueError(f"num_coarse must be in [1, {num_classes}], got {k}")
        if refresh_every is not None and refresh_every < 1:
            raise ValueError("refresh_every must be positive (or None for manual refreshes)")
        self.base = base
        self.num_coarse = k
        self.level_weights = level_weights
        self.refresh_every = refresh_every
        self.seed = seed
        self.register_buffer("class_to_cluster", torch.zeros(num_classes, dtype=torch.int64))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.learned_coarse: nn.Parameter | None = (
            nn.Parameter(torch.zeros(k, base.embedding_dim)) if learnable_coarse else None
        )
        self.refresh_hierarchy()

    @torch.no_grad()
    def refresh_hierarchy(self) -> None:
        """Re-cluster the current fine proxies; updates ``class_to_cluster`` (and the learnable
        coarse proxies, reset to the new cluster means)."""
        fine = F.normalize(self.base.proxies.detach(), dim=1)
        result = kmeans(fine, self.num_coarse, seed=self.seed)
        self.class_to_cluster.copy_(result.assignment)
        if self.learned_coarse is not None:
            self.learned_coarse.copy_(result.centroids)

    def coarse_proxies(self) -> Tensor:
        """float (num_coarse, D): learned, or the means of the normalised fine proxies per
        cluster (differentiable with respect to the fine proxies)."""
        if self.learned_coarse is not None:
            return self.learned_coarse
        fine = F.normalize(self.base.proxies, dim=1)
        sums = torch.zeros(self.num_coarse, fine.shape[1], dtype=fine.dtype, device=fine.device)
        sums = sums.index_add(0, self.class_to_cluster, fine)
        counts = torch.bincount(self.class_to_cluster, minlength=self.num_coarse)
        return sums / counts[:, None].to(fine.dtype)

    def level_losses(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(fine, coarse) unweighted losses, float scalars; no refresh, no step counting."""
        base = self.base
        fine = base.loss_with_proxies(embeddings, labels, base.proxies)
        coarse = base.loss_with_proxies(
            embeddings, self.class_to_cluster[labels], self.coarse_proxies()
        )
        return fine, coarse

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if self.training:
            step = int(self.step.item())
            if self.refresh_every is not None and step > 0 and step % self.refresh_every == 0:
                self.refresh_hierarchy()
            self.step += 1
        fine, coarse = self.level_losses(embeddings, labels)
        w_fine, w_coarse = self.level_weights
        return w_fine * fine + w_coarse * coarse

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Fine (and learnable coarse) proxies, one group each, at the base loss's
        ``base_lr * lr_multiplier``."""
        groups = self.base.param_groups(base_lr)
        if self.learned_coarse is not None:
            lr = base_lr * self.base.lr_multiplier
            groups.append({"params": [self.learned_coarse], "lr": lr})
        return groups
