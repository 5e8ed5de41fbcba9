"""Top-k over a FAISS index with ties at the k-th place resolved by item id, exactly.

When several items score the same as the k-th result, FAISS keeps an arbitrary subset of them,
so "ties by item id" cannot be applied to its top-k alone. The search is widened until the
score at the end of the candidate list drops clearly below the k-th score (or every item is a
candidate); then every item that could tie with the k-th is among the candidates and sorting
them by ``(-score, item_id)`` is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

SearchFn = Callable[
    [npt.NDArray[np.float32], int], tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
]

# The first search asks for this many extra rows beyond k, so that most queries need no second
# pass; each further pass multiplies the request by WIDEN_FACTOR (few passes even when many
# items tie, each pass being a full scan of a flat index).
FIRST_EXTRA = 16
WIDEN_FACTOR = 4


def float32_dot_slack(dim: int) -> float:
    """How far two FAISS float32 inner products of unit vectors may be off, together.

    The standard rounding-error bound for a length-``dim`` float32 dot product of unit vectors
    is ``dim * u`` with ``u = 2**-24`` (Higham, *Accuracy and Stability of Numerical
    Algorithms*, 2nd ed., eq. 3.5); two scores compared against each other double it.
    """
    return 2.0 * dim * 2.0**-24


def candidates_covering_ties(
    search: SearchFn,
    queries: npt.NDArray[np.float32],
    k: int,
    ntotal: int,
    slack: float,
) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
    """Per query, ``(slots (C,) int64, scores (C,) float32)`` with ``C >= min(k, ntotal)``.

    ``search(q (Q, D) float32, want) -> (scores (Q, want), slots (Q, want))`` is a FAISS-style
    search, best first, slot ``-1`` padding absent results. The candidates of each query hold
    every slot whose score is at least ``kth_score - slack``. Requires ``k >= 1``.
    """
    nq = queries.shape[0]
    out: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None] = [None] * nq
    if ntotal == 0:
        empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
        return [empty for _ in range(nq)]
    pending = np.arange(nq)
    want = min(ntotal, k + FIRST_EXTRA)
    while pending.size:
        scores, slots = search(np.ascontiguousarray(queries[pending]), want)
        still: list[int] = []
        for row, qi in enumerate(pending.tolist()):
            s, i = scores[row], slots[row]
            keep = i >= 0
            s, i = s[keep], i[keep]
            complete = want >= ntotal or i.size < want
            if complete or s[-1] < s[min(k, i.size) - 1] - slack:
                out[qi] = (i.astype(np.int64), s.astype(np.float32))
            else:
                still.append(qi)
        pending = np.asarray(still, dtype=np.int64)
        want = min(ntotal, want * WIDEN_FACTOR)
    return [c for c in out if c is not None]


def rank_by_score_then_id(
    ids: Sequence[str],
    slots: npt.NDArray[np.int64],
    scores: npt.NDArray[np.floating],
    k: int,
) -> list[tuple[str, float]]:
    """The best ``k`` of ``(ids[slot], score)``, sorted by score descending then id ascending."""
    pairs = [(ids[s], float(v)) for s, v in zip(slots.tolist(), scores.tolist(), strict=True)]
    pairs.sort(key=lambda p: (-p[1], p[0]))
    return pairs[:k]
