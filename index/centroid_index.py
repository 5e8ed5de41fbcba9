"""The interface the service needs from an item-centroid index.

``FlatCentroidIndex`` (exact, FAISS ``IndexFlatIP``) is the one implementation today; an
approximate one (HNSW, IVF) can be swapped in behind the same methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np
import numpy.typing as npt


class CentroidIndex(Protocol):
    """One unit-norm centroid per item id, searched by inner product (= cosine)."""

    @property
    def version(self) -> int:
        """Bumped by every change, so copies (a GPU mirror, a replica) can tell they lag."""
        ...

    def upsert(self, item_id: str, centroid: npt.NDArray[np.floating]) -> None:
        """Insert or replace ``item_id``'s centroid ``(D,)``."""
        ...

    def remove(self, item_id: str) -> bool:
        """Drop ``item_id``; False if it was not there."""
        ...

    def search(self, queries: npt.NDArray[np.floating], k: int) -> list[list[tuple[str, float]]]:
        """For each of the ``(Q, D)`` unit-norm queries, up to ``k`` ``(item_id, score)``.

        Best first; equal scores ordered by item id ascending.
        """
        ...

    def get(self, item_id: str) -> npt.NDArray[np.float32] | None:
        """A copy of ``item_id``'s stored ``(D,)`` float32 centroid, or None."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, item_id: object) -> bool: ...

    def item_ids(self) -> list[str]:
        """Every item id held, in no particular order."""
        ...

    def rebuild(self, items: Iterable[tuple[str, npt.NDArray[np.floating]]]) -> None:
        """Replace the whole content with ``items`` (bulk load at start-up)."""
        ...

    def memory_bytes(self) -> int:
        """Approximate resident size of the index in bytes."""
        ...
