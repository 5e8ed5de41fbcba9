"""Leave-one-image-out retrieval over a gallery's own embeddings (torch-free).

Each queried image ``e_i`` of item ``a`` is searched as a one-photo query would be,
``q = normalize(e_i)``, against every item's centroid, its own item's replaced by the centroid
of the item's other images, ``normalize(sum_a - e_i)``: exact, and O(D) per image from the
item's running ``float64`` sum (``index/centroid_math.py``) instead of a rebuild. Its *rank* is
1 + the number of other items scoring at least as high as the own item's left-out centroid;
R@1 is the share of rank 1, MRR the mean of ``1 / rank``.

**Ties count against the query.** The service orders equal scores by item id
(``index/tie_aware_top_k.py``), so whether a query would win a tie depends on how its items
happen to be named; here another item scoring the same as the own item ranks before it, so a
figure never improves by renaming items. "The same" is within float64 rounding of the scores
(``TIE_SLACK_64``): the same photo enrolled under two items gives two bit-identical centroids,
whose scores may still differ in the last bits after different summation orders.

Scores follow the service's arithmetic: centroids and queries are ``float32`` unit vectors
(what the index stores and what a search sends), their inner products taken in ``float64``. The
``(n, m)`` products are screened in ``float32`` (BLAS) and only pairs within the float32
rounding bound of the own score (``float32_dot_slack``) are recomputed in ``float64``; so the
ranks are those of the float64 products at the cost of a float32 scan.

Items with a single image have no centroid left without it: they are not queried (callers
count them, ``LeaveOneOutResult.single_image_items``) but stay in the gallery as competitors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from index.centroid_math import l2_normalize
from index.tie_aware_top_k import float32_dot_slack

# Competitor rows scored per block: an (n, BLOCK_ROWS) float32 product at a time (2000 queries:
# 32 MiB).
BLOCK_ROWS = 4096


def tie_slack_64(dim: int) -> float:
    """Scores this close (float64 products of ``dim``-long unit vectors) are equal: twice the
    float64 dot-product rounding bound ``dim * 2**-53``."""
    return 2.0 * dim * 2.0**-53


# A block of competitors: ``(item ids (m,), centroids (m, D) float32 unit-norm)``.
CentroidChunk = tuple[Sequence[str], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class ItemQuality:
    """One queried item's figures over its queried images."""

    item_id: str
    images: int  # its images that were queried
    r_at_1: float
    mrr: float


@dataclass(frozen=True)
class LeaveOneOutResult:
    """``r_at_1`` and ``mrr`` are NaN when no image was queried."""

    r_at_1: float
    mrr: float
    queried_images: int
    single_image_items: int  # left out: no centroid without their one image
    items: tuple[ItemQuality, ...]  # every queried item, by item id
    ranks: npt.NDArray[np.int64]  # (n,) each query's own-item rank, 1 = first, query order

    def worst_items(self, limit: int) -> list[ItemQuality]:
        """The ``limit`` items with the lowest MRR (then R@1, then id)."""
        return sorted(self.items, key=lambda q: (q.mrr, q.r_at_1, q.item_id))[:limit]


def leave_one_out_ranks(
    queries: npt.NDArray[np.float32],
    owners: npt.NDArray[np.int64],
    item_ids: Sequence[str],
    sums: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    centroids: Iterable[CentroidChunk],
) -> npt.NDArray[np.int64]:
    """Each query's rank of its own item with the query left out of it.

    ``queries`` ``(n, D)`` float32 raw embeddings (as the model output them); ``owners``
    ``(n,)`` int64, each query's item as an index into ``item_ids`` ``(k,)``, whose running
    sums ``sums`` ``(k, D)`` float64 and image counts ``counts`` ``(k,)`` include the query
    (every count >= 2: ``ValueError`` otherwise). ``centroids``: the gallery's centroids, every
    item's once (a row of an id seen before is skipped; the queried items' own rows are
    ignored, replaced by their left-out centroids). Returns ``(n,)`` int64 ranks >= 1.
    """
    q32, owners, sums, counts = _checked(queries, owners, item_ids, sums, counts)
    n, dim = q32.shape
    unit_queries = l2_normalize(q32)  # (n, D) float32, as a search sends them
    left_out = l2_normalize(sums[owners] - q32.astype(np.float64))  # (n, D) float32
    q64 = unit_queries.astype(np.float64)
    own = np.einsum("ij,ij->i", q64, left_out.astype(np.float64))  # (n,) float64
    slack32 = float32_dot_slack(dim)
    slack64 = tie_slack_64(dim)
    code_of = {item_id: code for code, item_id in enumerate(item_ids)}
    better = np.zeros(n, dtype=np.int64)
    seen: set[str] = set()
    for ids, rows in centroids:
        rows = np.asarray(rows, dtype=np.float32)
        if rows.shape != (len(ids), dim):
            raise ValueError(f"a chunk of {len(ids)} ids has rows {rows.shape}, not (m, {dim})")
        fresh = [j for j, item_id in enumerate(ids) if item_id not in seen]
        seen.update(ids)
        if len(fresh) < len(ids):
            ids, rows = [ids[j] for j in fresh], rows[fresh]
        for start in range(0, len(ids), BLOCK_ROWS):
            block_ids = ids[start : start + BLOCK_ROWS]
            block = rows[start : start + BLOCK_ROWS]
            codes = np.array([code_of.get(i, -1) for i in block_ids], dtype=np.int64)
            better += _count_at_least(
                unit_queries, q64, owners, own, block, codes, slack32, slack64
            )
    out: npt.NDArray[np.int64] = 1 + better
    return out


def _count_at_least(
    unit_queries: npt.NDArray[np.float32],
    q64: npt.NDArray[np.float64],
    owners: npt.NDArray[np.int64],
    own: npt.NDArray[np.float64],
    block: npt.NDArray[np.float32],
    codes: npt.NDArray[np.int64],
    slack32: float,
    slack64: float,
) -> npt.NDArray[np.int64]:
    """Per query ``(n,)``: rows of ``block`` ``(m, D)`` (not the query's own item: ``codes``
    ``(m,)`` are the rows' item codes, -1 for an item not queried) scoring ``>= own - slack64``
    in float64."""
    s32 = unit_queries @ block.T  # (n, m) float32
    # The own item's row, where this block holds it, never counts: -inf.
    column_of = np.full(int(owners.max()) + 1 if owners.size else 0, -1, dtype=np.int64)
    held = np.nonzero((codes >= 0) & (codes < column_of.shape[0]))[0]
    column_of[codes[held]] = held
    own_column = column_of[owners]  # (n,) the own item's column here, or -1
    here = np.nonzero(own_column >= 0)[0]
    s32[here, own_column[here]] = -np.inf
    # The band's ends rounded outwards to float32, so comparing in float32 loses no pair.
    lo = np.nextafter((own - slack32).astype(np.float32), np.float32(-np.inf))[:, np.newaxis]
    hi = np.nextafter((own + slack32).astype(np.float32), np.float32(np.inf))[:, np.newaxis]
    sure = s32 > hi
    band = (s32 >= lo) & ~sure
    count: npt.NDArray[np.int64] = sure.sum(axis=1).astype(np.int64)
    qi, rj = np.nonzero(band)
    if qi.size:
        exact = np.einsum("ij,ij->i", q64[qi], block[rj].astype(np.float64))
        tied_or_better = exact >= own[qi] - slack64
        np.add.at(count, qi[tied_or_better], 1)
    return count


def summarize(
    ranks: npt.NDArray[np.int64],
    owners: npt.NDArray[np.int64],
    item_ids: Sequence[str],
    single_image_items: int,
) -> LeaveOneOutResult:
    """R@1, MRR and the per-item figures of ``ranks`` ``(n,)`` whose queries belong to
    ``owners`` ``(n,)`` (indexes into ``item_ids``)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    owners = np.asarray(owners, dtype=np.int64)
    hits = (ranks == 1).astype(np.float64)
    reciprocal = 1.0 / ranks.astype(np.float64)
    items = []
    for code in np.unique(owners).tolist():
        mine = owners == code
        items.append(
            ItemQuality(
                item_id=item_ids[code],
                images=int(mine.sum()),
                # fsum: exact before the one rounding, so equal figures compare equal
                # whatever the order of their images (the worst-items order depends on it).
                r_at_1=math.fsum(hits[mine]) / int(mine.sum()),
                mrr=math.fsum(reciprocal[mine]) / int(mine.sum()),
            )
        )
    items.sort(key=lambda q: q.item_id)
    n = ranks.shape[0]
    return LeaveOneOutResult(
        r_at_1=math.fsum(hits) / n if n else float("nan"),
        mrr=math.fsum(reciprocal) / n if n else float("nan"),
        queried_images=n,
        single_image_items=single_image_items,
        items=tuple(items),
        ranks=ranks,
    )


def leave_one_out(
    queries: npt.NDArray[np.float32],
    owners: npt.NDArray[np.int64],
    item_ids: Sequence[str],
    sums: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    centroids: Iterable[CentroidChunk],
    single_image_items: int = 0,
) -> LeaveOneOutResult:
    """``leave_one_out_ranks`` and their ``summarize``: see both for the shapes."""
    ranks = leave_one_out_ranks(queries, owners, item_ids, sums, counts, centroids)
    return summarize(ranks, owners, item_ids, single_image_items)


def centroid_chunks_from_sums(
    item_ids: Sequence[str], sums: npt.NDArray[np.floating], rows_per_chunk: int = BLOCK_ROWS
) -> Iterable[CentroidChunk]:
    """``(k, D)`` running sums → the centroids as the index holds them, ``normalize(sum)``
    float32, in chunks."""
    for start in range(0, len(item_ids), rows_per_chunk):
        chunk = sums[start : start + rows_per_chunk]
        yield item_ids[start : start + rows_per_chunk], l2_normalize(chunk)


def _checked(
    queries: npt.NDArray[np.float32],
    owners: npt.NDArray[np.int64],
    item_ids: Sequence[str],
    sums: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
) -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64]
]:
    q = np.asarray(queries, dtype=np.float32)
    o = np.asarray(owners, dtype=np.int64)
    s = np.asarray(sums, dtype=np.float64)
    c = np.asarray(counts, dtype=np.int64)
    k = len(item_ids)
    if q.ndim != 2 or o.shape != (q.shape[0],):
        raise ValueError(f"expected (n, D) queries and (n,) owners, got {q.shape}, {o.shape}")
    if s.shape != (k, q.shape[1]) or c.shape != (k,):
        raise ValueError(f"expected ({k}, {q.shape[1]}) sums and ({k},) counts")
    if o.size and (o.min() < 0 or o.max() >= k):
        raise ValueError("an owner is not an index into item_ids")
    if np.any(c[o] < 2):
        raise ValueError("a queried item has fewer than 2 images: nothing is left without it")
    return q, o, s, c
