"""k-means (k-means++ seeding, then Lloyd's iterations) in numpy, for the NMI of an embedding.

Not sklearn: the training kit does not install it (only the dev extra does, and the tests check
this against ``sklearn.cluster.KMeans``). One seeding with a fixed seed, as sklearn's
``n_init=1`` with ``init="k-means++"``: the NMI figure must be reproducible run to run.

Distances are squared Euclidean, computed as ``|x|^2 - 2 x.c + |c|^2`` in float64 blocks so a
Market-size set (N ~ 2 * 10^4, D = 2048, k ~ 750) never materialises more than a
``(BLOCK, k)`` matrix at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Rows per distance block: (BLOCK, k) float64 stays ~ 25 MB at k = 750.
BLOCK = 4096
# Lloyd stops when no point changes cluster or after this many iterations (sklearn: 300).
MAX_ITER = 300
DEFAULT_SEED = 0

Float64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class KMeansResult:
    """``labels`` int64 ``(N,)`` in ``[0, k)``; ``centers`` float64 ``(k, D)``; ``inertia`` the
    sum of squared distances to the assigned centre; ``iterations`` Lloyd steps run."""

    labels: IntArray
    centers: Float64Array
    inertia: float
    iterations: int


def _nearest(
    x: Float64Array, x_sq: Float64Array, centers: Float64Array
) -> tuple[IntArray, Float64Array]:
    """Nearest centre of every row of ``x`` ``(N, D)`` (ties: the smaller centre index) and the
    squared distance to it, ``(N,)`` each."""
    c_sq = np.einsum("ij,ij->i", centers, centers)
    labels = np.empty(x.shape[0], dtype=np.int64)
    dist = np.empty(x.shape[0], dtype=np.float64)
    for start in range(0, x.shape[0], BLOCK):
        rows = slice(start, min(start + BLOCK, x.shape[0]))
        d = x_sq[rows, None] - 2.0 * (x[rows] @ centers.T) + c_sq[None, :]
        labels[rows] = np.argmin(d, axis=1)
        dist[rows] = np.maximum(d[np.arange(d.shape[0]), labels[rows]], 0.0)
    return labels, dist


def _kmeans_plus_plus(
    x: Float64Array, x_sq: Float64Array, k: int, rng: np.random.Generator
) -> Float64Array:
    """Greedy k-means++ (Arthur and Vassilvitskii, 2007; sklearn's variant): each new centre is
    the best of ``2 + ln k`` candidates drawn with probability proportional to D(x)^2."""
    n = x.shape[0]
    trials = 2 + int(np.log(k))
    centers = np.empty((k, x.shape[1]), dtype=np.float64)
    centers[0] = x[rng.integers(n)]
    closest = np.maximum(x_sq - 2.0 * (x @ centers[0]) + centers[0] @ centers[0], 0.0)
    for c in range(1, k):
        total = closest.sum()
        if total <= 0.0:
            # Fewer distinct points than k: any remaining point is at distance 0.
            candidates = rng.integers(n, size=trials)
        else:
            candidates = np.searchsorted(np.cumsum(closest), rng.random(trials) * total)
            candidates = np.minimum(candidates, n - 1)
        cand = x[candidates]
        d = x_sq[None, :] - 2.0 * (cand @ x.T) + np.einsum("ij,ij->i", cand, cand)[:, None]
        new_closest = np.minimum(closest[None, :], np.maximum(d, 0.0))
        best = int(np.argmin(new_closest.sum(axis=1)))
        centers[c] = cand[best]
        closest = new_closest[best]
    return centers


def kmeans(
    x: npt.ArrayLike, k: int, *, seed: int = DEFAULT_SEED, max_iter: int = MAX_ITER
) -> KMeansResult:
    """Cluster the rows of ``x`` ``(N, D)`` (any float dtype; float64 inside) into ``k``.

    A cluster left empty by a Lloyd step keeps its previous centre (it can win points back);
    Lloyd stops at a fixed point of the assignment.
    """
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"expected (N, D) rows, got shape {data.shape}")
    n = data.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, N = {n}], got {k}")
    rng = np.random.default_rng(seed)
    x_sq = np.einsum("ij,ij->i", data, data)
    centers = _kmeans_plus_plus(data, x_sq, k, rng)
    labels, dist = _nearest(data, x_sq, centers)
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        # Cluster sums by one sort and a segmented sum (np.add.at over (N, D) rows is slow).
        order = np.argsort(labels, kind="stable")
        present, starts = np.unique(labels[order], return_index=True)
        sums = np.add.reduceat(data[order], starts, axis=0)
        counts = np.diff(np.append(starts, n))
        centers[present] = sums / counts[:, None]
        new_labels, dist = _nearest(data, x_sq, centers)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return KMeansResult(labels, centers, float(dist.sum()), iterations)
