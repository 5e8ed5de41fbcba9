"""Batch-hard triplet loss (Hermans, Beyer and Leibe, "In Defense of the Triplet Loss for Person
Re-Identification", 2017) in the form of reid-strong-baseline, which centroids-reid trains with.

Distance: plain (not squared) Euclidean, ``sqrt(clamp(||a||² + ||b||² - 2 a·b, min=1e-12))``,
the reference's ``euclidean_dist``. The clamp also keeps ``sqrt`` differentiable at 0: a row's
distance to itself is ``sqrt(1e-12) = 1e-6`` (or a little more, from rounding), not 0.

Mining, per anchor: the hardest positive is the farthest row with the anchor's label, the anchor
itself included (so a lone sample has ``d_ap`` ≈ 1e-6, as in the reference); the hardest
negative is the nearest row with another label. Loss: mean over anchors of
``relu(d_ap - d_an + margin)``, i.e. ``MarginRankingLoss(margin)(d_an, d_ap, y=1)``.

Unlike the reference (which needs exactly K images per class), anchors without any negative in
the batch are skipped, and a batch without any usable anchor gives a zero that still has a
gradient, so a training step never crashes on an odd batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# reid-strong-baseline / centroids-reid default (``SOLVER.MARGIN``), also used by CTL.
DEFAULT_MARGIN = 0.5
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


def masked_batch_hard_triplet(
    dist: Tensor, labels: Tensor, valid: Tensor, margin: float
) -> tuple[Tensor, Tensor]:
    """Batch-hard triplet loss over B independent groups of M rows, some rows absent.

    ``dist`` float (B, M, M) pairwise distances; ``labels`` integer (B, M); ``valid`` bool
    (B, M), False for rows that take no part (neither as anchor, positive nor negative).
    Returns ``(loss (B,), anchors (B,) int64)``: per group, the mean over its valid anchors that
    have a valid negative of ``relu(d_ap - d_an + margin)``, and how many such anchors there
    were; groups without any have loss 0 (with a gradient path, never NaN).
    """
    same = labels[:, :, None] == labels[:, None, :]
    both = valid[:, :, None] & valid[:, None, :]
    positive = same & both
    negative = ~same & both
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    # max/min with indices (not amax/amin), as the reference: ties send the gradient to one row.
    d_ap = torch.where(positive, dist, -inf).max(dim=2).values
    d_an = torch.where(negative, dist, inf).min(dim=2).values
    anchor = valid & negative.any(dim=2)
    per_anchor = torch.where(anchor, torch.relu(d_ap - d_an + margin), torch.zeros_like(d_ap))
    count = anchor.sum(dim=1)
    loss = per_anchor.sum(dim=1) / count.clamp(min=1).to(dist.dtype)
    return loss, count


def batch_hard_triplet(dist: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Batch-hard triplet loss from a precomputed distance matrix.

    ``dist`` float (M, M), ``labels`` integer (M,) (any values) -> float scalar: mean over anchors
    with at least one negative; ``dist.sum() * 0`` (zero, differentiable) when there is none.
    """
    valid = torch.ones_like(labels, dtype=torch.bool)
    loss, count = masked_batch_hard_triplet(dist[None], labels[None], valid[None], margin)
    if int(count[0]) == 0:
        return dist.sum() * 0.0
    return loss[0]


class BatchHardTripletLoss(nn.Module):
    """``loss(features (N, D) float, labels (N,) integer) -> scalar``: batch-hard triplet loss on
    plain Euclidean distances between the rows of ``features`` (the reference applies it to the
    raw pre-BN pooled feature)."""

    def __init__(self, margin: float = DEFAULT_MARGIN) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        dist = euclidean_distances(features, features)
        return batch_hard_triplet(dist, labels, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
