"""Exact t-SNE (van der Maaten and Hinton, 2008) in numpy, for plotting a few thousand
held-out embeddings in 2-D (the HPL paper's figure).

Not sklearn's ``TSNE``: the training kit does not install sklearn. Exact means O(N^2) memory
and time per iteration (no Barnes-Hut), fine up to :data:`MAX_POINTS`. The optimisation is
sklearn's exact method: PCA to 50 dimensions first, Gaussian affinities at a perplexity found
by bisection per point, symmetrised; early exaggeration 12 for 250 iterations at momentum
0.5, then momentum 0.8; per-parameter gains; learning rate ``max(N / 12 / 4, 50)``
("auto"); a fixed seed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

MAX_POINTS = 2000
PCA_DIM = 50
DEFAULT_PERPLEXITY = 30.0
EXAGGERATION = 12.0
EXAGGERATION_ITERS = 250
DEFAULT_ITERS = 1000
MIN_GAIN = 0.01
# Bisection on each point's Gaussian precision: steps and tolerance on the entropy (nats).
BISECTION_STEPS = 100
ENTROPY_TOL = 1e-5

Float64Array = npt.NDArray[np.float64]


def _pca(x: Float64Array, dim: int) -> Float64Array:
    centred: Float64Array = x - x.mean(axis=0)
    if x.shape[1] <= dim:
        return centred
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    out: Float64Array = u[:, :dim] * s[:dim]
    return out


def _affinities(x: Float64Array, perplexity: float) -> Float64Array:
    """Symmetric joint probabilities ``P`` ``(N, N)`` (zero diagonal, sum 1)."""
    n = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x)
    dist = np.maximum(sq[:, None] - 2.0 * (x @ x.T) + sq[None, :], 0.0)
    target = np.log(perplexity)
    cond = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        d = np.delete(dist[i], i)
        d = d - d.min()  # shift for stability; the row is renormalised anyway
        beta, lo, hi = 1.0, 0.0, np.inf
        for _ in range(BISECTION_STEPS):
            w = np.exp(-d * beta)
            total = w.sum()
            p = w / total
            entropy = float(np.log(total) + beta * (d * p).sum())
            if abs(entropy - target) < ENTROPY_TOL:
                break
            if entropy > target:  # too flat: sharpen
                lo = beta
                beta = beta * 2.0 if hi == np.inf else (beta + hi) / 2.0
            else:
                hi = beta
                beta = (beta + lo) / 2.0
        cond[i, np.arange(n) != i] = p
    joint = (cond + cond.T) / (2.0 * n)
    out: Float64Array = np.maximum(joint, 1e-12)
    np.fill_diagonal(out, 0.0)
    return out


def tsne(
    x: npt.ArrayLike,
    *,
    perplexity: float = DEFAULT_PERPLEXITY,
    iterations: int = DEFAULT_ITERS,
    seed: int = 0,
) -> Float64Array:
    """2-D embedding ``(N, 2)`` float64 of the rows of ``x`` ``(N, D)``; ``N`` in
    ``[2, MAX_POINTS]``. The perplexity is capped at ``(N - 1) / 3`` for small sets."""
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"expected (N, D) rows, got shape {data.shape}")
    n = data.shape[0]
    if not 2 <= n <= MAX_POINTS:
        raise ValueError(f"exact t-SNE takes 2 to {MAX_POINTS} points, got {n}")
    perplexity = min(perplexity, max((n - 1) / 3.0, 1.0))
    p = _affinities(_pca(data, PCA_DIM), perplexity)
    rng = np.random.default_rng(seed)
    y = 1e-4 * rng.standard_normal((n, 2))
    update = np.zeros_like(y)
    gains = np.ones_like(y)
    lr = max(n / EXAGGERATION / 4.0, 50.0)
    for it in range(iterations):
        early = it < EXAGGERATION_ITERS
        pe = p * EXAGGERATION if early else p
        sq = np.einsum("ij,ij->i", y, y)
        num = 1.0 / (1.0 + np.maximum(sq[:, None] - 2.0 * (y @ y.T) + sq[None, :], 0.0))
        np.fill_diagonal(num, 0.0)
        q = np.maximum(num / num.sum(), 1e-12)
        # dC/dy_i = 4 sum_j (p_ij - q_ij) (y_i - y_j) / (1 + |y_i - y_j|^2)
        w = (pe - q) * num
        grad = 4.0 * (w.sum(axis=1)[:, None] * y - w @ y)
        momentum = 0.5 if early else 0.8
        same_sign = np.sign(grad) == np.sign(update)
        gains = np.maximum(np.where(same_sign, gains * 0.8, gains + 0.2), MIN_GAIN)
        update = momentum * update - lr * gains * grad
        y = y + update
    out: Float64Array = y - y.mean(axis=0)
    return out
