"""Center loss (Wen et al., "A Discriminative Feature Learning Approach for Deep Face
Recognition", ECCV 2016) as reid-strong-baseline's ``CenterLoss``, used by centroids-reid.

Each class has a learnable center ``c_k`` (D,); the loss is ``Σ_i ||x_i - c_{y_i}||² / N`` with
each squared distance clamped to [1e-12, 1e12]. (The reference clamps the whole masked N×C
distance matrix, so its zeroed entries add ``(C - 1)·1e-12`` to the loss; here only the N real
terms are clamped, a difference far below float32 resolution for any real loss value.)

The centers are not trained by the network's optimiser: :func:`step_centers` gives them their
own SGD step on the *unweighted* center-loss gradient, as the reference does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# reid-strong-baseline / centroids-reid: ``SOLVER.CENTER_LOSS_WEIGHT`` and ``SOLVER.CENTER_LR``.
DEFAULT_CENTER_LOSS_WEIGHT = 5e-4
DEFAULT_CENTER_LR = 0.5
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


def step_centers(center_loss: CenterLoss, optimizer: torch.optim.Optimizer, weight: float) -> None:
    """Step the centers on the unweighted center-loss gradient.

    Call after ``total.backward()`` where ``total`` contains ``weight · center_loss(...)``:
    the centers' ``.grad`` is multiplied by ``1 / weight`` in place, then ``optimizer`` (which
    should own only the centers, e.g. ``SGD(center_loss.parameters(), lr=0.5)``) steps. So the
    centers move at the center lr whatever the loss weight, as the reference's
    ``param.grad.data *= 1.0 / CENTER_LOSS_WEIGHT`` before ``optimizer_center.step()``.
    Centers without a gradient are left as they are.
    """
    if weight <= 0.0:
        raise ValueError(f"center loss weight must be positive, got {weight}")
    with torch.no_grad():
        for param in center_loss.parameters():
            if param.grad is not None:
                param.grad.mul_(1.0 / weight)
    optimizer.step()


def make_center_optimizer(
    center_loss: CenterLoss, lr: float = DEFAULT_CENTER_LR
) -> torch.optim.SGD:
    """The reference's centers optimiser: plain SGD (no momentum, no weight decay) at ``lr``."""
    return torch.optim.SGD(center_loss.parameters(), lr=lr)
