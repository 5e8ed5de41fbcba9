"""Centroid-level evaluation (CE) of the CTL paper (Wieczorek et al., ICONIP 2021), numpy only.

The gallery is reduced to one centroid per item (:func:`index.centroid_math.centroids_by_label`
on the embeddings as the model outputs them: mean of raw rows, then L2-normalised) and searched
with :class:`index.flat_centroid_index.FlatCentroidIndex`, i.e. with the same code the service
runs. Each query therefore has exactly one relevant "document" (its item's centroid), so AP is
``1 / rank`` and centroid mAP is the mean reciprocal rank; ``cmc[k]`` and ``accuracy_at_k[K]``
are both the fraction of valid queries whose item ranks within the top k (two names because the
re-ID and fashion literatures report different k).

Protocol, as stated in the paper and implemented here:

* Every distractor gallery image is an item of its own (a singleton centroid, a negative).
* Gallery items that no query asks for stay in the gallery as negatives.
* ``cross_camera=True`` (re-ID): the query's *own* item centroid is built only from that item's
  gallery images taken by other cameras; every other item keeps the centroid of all its images.
  A query whose item has no other-camera gallery image is skipped, as is, in both modes, a query
  whose item is absent from the gallery.
* Ranks: ``1 + #(other items scoring higher) + #(other items scoring equal with a smaller item
  order)``. Item order is the order of item labels (as ``np.unique`` sorts them), distractor
  singletons after all labelled items in gallery order; this is the index's "ties by item id
  ascending" rule applied to zero-padded ids that encode exactly that order.

Differences from the reference implementation (github.com/mikwieczorek/centroids-reid,
``validation_create_centroids``): it reads the gallery camera ids from rows of the concatenated
query+gallery camera array (``camids[inds]`` instead of ``camids[num_query:][inds]``, its
issues #21 and #41), so its other-camera centroids filter on the wrong cameras, and it only
builds centroids for items that appear among the queries, dropping the other gallery items
(and their distractor role). Both make its numbers optimistic; we implement the protocol as
stated above, so figures are not directly comparable with the paper's.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from index.centroid_math import centroid_from_sum, centroids_by_label, l2_normalize
from index.flat_centroid_index import FlatCentroidIndex
from model.evaluation.ranking_metrics import (
    DEFAULT_ACCURACY_KS,
    DEFAULT_RANKS,
    QUERY_BLOCK,
    encode_item_labels,
)

# First search depth: above the largest default accuracy K (50). A trained model puts almost
# every query's item this high, so one cheap pass ranks nearly all queries; the rest are
# searched again over all items, which keeps the exact rank (needed for MRR) without paying
# k = M for everyone.
FIRST_PASS_K = 64

IntArray = npt.NDArray[np.int64]
Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CentroidResult:
    """Fractions in [0, 1] averaged over ``num_valid_queries`` (all 0.0 when none).

    ``num_skipped_queries`` queries had no relevant centroid; ``num_items`` is the number of
    gallery centroids searched (labelled items plus one per distractor image).
    """

    map: float
    cmc: dict[int, float]
    accuracy_at_k: dict[int, float]
    num_valid_queries: int
    num_skipped_queries: int
    num_items: int


@dataclass(frozen=True)
class _Gallery:
    """Gallery reduced to items: ``keys`` int64 (M,) ascending, ``ids`` their zero-padded
    string ids (same order), ``centroids`` float32 (M, D) unit rows, ``image_keys`` int64 (G,)
    item key of every gallery image."""

    keys: IntArray
    ids: list[str]
    centroids: Float32Array
    image_keys: IntArray


def _gallery_items(
    gallery_emb: npt.NDArray[np.floating],
    gallery_codes: IntArray,
    is_distractor: npt.NDArray[np.bool_],
    num_codes: int,
) -> _Gallery:
    image_keys = gallery_codes.copy()
    # Keys past every label code keep distractors after labelled items, in gallery order.
    image_keys[is_distractor] = num_codes + np.arange(int(is_distractor.sum()), dtype=np.int64)
    labels, centroids = centroids_by_label(gallery_emb, image_keys)
    keys = labels.astype(np.int64)
    width = len(str(int(keys[-1])))
    return _Gallery(
        keys=keys,
        ids=[str(int(k)).zfill(width) for k in keys],
        centroids=centroids,
        image_keys=image_keys,
    )


def _found(sorted_keys: IntArray, wanted: IntArray) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Positions of ``wanted`` ``(N,)`` in ``sorted_keys`` ``(K,)`` (clipped to a valid index)
    and bool ``(N,)`` "present"."""
    if sorted_keys.shape[0] == 0:
        return np.zeros(wanted.shape[0], dtype=np.int64), np.zeros(wanted.shape[0], dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, wanted), sorted_keys.shape[0] - 1)
    return pos.astype(np.int64), sorted_keys[pos] == wanted


def _own_other_camera_centroids(
    gallery_emb: npt.NDArray[np.floating],
    gallery_keys: IntArray,
    gallery_cams: IntArray,
    query_keys: IntArray,
    query_cams: IntArray,
) -> tuple[Float32Array, npt.NDArray[np.bool_]]:
    """For each query, the centroid of its item's gallery images from *other* cameras.

    ``gallery_emb`` ``(G, D)`` raw rows; ``*_cams`` shared non-negative int64 camera codes.
    Returns float32 ``(Q, D)`` unit rows (all-zero where undefined) and bool ``(Q,)`` "item has
    ≥ 1 other-camera gallery image". Sums are float64, one per (item, camera) pair; a query
    group's centroid is ``centroid_from_sum(item sum - same-camera sum)``, once per group.
    """
    dim = gallery_emb.shape[1]
    num_cams = int(max(gallery_cams.max(initial=0), query_cams.max(initial=0))) + 1
    g_pairs = gallery_keys * num_cams + gallery_cams
    order = np.argsort(g_pairs, kind="stable")
    pair_keys, starts, counts = np.unique(g_pairs[order], return_index=True, return_counts=True)
    # A Python loop over (item, camera) pairs (a few thousand for Market-1501) gathers only each
    # pair's rows; np.add.at over all rows was several times slower at D = 2048.
    pair_sums = np.zeros((pair_keys.shape[0], dim), dtype=np.float64)
    for p, (start, count) in enumerate(zip(starts.tolist(), counts.tolist(), strict=True)):
        pair_sums[p] = gallery_emb[order[start : start + count]].sum(axis=0, dtype=np.float64)
    if pair_keys.shape[0]:
        # Pairs sort by item first, so each item's pairs are contiguous.
        item_keys, item_starts = np.unique(pair_keys // num_cams, return_index=True)
        item_sums = np.add.reduceat(pair_sums, item_starts, axis=0)
        item_counts = np.add.reduceat(counts, item_starts)
    else:
        item_keys = np.zeros(0, dtype=np.int64)
        item_sums, item_counts = pair_sums, counts

    groups, query_group = np.unique(query_keys * num_cams + query_cams, return_inverse=True)
    item_pos, item_known = _found(item_keys.astype(np.int64), groups // num_cams)
    pair_pos, pair_known = _found(pair_keys.astype(np.int64), groups)
    own_sums = np.where(item_known[:, None], item_sums[item_pos], 0.0) - np.where(
        pair_known[:, None], pair_sums[pair_pos], 0.0
    )
    own_counts = np.where(item_known, item_counts[item_pos], 0) - np.where(
        pair_known, counts[pair_pos], 0
    )
    query_group = query_group.reshape(-1)
    return centroid_from_sum(own_sums)[query_group], (own_counts > 0)[query_group]


def _ranks_in_results(
    results: list[list[tuple[str, float]]],
    own_ids: list[str],
    own_scores: Float64Array | None,
    complete: bool,
) -> list[int | None]:
    """1-based rank of each query's own item given its best-first ``results``.

    With ``own_scores`` (cross-camera) the own item is scored separately and its full centroid
    in ``results`` is ignored; otherwise the own id's position in ``results`` is its rank. None
    means "not decided within these results" (only possible when ``complete`` is False).
    """
    ranks: list[int | None] = []
    for row, hits in enumerate(results):
        own = own_ids[row]
        if own_scores is None:
            found = next((pos + 1 for pos, (item, _) in enumerate(hits) if item == own), None)
            ranks.append(found)
            continue
        score = float(own_scores[row])
        # Entries sort by (-score, id); bisecting for (-own score, own id) counts exactly the
        # items that beat the own item (higher score, or equal score and smaller id).
        before = bisect.bisect_left(hits, (-score, own), key=lambda hit: (-hit[1], hit[0]))
        if before == len(hits) and not complete:
            ranks.append(None)
            continue
        own_full_counted = any(item == own for item, _ in hits[:before])
        ranks.append(1 + before - int(own_full_counted))
    return ranks


def centroid_metrics(
    query_emb: npt.ArrayLike,
    query_items: npt.ArrayLike,
    query_cams: npt.ArrayLike,
    gallery_emb: npt.ArrayLike,
    gallery_items: npt.ArrayLike,
    gallery_cams: npt.ArrayLike,
    gallery_is_distractor: npt.ArrayLike,
    *,
    cross_camera: bool,
    ranks: Sequence[int] = DEFAULT_RANKS,
    accuracy_ks: Sequence[int] = DEFAULT_ACCURACY_KS,
) -> CentroidResult:
    """Centroid mAP (= MRR), CMC and accuracy@K of queries against gallery item centroids.

    ``query_emb`` ``(Q, D)`` and ``gallery_emb`` ``(G, D)`` are raw model outputs (any float
    dtype; queries are normalised here, centroids are normalised means). ``*_items``
    ``(Q,)``/``(G,)`` item labels of one comparable dtype, ``*_cams`` ``(Q,)``/``(G,)`` integer
    camera ids (used only when ``cross_camera``), ``gallery_is_distractor`` bool ``(G,)``
    (the item label of a distractor row is ignored). See the module docstring for the protocol.
    """
    cmc_ks = tuple(int(k) for k in ranks)
    acc_ks = tuple(int(k) for k in accuracy_ks)
    if not cmc_ks or not acc_ks or min(cmc_ks + acc_ks) < 1:
        raise ValueError(f"ranks and accuracy_ks must be positive, got {ranks!r}, {accuracy_ks!r}")
    q_raw = np.asarray(query_emb)
    g_raw = np.asarray(gallery_emb)
    if q_raw.ndim != 2 or g_raw.ndim != 2 or q_raw.shape[1] != g_raw.shape[1]:
        raise ValueError(f"expected (Q, D) and (G, D) embeddings, got {q_raw.shape}, {g_raw.shape}")
    n_q, n_g = q_raw.shape[0], g_raw.shape[0]
    if n_g == 0:
        raise ValueError("the gallery is empty")
    shapes = {
        "query_items": (query_items, n_q),
        "query_cams": (query_cams, n_q),
        "gallery_items": (gallery_items, n_g),
        "gallery_cams": (gallery_cams, n_g),
        "gallery_is_distractor": (gallery_is_distractor, n_g),
    }
    for name, (values, n) in shapes.items():
        if np.shape(values) != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {np.shape(values)}")
    is_distractor = np.asarray(gallery_is_distractor, dtype=bool)
    q_items_arr = np.asarray(query_items)
    g_items_arr = np.asarray(gallery_items)
    q_codes, real_codes = encode_item_labels(q_items_arr, g_items_arr[~is_distractor])
    g_codes = np.zeros(n_g, dtype=np.int64)
    g_codes[~is_distractor] = real_codes
    num_codes = int(max(q_codes.max(initial=-1), real_codes.max(initial=-1))) + 1
    gallery = _gallery_items(g_raw, g_codes, is_distractor, num_codes)

    q_unit = l2_normalize(q_raw)
    key_pos = np.searchsorted(gallery.keys, q_codes)
    clipped = np.minimum(key_pos, gallery.keys.shape[0] - 1)
    valid = gallery.keys[clipped] == q_codes
    own_scores: Float64Array | None = None
    if cross_camera:
        q_cam_codes, g_cam_codes = encode_item_labels(
            np.asarray(query_cams), np.asarray(gallery_cams)
        )
        own_centroids, has_other = _own_other_camera_centroids(
            g_raw, gallery.image_keys, g_cam_codes, q_codes, q_cam_codes
        )
        valid &= has_other
        # Scored exactly as FlatCentroidIndex.search scores its rows (a stored row is
        # l2_normalize(centroid); float64 products of the float32 values summed along the row),
        # so an own centroid equal to another item's centroid gets the very same score.
        stored_like = l2_normalize(own_centroids).astype(np.float64)
        own_scores = (stored_like * q_unit.astype(np.float64)).sum(axis=1)

    index = FlatCentroidIndex(g_raw.shape[1])
    index.rebuild(zip(gallery.ids, gallery.centroids, strict=True))
    num_items = len(gallery.ids)
    query_rows = np.flatnonzero(valid)
    own_ids = [gallery.ids[int(p)] for p in clipped]
    rank_of: dict[int, int] = {}
    pending = query_rows
    for k in (min(FIRST_PASS_K, num_items), num_items):
        still: list[int] = []
        for start in range(0, pending.shape[0], QUERY_BLOCK):
            rows = pending[start : start + QUERY_BLOCK]
            found = _ranks_in_results(
                index.search(q_unit[rows], k),
                [own_ids[int(r)] for r in rows],
                None if own_scores is None else own_scores[rows],
                complete=k >= num_items,
            )
            for row, rank in zip(rows, found, strict=True):
                if rank is None:
                    still.append(int(row))
                else:
                    rank_of[int(row)] = rank
        pending = np.asarray(still, dtype=np.int64)
        if pending.shape[0] == 0:
            break

    num_valid = int(query_rows.shape[0])
    skipped = n_q - num_valid
    if num_valid == 0:
        zero_cmc, zero_acc = dict.fromkeys(cmc_ks, 0.0), dict.fromkeys(acc_ks, 0.0)
        return CentroidResult(0.0, zero_cmc, zero_acc, 0, skipped, num_items)
    rank_arr = np.array([rank_of[int(r)] for r in query_rows], dtype=np.float64)
    return CentroidResult(
        map=float(np.mean(1.0 / rank_arr)),
        cmc={k: float(np.mean(rank_arr <= k)) for k in cmc_ks},
        accuracy_at_k={k: float(np.mean(rank_arr <= k)) for k in acc_ks},
        num_valid_queries=num_valid,
        num_skipped_queries=skipped,
        num_items=num_items,
    )
