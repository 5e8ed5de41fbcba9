"""Instance-level retrieval metrics (numpy only): mAP and CMC for re-ID, accuracy@K for fashion.

Every query is compared by cosine similarity with every gallery image (embeddings are
L2-normalised here with :func:`index.centroid_math.l2_normalize`, so callers may pass raw BN-neck
outputs). Gallery images are ranked by descending similarity; **ties keep gallery order**
(a stable sort, so among equal scores the smaller gallery index ranks first). This is the same
rule as a stable ``argsort`` of the distance matrix in the usual Market-1501 evaluation code.

Re-ID protocol (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015, as
used by the CTL paper): with ``cross_camera=True`` the gallery images showing the query's item
*from the query's own camera* are junk and are removed from that query's ranking; distractor
images carry their own item labels and are therefore ordinary negatives. A query with no
positive left after junk removal is skipped (it has no defined AP).

Average precision is the interpolation-free form: the mean, over the positives of a query, of
the precision at each positive's rank (rank counted after junk removal).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from index.centroid_math import l2_normalize

# Queries are ranked in blocks so the (block, G) similarity/argsort work arrays stay around
# 100 MB for a Market-size gallery (G ≈ 20k) instead of materialising the whole (Q, G) matrix.
QUERY_BLOCK = 256

DEFAULT_RANKS: tuple[int, ...] = (1, 5, 10)
# The K values reported for DeepFashion In-shop retrieval (Liu et al., CVPR 2016) and in the CTL
# paper's fashion table.
DEFAULT_ACCURACY_KS: tuple[int, ...] = (1, 10, 20, 50)

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RankingResult:
    """``map`` and ``cmc[k]`` are fractions in [0, 1] averaged over the ``num_valid_queries``
    queries that had at least one positive (0.0 everywhere when there were none)."""

    map: float
    cmc: dict[int, float]
    num_valid_queries: int


def encode_item_labels(
    query_items: npt.ArrayLike, gallery_items: npt.ArrayLike
) -> tuple[IntArray, IntArray]:
    """Map query ``(Q,)`` and gallery ``(G,)`` item labels (any comparable dtype) to shared
    int64 codes ``(Q,)``, ``(G,)``; equal labels get equal codes, codes follow label order."""
    q = np.asarray(query_items)
    g = np.asarray(gallery_items)
    if q.ndim != 1 or g.ndim != 1:
        raise ValueError(f"item labels must be 1-D, got {q.shape} and {g.shape}")
    _, inverse = np.unique(np.concatenate([q, g]), return_inverse=True)
    codes = inverse.reshape(-1).astype(np.int64)
    return codes[: q.shape[0]], codes[q.shape[0] :]


def _check_embeddings(
    query_emb: npt.ArrayLike, gallery_emb: npt.ArrayLike
) -> tuple[Float32Array, Float32Array]:
    q = np.asarray(query_emb)
    g = np.asarray(gallery_emb)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"expected (Q, D) and (G, D) embeddings, got {q.shape} and {g.shape}")
    return l2_normalize(q), l2_normalize(g)


def _check_labels(name: str, values: npt.ArrayLike, n: int) -> npt.NDArray[np.generic]:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr


def _check_ks(name: str, ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(k) for k in ks)
    if not out or min(out) < 1:
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {ks!r}")
    return out


def ranked_gallery_blocks(
    query_unit: Float32Array, gallery_unit: Float32Array
) -> Iterator[tuple[slice, IntArray]]:
    """Yield ``(query_rows, order)`` per block of queries: ``order`` int64 ``(B, G)`` holds
    gallery indices sorted by descending cosine, ties by ascending gallery index.

    Inputs are unit rows, float32 ``(Q, D)`` and ``(G, D)``.
    """
    for start in range(0, query_unit.shape[0], QUERY_BLOCK):
        rows = slice(start, min(start + QUERY_BLOCK, query_unit.shape[0]))
        sims = query_unit[rows] @ gallery_unit.T
        # Negation is exact in floating point, so a stable ascending sort of -sims is a
        # descending sort of sims that keeps gallery order among equal scores.
        yield rows, np.argsort(-sims, axis=1, kind="stable").astype(np.int64)


def instance_metrics(
    query_emb: npt.ArrayLike,
    query_items: npt.ArrayLike,
    query_cams: npt.ArrayLike,
    gallery_emb: npt.ArrayLike,
    gallery_items: npt.ArrayLike,
    gallery_cams: npt.ArrayLike,
    *,
    cross_camera: bool,
    ranks: Sequence[int] = DEFAULT_RANKS,
) -> RankingResult:
    """mAP and CMC of image-to-image retrieval.

    ``query_emb`` ``(Q, D)``, ``gallery_emb`` ``(G, D)`` any float dtype (normalised here);
    ``*_items`` ``(Q,)``/``(G,)`` item labels of one comparable dtype; ``*_cams`` ``(Q,)``/``(G,)``
    integer camera ids (ignored unless ``cross_camera``). ``cmc[k]`` is the fraction of valid
    queries whose first positive is at rank ≤ k.
    """
    ks = _check_ks("ranks", ranks)
    q_unit, g_unit = _check_embeddings(query_emb, gallery_emb)
    n_q, n_g = q_unit.shape[0], g_unit.shape[0]
    q_codes, g_codes = encode_item_labels(
        _check_labels("query_items", query_items, n_q),
        _check_labels("gallery_items", gallery_items, n_g),
    )
    q_cams = _check_labels("query_cams", query_cams, n_q)
    g_cams = _check_labels("gallery_cams", gallery_cams, n_g)

    ap_sum = 0.0
    hits = dict.fromkeys(ks, 0)
    num_valid = 0
    for rows, order in ranked_gallery_blocks(q_unit, g_unit):
        matches: BoolArray = g_codes[order] == q_codes[rows, None]
        if cross_camera:
            keep: BoolArray = ~(matches & (g_cams[order] == q_cams[rows, None]))
        else:
            keep = np.ones_like(matches)
        positives = matches & keep
        n_pos = positives.sum(axis=1)
        valid = n_pos > 0
        if not valid.any():
            continue
        positives, keep, n_pos = positives[valid], keep[valid], n_pos[valid]
        # 1-based rank of each gallery position once junk is dropped, and the running count of
        # positives: precision at a positive = (#positives so far) / (its rank).
        kept_rank = np.cumsum(keep, axis=1)
        precision = np.where(
            positives, np.cumsum(positives, axis=1) / np.maximum(kept_rank, 1), 0.0
        )
        ap_sum += float((precision.sum(axis=1) / n_pos).sum())
        first = np.argmax(positives, axis=1)
        first_rank = kept_rank[np.arange(first.shape[0]), first]
        for k in ks:
            hits[k] += int((first_rank <= k).sum())
        num_valid += int(valid.sum())

    if num_valid == 0:
        return RankingResult(map=0.0, cmc=dict.fromkeys(ks, 0.0), num_valid_queries=0)
    return RankingResult(
        map=ap_sum / num_valid,
        cmc={k: hits[k] / num_valid for k in ks},
        num_valid_queries=num_valid,
    )


def accuracy_at_k(
    query_emb: npt.ArrayLike,
    query_items: npt.ArrayLike,
    gallery_emb: npt.ArrayLike,
    gallery_items: npt.ArrayLike,
    *,
    ks: Sequence[int] = DEFAULT_ACCURACY_KS,
) -> dict[int, float]:
    """Instance-level top-K accuracy of the fashion (In-shop) retrieval protocol.

    ``query_emb`` ``(Q, D)``, ``gallery_emb`` ``(G, D)`` (normalised here), item labels ``(Q,)``
    and ``(G,)``. Returns ``{K: fraction of queries with ≥ 1 gallery image of their item among
    the top K}``; no camera filtering. Queries whose item has no gallery image at all cannot be
    answered by any model and are left out of the denominator (In-shop has none); with no
    answerable query every value is 0.0. The centroid-level variant is
    ``CentroidResult.accuracy_at_k`` in :mod:`model.evaluation.centroid_evaluation`.
    """
    k_values = _check_ks("ks", ks)
    q_unit, g_unit = _check_embeddings(query_emb, gallery_emb)
    q_codes, g_codes = encode_item_labels(
        _check_labels("query_items", query_items, q_unit.shape[0]),
        _check_labels("gallery_items", gallery_items, g_unit.shape[0]),
    )
    hits = dict.fromkeys(k_values, 0)
    answerable = 0
    for rows, order in ranked_gallery_blocks(q_unit, g_unit):
        matches = g_codes[order] == q_codes[rows, None]
        has_any = matches.any(axis=1)
        first = np.argmax(matches, axis=1)[has_any]  # 0-based position of the first hit
        answerable += int(has_any.sum())
        for k in k_values:
            hits[k] += int((first < k).sum())
    if answerable == 0:
        return dict.fromkeys(k_values, 0.0)
    return {k: hits[k] / answerable for k in k_values}
