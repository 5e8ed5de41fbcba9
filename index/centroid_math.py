"""Centroid maths shared by the service, the store and the evaluation code (torch-free).

An item's centroid is the mean of its images' embeddings *as the model outputs them* (the CTL
reference averages un-normalised BN-neck outputs), L2-normalised afterwards so that inner product
is cosine similarity. Since normalisation removes scale, ``normalize(sum) == normalize(sum / n)``:
the store keeps a running ``float64`` sum and a count, and a centroid is ``normalize(sum)``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

EPS = 1e-12

FloatArray = npt.NDArray[np.floating]


def l2_normalize(x: FloatArray) -> npt.NDArray[np.float32]:
    """Rows of ``x`` ``(N, D)`` (or one vector ``(D,)``) scaled to unit L2 norm, as ``float32``.

    The division is done in ``float64``; an all-zero row stays all-zero (norm clamped to ``EPS``).
    """
    x64 = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x64, axis=-1, keepdims=True)
    out: npt.NDArray[np.float32] = (x64 / np.maximum(norms, EPS)).astype(np.float32)
    return out


def centroid_from_sum(embedding_sum: FloatArray) -> npt.NDArray[np.float32]:
    """``(D,)`` running sum of an item's embeddings → its unit-norm ``(D,)`` float32 centroid."""
    return l2_normalize(embedding_sum)


def centroids_by_label(
    embeddings: FloatArray, labels: npt.ArrayLike
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float32]]:
    """Group ``embeddings`` ``(N, D)`` by ``labels`` ``(N,)``.

    Returns ``(unique_labels (M,), centroids (M, D) float32)``, labels sorted ascending, each
    centroid the L2-normalised mean of its label's rows.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    lab = np.asarray(labels)
    if emb.ndim != 2 or lab.shape != (emb.shape[0],):
        raise ValueError(
            f"expected (N, D) embeddings and (N,) labels, got {emb.shape}, {lab.shape}"
        )
    unique, inverse = np.unique(lab, return_inverse=True)
    sums = np.zeros((unique.shape[0], emb.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse.reshape(-1), emb)
    return unique, l2_normalize(sums)
