"""Deterministic k-means (k-means++ seeding, Lloyd iterations) for clustering class proxies.

Used by the hierarchical proxy loss to build coarse proxies. Small (K ≤ tens of thousands of
proxies), so plain dense torch is enough; no FAISS dependency on the training side.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

# Lloyd's algorithm on a few thousand proxies settles in well under this many rounds; the cap
# only bounds the cost of a pathological oscillation.
DEFAULT_MAX_ITER = 100


class KMeansResult(NamedTuple):
    """``centroids`` float (k, D); ``assignment`` int64 (M,) in ``[0, k)``, every id used."""

    centroids: Tensor
    assignment: Tensor


def _squared_distances(points: Tensor, centroids: Tensor) -> Tensor:
    """(M, D), (k, D) -> (M, k) squared Euclidean distances, clamped at 0."""
    return torch.cdist(points, centroids).square()


def _kmeans_pp_seeds(points: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ (Arthur & Vassilvitskii, 2007): each seed drawn ∝ squared distance to the
    nearest seed so far. Returns float (k, D)."""
    m = points.shape[0]
    first = int(torch.randint(m, (1,), generator=generator).item())
    seeds = [points[first]]
    nearest = _squared_distances(points, points[first : first + 1]).squeeze(1)
    for _ in range(1, k):
        total = nearest.sum()
        if total <= 0:
            # All remaining points coincide with a seed: any unused index is as good as another.
            idx = int(torch.randint(m, (1,), generator=generator).item())
        else:
            idx = int(torch.multinomial(nearest / total, 1, generator=generator).item())
        seeds.append(points[idx])
        nearest = torch.minimum(
            nearest, _squared_distances(points, points[idx : idx + 1]).squeeze(1)
        )
    return torch.stack(seeds)


def _fill_empty_clusters(assignment: Tensor, dist: Tensor, k: int) -> None:
    """Move, in place, the worst-fitting point of a cluster of ≥ 2 into each empty cluster.

    ``assignment`` int64 (M,), ``dist`` float (M, k). Terminates because k ≤ M.
    """
    while True:
        counts = torch.bincount(assignment, minlength=k)
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel() == 0:
            return
        own = dist.gather(1, assignment[:, None]).squeeze(1)
        # Taking a singleton's only point would just move the hole elsewhere.
        own = own.masked_fill(counts[assignment] < 2, -1.0)
        assignment[int(own.argmax().item())] = int(empty[0].item())


def kmeans(points: Tensor, k: int, seed: int, max_iter: int = DEFAULT_MAX_ITER) -> KMeansResult:
    """Cluster ``points`` float (M, D) into ``k`` groups (1 ≤ k ≤ M), deterministic in ``seed``.

    Runs on a detached float64 copy (ties and rounding then do not depend on the caller's dtype)
    and stops when the assignment no longer changes. A cluster that empties is re-seeded with the
    point farthest from its centroid, so every id in ``[0, k)`` is used. Centroids are returned
    in ``points``' dtype and device.
    """
    m = points.shape[0]
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, {m}], got {k}")
    x = points.detach().to(torch.float64)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    centroids = _kmeans_pp_seeds(x.cpu(), k, generator).to(x.device)
    assignment = torch.full((m,), -1, dtype=torch.int64, device=x.device)
    for _ in range(max_iter):
        dist = _squared_distances(x, centroids)
        new_assignment = dist.argmin(dim=1)
        _fill_empty_clusters(new_assignment, dist, k)
        if torch.equal(new_assignment, assignment):
            break
        assignment = new_assignment
        sums = torch.zeros_like(centroids).index_add_(0, assignment, x)
        centroids = sums / torch.bincount(assignment, minlength=k)[:, None].to(x.dtype)
    return KMeansResult(centroids.to(points.dtype), assignment)
