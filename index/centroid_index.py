"""The interface the service needs from an item-centroid index.

Implementations: ``FlatCentroidIndex`` (exact, FAISS ``IndexFlatIP``), ``IvfCentroidIndex``
(approximate candidates, exact re-rank) and ``MilvusCentroidIndex`` (a shared collection).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from index.item_terms import NO_TERMS
from index.rebuild_item import RebuildItem


class CentroidIndex(Protocol):
    """One unit-norm centroid per item id, searched by inner product (= cosine)."""

    @property
    def version(self) -> int:
        """Bumped by every change, so copies (a GPU mirror, a replica) can tell they lag."""
        ...

    def upsert(
        self,
        item_id: str,
        centroid: npt.NDArray[np.floating],
        terms: frozenset[str] = NO_TERMS,
    ) -> None:
        """Insert or replace ``item_id``'s centroid ``(D,)`` and its filter ``terms`` (opaque
        strings, ``index/item_terms.py``; the old terms are replaced too)."""
        ...

    def remove(self, item_id: str) -> bool:
        """Drop ``item_id``; False if it was not there."""
        ...

    def search(
        self,
        queries: npt.NDArray[np.floating],
        k: int,
        where: frozenset[str] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """For each of the ``(Q, D)`` unit-norm queries, up to ``k`` ``(item_id, score)``.

        Best first; equal scores ordered by item id ascending. With ``where`` (a non-empty set
        of terms), only items whose terms contain all of them, and still ``k`` of them unless
        fewer match (an approximate index: the k best among its candidates).
        """
        ...

    def get(self, item_id: str) -> npt.NDArray[np.float32] | None:
        """A copy of ``item_id``'s stored ``(D,)`` float32 centroid, or None."""
        ...

    def terms_of(self, item_id: str) -> frozenset[str] | None:
        """``item_id``'s filter terms, or None if it is not held."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, item_id: object) -> bool: ...

    def item_ids(self) -> list[str]:
        """Every item id held, in no particular order."""
        ...

    def rebuild(self, items: Iterable[RebuildItem]) -> None:
        """Replace the whole content with ``items`` (bulk load at start-up): each
        ``(item_id, centroid (D,))`` or ``(item_id, centroid, terms)``."""
        ...

    def memory_bytes(self) -> int:
        """Approximate resident size of the index in bytes."""
        ...
