"""A batch of index writes taken in one hold of the index's write lock (change-feed records).

Written one by one, every write waits on the index's writer-preferring lock for the searches in
flight (tens of milliseconds each at 10^5 rows of D = 1280) and holds new ones back meanwhile,
so a replica applying a page of the change feed under search load would pay that wait once per
record. An index that offers ``BatchWrites`` takes the whole page in one hold; ``write_batch``
falls back to one call per write for any other ``CentroidIndex``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from index.centroid_index import CentroidIndex
from index.item_terms import NO_TERMS


@dataclass(frozen=True)
class IndexWrite:
    """Upsert ``item_id``'s row with ``centroid`` ``(dim,)`` and ``terms``, or remove the item
    (``centroid`` None)."""

    item_id: str
    centroid: npt.NDArray[np.floating] | None
    terms: frozenset[str] = NO_TERMS


@runtime_checkable
class BatchWrites(Protocol):
    def write_batch(self, writes: Sequence[IndexWrite]) -> None:
        """Apply ``writes`` in order, as ``upsert``/``remove`` one after another would, in one
        hold of the write lock. Every row and term set is checked first: ValueError or
        TypeError (as ``upsert`` raises them) leave the index unchanged."""
        ...


def write_batch(index: CentroidIndex, writes: Sequence[IndexWrite]) -> None:
    """``writes`` in order, in one hold of ``index``'s lock when it offers ``BatchWrites``."""
    if isinstance(index, BatchWrites):
        index.write_batch(writes)
        return
    for write in writes:
        if write.centroid is None:
            index.remove(write.item_id)
        else:
            index.upsert(write.item_id, write.centroid, write.terms)
