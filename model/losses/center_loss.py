"""Center loss (Wen et al., "A Discriminative Feature Learning Approach for Deep Face
Recognition", ECCV 2016) as reid-strong-baseline's ``CenterLoss``, used by centroids-reid.

Each class has a learnable center ``c_k`` (D,); the loss is ``Σ_i ||x_i - c_{y_i}||² / N`` with
each squared distance clamped to [1e-12, 1e12]. (The reference clamps the whole masked N×C
distance matrix, so its zeroed entries add ``(C - 1)·1e-12`` to the loss; here only the N real
terms are clamped, a difference far below float32 resolution for any real loss value.)

The centers are not trained by the network's optimiser:
:class:`~model.losses.center_sgd.CenterSGD` gives them their own SGD step on the *unweighted*
center-loss gradient, as the reference does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# reid-strong-baseline / centroids-reid ``SOLVER.CENTER_LOSS_WEIGHT``.
DEFAULT_CENTER_LOSS_WEIGHT = 5e-4
# The reference's clamp bounds on the squared distances.
SQUARED_DISTANCE_BOUNDS = (1e-12, 1e12)


class CenterLoss(nn.Module):
    """``loss(features (N, D) float, labels (N,) int64 in [0, num_classes)) -> scalar``.

    ``centers``: Parameter float32 (num_classes, feat_dim), standard-normal initialised like the
    reference (``torch.randn``; seed the global generator for reproducibility).
    """

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        if features.shape[-1] != self.feat_dim:
            raise ValueError(f"expected {self.feat_dim}-d features, got {features.shape[-1]}")
        # Never below the centers' float32: under autocast the features may be half precision.
        dtype = torch.promote_types(features.dtype, self.centers.dtype)
        centers = self.centers[labels].to(dtype)  # (N, D)
        squared = (features.to(dtype) - centers).pow(2).sum(dim=1)
        low, high = SQUARED_DISTANCE_BOUNDS
        return squared.clamp(min=low, max=high).sum() / features.shape[0]

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}"
