"""Plain (not squared) Euclidean distance in the form of reid-strong-baseline's
``euclidean_dist``, which centroids-reid trains with.

``sqrt(clamp(||a||² + ||b||² - 2 a·b, min=1e-12))``. The clamp also keeps ``sqrt``
differentiable at 0: a row's distance to itself is ``sqrt(1e-12) = 1e-6`` (or a little more,
from rounding), not 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# The reference clamps squared distances here before the sqrt (``euclidean_dist``).
SQUARED_DISTANCE_FLOOR = 1e-12


def euclidean_distances(x: Tensor, y: Tensor) -> Tensor:
    """Plain Euclidean distances in the reference's expanded form.

    ``x`` float (..., M, D), ``y`` float (..., N, D) -> float (..., M, N), every entry
    ``>= 1e-6`` (the square root of :data:`SQUARED_DISTANCE_FLOOR`). Half-precision inputs are
    computed in float32 with autocast off: the 1e-12 floor underflows to 0 in float16, and the
    gradient of ``sqrt`` at 0 is infinite. float64 inputs stay float64.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if y.dtype in (torch.float16, torch.bfloat16):
        y = y.float()
    with torch.autocast(device_type=x.device.type, enabled=False):
        xx = x.pow(2).sum(dim=-1, keepdim=True)  # (..., M, 1)
        yy = y.pow(2).sum(dim=-1, keepdim=True).transpose(-1, -2)  # (..., 1, N)
        squared = xx + yy - 2.0 * (x @ y.transpose(-1, -2))
        return squared.clamp(min=SQUARED_DISTANCE_FLOOR).sqrt()


@dataclass(frozen=True)
class EuclideanDistance:
    """``(embeddings (N, D) float, any norm) -> (N, N)``: :func:`euclidean_distances` between
    the rows; the diagonal is ≈ 1e-6, not 0."""

    def __call__(self, embeddings: Tensor) -> Tensor:
        return euclidean_distances(embeddings, embeddings)
