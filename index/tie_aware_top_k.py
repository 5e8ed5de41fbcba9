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
# A filter over slots: ``(C,) int64 -> (C,) bool``, True for the slots that match.
KeepFn = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.bool_]]

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
    *,
    keep: KeepFn | None = None,
    first_want: int | None = None,
) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
    """Per query, ``(slots (C,) int64, scores (C,) float32)`` with ``C >= min(k, ntotal)``.

    ``search(q (Q, D) float32, want) -> (scores (Q, want), slots (Q, want))`` is a FAISS-style
    search, best first, slot ``-1`` padding absent results. The candidates of each query hold
    every slot whose score is at least ``kth_score - slack``. Requires ``k >= 1``.

    With ``keep`` (``slots (C,) int64 -> (C,) bool``, a filter), only the slots it keeps are
    candidates, and "the k-th" is the k-th kept one: the search widens until ``k`` kept slots
    are found and the lowest slot returned (kept or not) scores clearly below the k-th kept
    one, so no kept slot left out can tie with it; fewer than ``k`` when the search ran out
    (every slot returned, or fewer than asked for). ``first_want`` sizes the first request
    (default ``k + FIRST_EXTRA``): a filter keeping a fraction ``f`` needs about ``k / f``.
    """
    nq = queries.shape[0]
    out: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None] = [None] * nq
    if ntotal == 0:
        empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
        return [empty for _ in range(nq)]
    pending = np.arange(nq)
    want = min(ntotal, k + FIRST_EXTRA if first_want is None else max(k, first_want))
    while pending.size:
        scores, slots = search(np.ascontiguousarray(queries[pending]), want)
        still: list[int] = []
        for row, qi in enumerate(pending.tolist()):
            s, i = scores[row], slots[row]
            present = i >= 0
            s, i = s[present], i[present]
            complete = want >= ntotal or i.size < want
            ks, ki = s, i
            if keep is not None and i.size:
                kept = keep(i)
                ks, ki = s[kept], i[kept]
            if complete or (ki.size >= k and s[-1] < ks[k - 1] - slack):
                out[qi] = (ki.astype(np.int64), ks.astype(np.float32))
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
