"""Centroid Triplet Loss (Wieczorek et al., "On the Unreasonable Effectiveness of Centroids in
Image Retrieval", ICONIP 2021; reference: mikwieczorek/centroids-reid, ``train_ctl_model.py``).

Definition. Group the batch rows by label, keeping batch order within each class. For each
position b, the b-th image of every class is a *query* and the mean of that class's *other*
images in the batch is its *centroid*. A class is usable at b when it has a b-th image and at
least one other image (single-image classes never are: they have no centroid). At a position
with at least two usable classes, the batch-hard triplet loss
(:func:`~model.losses.batch_hard_triplet_loss.masked_batch_hard_triplet`, same margin, plain
Euclidean distance) runs over the 2M rows ``[queries; centroids]`` labelled
``[classes; classes]``, every row an anchor: a query's hardest positive is its own centroid (or
itself, at distance ≈ 1e-6) and its hardest negative may be another class's query or centroid.
The loss is the mean over such positions; a batch without any gives a zero with a gradient.

Difference from the reference: it pads classes with fewer than K images with all-zero "mock"
images, which then still enter its instance-triplet mining pool as real rows (at the origin).
Here there is no padding: missing images are masked out of everything, so a batch with uneven
class sizes gives the loss of its real images only. With exactly K images per class (the
reference's P×K sampler) the two agree.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.losses.distances.euclidean_distance import euclidean_distances
from model.losses.miners.batch_hard_miner import BatchHardMiner

# reid-strong-baseline / centroids-reid default (``SOLVER.MARGIN``), also the instance triplet's.
DEFAULT_MARGIN = 0.5
# A query's hardest positive may be itself (at ≈ 1e-6), as for the reference's instance triplet.
MINER = BatchHardMiner(anchor_as_positive=True)


class CentroidTripletLoss(nn.Module):
    """``loss(features (N, D) float, labels (N,) integer) -> scalar``.

    Labels may be any integers and the batch may be in any order; only the order of the images
    *within* a class matters (it decides which images share a position b). Cost per call:
    O(P·K²·D) for the centroids and O(K·P²·D) for the distances, for P classes of at most K
    images, all in a few batched tensor ops.
    """

    def __init__(self, margin: float = DEFAULT_MARGIN) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        n = features.shape[0]
        if n == 0:
            return features.sum() * 0.0
        x = features.float() if features.dtype in (torch.float16, torch.bfloat16) else features
        device = features.device

        # Class index p in [0, P) and rank k (position within its class, in batch order).
        _, klass = torch.unique(labels, return_inverse=True)
        num_classes = int(klass.max()) + 1
        counts = torch.bincount(klass, minlength=num_classes)  # (P,)
        same = klass[:, None] == klass[None, :]
        earlier = torch.ones(n, n, dtype=torch.bool, device=device).tril(diagonal=-1)
        rank = (same & earlier).sum(dim=1)  # (N,)
        k_max = int(counts.max())

        # slot (P, K): row index of class p's k-th image, -1 (sentinel) where it has none.
        slot = torch.full((num_classes, k_max), -1, dtype=torch.long, device=device)
        slot[klass, rank] = torch.arange(n, device=device)
        present = slot >= 0
        gathered = torch.where(present[..., None], x[slot.clamp(min=0)], torch.zeros_like(x[:1]))

        # Centroid (b, p): masked mean of class p's images other than its b-th.
        not_b = ~torch.eye(k_max, dtype=torch.bool, device=device)  # (K_b, K_k)
        others = present[None, :, :] & not_b[:, None, :]  # (K_b, P, K_k)
        # clamp: single-image classes have no other image; their all-zero weights stay zero.
        weights = others.to(x.dtype) / (counts - 1).clamp(min=1).to(x.dtype)[None, :, None]
        centroids = torch.einsum("bpk,pkd->bpd", weights, gathered)  # (K, P, D)
        queries = gathered.transpose(0, 1)  # (K, P, D)

        usable = (present & (counts >= 2)[:, None]).T  # (K, P)
        qualifies = usable.sum(dim=1) >= 2  # (K,)
        if not bool(qualifies.any()):
            return features.sum() * 0.0

        rows = torch.cat([queries, centroids], dim=1)[qualifies]  # (B, 2P, D)
        valid = usable.repeat(1, 2)[qualifies]  # (B, 2P)
        row_labels = torch.arange(num_classes, device=device).repeat(2).expand_as(valid)
        dist = euclidean_distances(rows, rows)  # (B, 2P, 2P)
        hardest = MINER.hardest(dist, row_labels, valid)
        d_ap = dist.gather(2, hardest.positive[..., None])[..., 0]  # (B, 2P)
        d_an = dist.gather(2, hardest.negative[..., None])[..., 0]
        hinge = torch.where(hardest.anchor, (d_ap - d_an + self.margin).relu(), 0.0)
        # No division by zero: a qualifying position has two usable classes, so >= 4 anchors.
        anchors = hardest.anchor.sum(dim=1).to(dist.dtype)
        return (hinge.sum(dim=1) / anchors).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
