"""An approximate index that can also answer exactly: what production recall sampling needs.

Kept apart from ``CentroidIndex``: the flat index is exact already and Milvus's (FLAT) search
is too, so only an approximate index offers this, and callers ask ``isinstance`` whether the
index they hold is one.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@runtime_checkable
class ExactSearchable(Protocol):
    def exact_search(
        self, queries: npt.NDArray[np.floating], k: int
    ) -> list[list[tuple[str, float]]]:
        """What ``search`` answers, but from every stored row: the exact top ``k`` of each of
        the ``(Q, D)`` unit-norm queries, best first, equal scores by item id ascending.

        Costs a scan of the whole index; meant for a sampled few queries off the request path.
        """
        ...
