"""A centroid index that several processes write: what the service must do differently for it.

An in-process index (flat, IVF) belongs to one replica, which applies every item state it
learns of, newest first. A shared one (Milvus) is written by every replica, so no replica's
memory of what it applied says what the index holds. It therefore keeps, in each row, the
store version of the item state the row was written from, and answers which version it holds:
a writer re-reads the store after writing and writes again until the two agree, and start-up
compares versions instead of rewriting every row (``app/index_applier.py``).

Kept apart from ``CentroidIndex``: callers ask ``isinstance`` whether their index is one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from index.item_terms import NO_TERMS, check_terms

# ``(item_id, centroid (D,), version)``, or with the item's filter terms as a fourth element
# (the three-element form means no terms).
VersionedRow = (
    tuple[str, npt.NDArray[np.floating], int]
    | tuple[str, npt.NDArray[np.floating], int, frozenset[str]]
)


def split_versioned_row(
    row: VersionedRow,
) -> tuple[str, npt.NDArray[np.floating], int, frozenset[str]]:
    """``(item_id, centroid, version, terms)`` of either form; terms checked."""
    if len(row) == 3:
        item_id, centroid, version = row
        return item_id, centroid, version, NO_TERMS
    item_id, centroid, version, terms = row
    return item_id, centroid, version, check_terms(terms)


@runtime_checkable
class SharedCentroidIndex(Protocol):
    def upsert_versioned(self, rows: Iterable[VersionedRow]) -> None:
        """Write each ``(item_id, centroid (D,), version[, terms])`` (normalised here),
        replacing the item's row and terms; ``version`` is the store's ``ItemState.version``
        it came from."""
        ...

    def remove(self, item_id: str) -> bool:
        """Drop ``item_id``; False if it was not there."""
        ...

    def stored_version(self, item_id: str) -> int | None:
        """The version ``item_id``'s row was written with, None if there is no row."""
        ...

    def stored_versions(self) -> dict[str, int]:
        """Every item id held and its row's version (ids and versions only, no vectors)."""
        ...
