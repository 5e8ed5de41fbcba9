"""NMI of an embedding: k-means over its L2-normalised rows with k = the number of items,
scored against the items (the clustering metric of the ranking-regularizer paper and of the
metric-learning literature it follows)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from index.centroid_math import l2_normalize
from model.evaluation.kmeans import DEFAULT_SEED, kmeans
from model.evaluation.nmi import normalized_mutual_information


def embedding_nmi(
    embeddings: npt.ArrayLike, items: npt.ArrayLike, *, seed: int = DEFAULT_SEED
) -> float:
    """``embeddings`` ``(N, D)`` raw model outputs (normalised here, as every metric ranks by
    cosine), ``items`` ``(N,)`` labels; ``k`` is the number of distinct items."""
    emb = np.asarray(embeddings)
    labels = np.asarray(items)
    if emb.ndim != 2 or labels.shape != (emb.shape[0],):
        raise ValueError(
            f"expected (N, D) embeddings and (N,) items, got {emb.shape}, {labels.shape}"
        )
    k = int(np.unique(labels).shape[0])
    found = kmeans(l2_normalize(emb), k, seed=seed).labels
    return normalized_mutual_information(labels, found)
