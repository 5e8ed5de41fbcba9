"""The one place the centroid index takes an item's state, newest wins.

Three writers bring states: this replica's own writes, the change feed (other replicas' writes,
and this one's echoed back) and the reconciler (what the store holds now). Each calls
:meth:`IndexApplier.apply` while holding that item's lock, and a state older than the one the
index already reflects (a smaller ``ItemState.version``; deletions are remembered with theirs)
is skipped, so the order in which the three arrive never matters.

The remembered versions cost about 100 bytes per item ever seen by this process (deleted ones
included) until the next rebuild.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt

from app.metrics import ServiceMetrics
from index.centroid_index import CentroidIndex
from index.centroid_math import centroid_from_sum
from store.records import ItemState


class IndexApplier:
    def __init__(self, index: CentroidIndex, metrics: ServiceMetrics) -> None:
        self.index = index
        self._metrics = metrics
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()  # the dict: different items are applied concurrently

    def version_of(self, item_id: str) -> int:
        """The version of ``item_id``'s state the index reflects (0: none seen, or a state
        written before versions)."""
        with self._lock:
            return self._versions.get(item_id, 0)

    def versions(self) -> list[tuple[str, int]]:
        """``(item id, version)`` of every item the index holds."""
        held = set(self.index.item_ids())
        with self._lock:
            return [(i, self._versions.get(i, 0)) for i in held]

    def apply(self, state: ItemState) -> bool:
        """Put ``state`` in the index unless it is older than what the index reflects; True if
        applied. The caller holds ``state.item_id``'s item lock."""
        with self._lock:
            if state.version < self._versions.get(state.item_id, 0):
                return False
            self._versions[state.item_id] = state.version
        with self._metrics.stage("index_update"):
            if state.count == 0:
                self.index.remove(state.item_id)
            else:
                self.index.upsert(state.item_id, centroid_from_sum(state.embedding_sum))
        return True

    def drop(self, item_id: str) -> None:
        """The store holds no ``item_id`` (it read nothing, so it has no version to compare):
        remove it, keeping the version of its deletion if one was seen. Item lock held."""
        self.index.remove(item_id)

    def rebuild(self, states: Iterable[ItemState]) -> None:
        """Replace everything with ``states`` (each item once), versions included."""
        versions: dict[str, int] = {}

        def rows() -> Iterator[tuple[str, npt.NDArray[np.float32]]]:
            for state in states:
                versions[state.item_id] = state.version
                yield state.item_id, centroid_from_sum(state.embedding_sum)

        self.index.rebuild(rows())
        with self._lock:
            self._versions = versions
