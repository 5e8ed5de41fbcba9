"""The two ways an in-process index answers a filtered search exactly over its candidates.

* **Pre-filter**: score only the matching slots (gathered in blocks, one float32 matrix
  product each) and keep every slot within ``slack`` of the k-th score: what to do when the
  matching set is small, since its cost is that set's size, not the index's.
* **Widened search**: the index's own search for ``k / selectivity`` candidates, repeated
  wider until ``k`` matching ones cover the ties (``candidates_covering_ties`` with ``keep``):
  what to do when most items match, since a pre-filter would gather most of the index.

Both return what ``candidates_covering_ties`` returns, so the caller's exact float64 re-rank and
``(-score, item id)`` order are the same whichever ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from index.tie_aware_top_k import FIRST_EXTRA, KeepFn

# Rows gathered and scored at once by ``prefilter_candidates``: bounds the temporary copy
# (4096 x 1280 float32 = 20 MB) whatever the matching set's size.
PREFILTER_BLOCK_ROWS = 4096

# How many times the expected need the first widened request asks for: matching items are not
# spread evenly over the ranking (they may sit in a cluster away from the query), and a second
# pass is a second scan.
WIDEN_MARGIN = 2.0

Candidates = list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]
GatherFn = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float32]]


def slots_array(matching: set[int]) -> npt.NDArray[np.int64]:
    """The ``(m,)`` int64 slots of ``matching``, ascending (sequential reads when gathered)."""
    slots = np.fromiter(matching, dtype=np.int64, count=len(matching))
    slots.sort()
    return slots


def membership(matching: set[int]) -> KeepFn:
    """A ``keep`` filter for ``candidates_covering_ties``: slot in ``matching``. One set probe
    per candidate, so it costs the candidates' count, not the matching set's size."""

    def keep(slots: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return np.fromiter((s in matching for s in slots.tolist()), dtype=bool, count=slots.size)

    return keep


def widened_first_want(k: int, ntotal: int, n_matching: int) -> int:
    """The first request of a widened search: ``k + FIRST_EXTRA`` over the selectivity
    ``n_matching / ntotal``, times ``WIDEN_MARGIN``, at most ``ntotal``."""
    need = (k + FIRST_EXTRA) * ntotal / max(n_matching, 1) * WIDEN_MARGIN
    return min(ntotal, math.ceil(need))


def prefilter_candidates(
    gather: GatherFn,
    slots: npt.NDArray[np.int64],
    queries: npt.NDArray[np.float32],
    k: int,
    slack: float,
) -> Candidates:
    """Per query, ``(slots (C,) int64, float32 scores (C,))``: every one of ``slots`` ``(m,)``
    whose score is at least the k-th best minus ``slack`` (all of them if ``m <= k``).

    ``gather(slots (b,)) -> (b, D) float32`` copies rows; ``queries`` is ``(Q, D)`` float32.
    """
    m, nq = slots.size, queries.shape[0]
    scores = np.empty((nq, m), dtype=np.float32)
    for start in range(0, m, PREFILTER_BLOCK_ROWS):
        block = gather(slots[start : start + PREFILTER_BLOCK_ROWS])
        scores[:, start : start + block.shape[0]] = queries @ block.T
    out: Candidates = []
    for qi in range(nq):
        s = scores[qi]
        if m > k:
            kth = np.partition(s, m - k)[m - k]
            near = s >= kth - slack
            out.append((slots[near], s[near]))
        else:
            out.append((slots, s))
    return out
