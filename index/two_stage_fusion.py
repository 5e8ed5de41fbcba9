"""Two-stage ranking: the centroid index proposes the top M items, their images re-rank them.

A centroid averages an item's views, so a query that looks like *one* of them (one side of a
shoe, one close-up) scores lower on the centroid than on that image. The second stage scores
the query against every image of each of the M candidates and fuses, per item::

    image_score = max_j  q · e_j                     (best_image = argmax, first on ties)
    fused       = alpha * centroid_score + (1 - alpha) * image_score

``q`` is the unit query, ``e_j`` the item's unit image embeddings (kept as float16; the dot is
taken in float32). ``alpha = 1`` is the centroid score itself. In ``two_stage`` mode items are
ranked by ``fused`` descending, equal fused scores by item id ascending (the index's tie rule);
in ``centroid`` mode the candidates keep the centroid order (score descending, ties by id) and
still report their evidence, so every answer carries the same fields in both modes.

The default ``alpha`` and ``M`` are what ``python -m bench.answers`` measured best on the
shipped real photos (see ``DEFAULT_ALPHA``). Items outside the top M cannot enter the answer:
the re-ranked list is a permutation of the candidates, so ask for ``M >= k``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Measured by bench.answers (2026-12-03, default model) on the shipped photos, view seeds 0, 1
# and 2, R@1 gain over the centroid order at alpha 0.6: 2x2 quarters -0.009, +0.009, +0.013
# (320 queries each: -3 to +4 queries); quarters seen through small crops (views keeping
# 15-95 %) +0.025, +0.028, +0.028; whole photos 1.0 either way. No alpha gained on every
# seed of the 2x2 folder; 0.6 had the best mean over both quarter folders of those with a
# gain on every crop seed (0.25 and 0 gain more on crops, lose more on 2x2). M = 5, 10 and
# 20 gave the same R@1 (no item below the centroid's 5th place rose to first); 10 leaves room.
DEFAULT_ALPHA = 0.6
DEFAULT_CANDIDATES = 10


class RankMode(enum.Enum):
    """``centroid``: today's order; ``two_stage``: re-ranked by the fused score."""

    CENTROID = "centroid"
    TWO_STAGE = "two_stage"


@dataclass(frozen=True)
class FusedRanking:
    """The candidates re-ranked, every array ``(M,)`` in answer order.

    ``items``: candidate positions into the inputs (int64), so ``item_ids[items[0]]`` is the
    best; ``best_image``: index of the best image within that item's embeddings (int64);
    ``image_score``, ``centroid_score``, ``fused_score``: float32.
    """

    items: npt.NDArray[np.int64]
    best_image: npt.NDArray[np.int64]
    image_score: npt.NDArray[np.float32]
    centroid_score: npt.NDArray[np.float32]
    fused_score: npt.NDArray[np.float32]


def fused_score(
    centroid_score: npt.NDArray[np.float32], image_score: npt.NDArray[np.float32], alpha: float
) -> npt.NDArray[np.float32]:
    """``alpha * centroid + (1 - alpha) * image`` in float32, both ``(M,)``."""
    a = np.float32(alpha)
    out: npt.NDArray[np.float32] = (
        a * centroid_score.astype(np.float32) + (np.float32(1) - a) * image_score
    ).astype(np.float32)
    return out


def best_images(
    query: npt.NDArray[np.float32], images: Sequence[npt.NDArray[np.floating]]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Per item, ``(best_image (M,) int64, image_score (M,) float32)``.

    ``query``: ``(D,)`` unit float32; ``images[i]``: ``(n_i, D)`` unit rows, ``n_i >= 1``,
    float16 or float32. Scores are float32 dot products; the first of equal maxima wins.
    float16 rows are widened to float32 first, which dominates the cost (numpy 2.4: ~2 ns per
    value, 20-50x the dot product itself), so a caller with float32 rows should pass them.
    """
    m = len(images)
    best = np.empty(m, dtype=np.int64)
    score = np.empty(m, dtype=np.float32)
    q = query.astype(np.float32, copy=False)
    for i, rows in enumerate(images):
        if rows.ndim != 2 or rows.shape[1] != q.shape[0]:
            raise ValueError(f"images are {rows.shape}, the query is {q.shape}")
        if rows.shape[0] < 1:
            raise ValueError("every candidate needs at least one image embedding")
        # One matrix-vector product per item: no copy of float32 rows into a stacked matrix.
        sims = rows.astype(np.float32, copy=False) @ q
        j = int(np.argmax(sims))
        best[i], score[i] = j, sims[j]
    return best, score


def rank_candidates(
    query: npt.NDArray[np.float32],
    item_ids: Sequence[str],
    centroid_scores: npt.NDArray[np.float32],
    images: Sequence[npt.NDArray[np.floating]],
    *,
    mode: RankMode = RankMode.TWO_STAGE,
    alpha: float = DEFAULT_ALPHA,
) -> FusedRanking:
    """Rank M candidates (``item_ids``, ``centroid_scores`` ``(M,)`` float32, ``images`` one
    ``(n_i, D)`` array each) for the unit ``(D,)`` ``query``. See the module docstring."""
    m = len(item_ids)
    if centroid_scores.shape != (m,) or len(images) != m:
        raise ValueError(
            f"{m} item ids, {centroid_scores.shape} centroid scores and {len(images)} image sets"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha}")
    cs = centroid_scores.astype(np.float32, copy=False)
    best, image_score = best_images(query, images)
    fused = fused_score(cs, image_score, alpha)
    key = (fused if mode is RankMode.TWO_STAGE else cs).tolist()
    # Score descending, then item id ascending (M is small: a Python sort is exact and quick).
    order = np.array(
        sorted(range(m), key=lambda i: (-key[i], item_ids[i])), dtype=np.int64
    ).reshape(m)
    return FusedRanking(
        items=order,
        best_image=best[order],
        image_score=image_score[order],
        centroid_score=cs[order],
        fused_score=fused[order],
    )
