"""The one place the centroid index takes an item's state, newest wins.

Three writers bring states: this replica's own writes, the change feed (other replicas' writes,
and this one's echoed back) and the reconciler (what the store holds now). Each calls
:meth:`IndexApplier.apply` while holding that item's lock, and a state older than the one the
index already reflects (a smaller ``ItemState.version``; deletions are remembered with theirs)
is skipped, so the order in which the three arrive never matters.

The remembered versions cost about 100 bytes per item ever seen by this process (deleted ones
included) until the next rebuild.

**A shared index** (``SharedCentroidIndex``: Milvus, one collection every replica writes) is
different: this process's memory of versions says nothing of what other replicas wrote to it,
and two replicas committing v4 and v5 of one item may reach Milvus as v5 then v4. So a state is
*settled* instead: written (with its version, in the row), then the item is read back from the
store, and while the store holds another version than the one just written, the store's state
is written and read back again. Why the last writer always leaves the newest state: take the
last write to the item's row in Milvus's order, by writer W, of version w. W read the store
after that write returned. A commit newer than w made before W's read would have been seen by
it, and W would have written again, after its last write: a contradiction. A commit made after
W's read is applied by its own writer after it commits, so after W's write: a contradiction
again. So no commit is newer than w: the row holds the store's newest state. A writer that
gives up (``MAX_SETTLE_ROUNDS`` under a storm of writes to one item, Milvus or the store
failing) raises, and its caller marks the item for the reconciler, which settles it later.

Change records from the feed are only *noted* for a shared index (``apply_replicated``): the
replica that took the write has settled it before answering, so every replica's ``after=``
wait and replication lag work from its own notes, and N replicas do not write every change N
more times. A rebuild (start-up, a feed gap) of a shared index compares the versions Milvus
holds with the store's and writes only the items that differ: a replica starting against a
Milvus that is in step writes nothing (it still reads every item state from the store, as any
rebuild does, and every row's id and version from Milvus).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import numpy.typing as npt

from app.image_evidence import ImageChange, ImageEvidence
from app.index_breaker import IndexBreaker
from app.item_attribute_map import ItemAttributeMap
from app.metrics import ServiceMetrics
from index.centroid_index import CentroidIndex
from index.centroid_math import centroid_from_sum
from index.index_write_batch import IndexWrite, write_batch
from index.row_export import RowExport, RowSource
from index.shared_centroid_index import SharedCentroidIndex
from store.item_attributes import Attributes, attribute_terms
from store.item_spread import item_spread
from store.records import ItemState

log = logging.getLogger(__name__)

# The store's state of one item, now (``Store.get_item_state``; None: no such item).
Reread = Callable[[str], ItemState | None]

# Writes and read-backs of one item before a settle gives up (each round means the item was
# written again meanwhile by another replica).
MAX_SETTLE_ROUNDS = 8
# Rows per Milvus write while a rebuild brings a shared index in step.
SYNC_BATCH_ROWS = 1024


class IndexNotSettledError(RuntimeError):
    """A shared index could not be brought to the store's state of an item this time (it kept
    changing); the caller marks it for the reconciler."""


class IndexApplier:
    def __init__(
        self,
        index: CentroidIndex,
        metrics: ServiceMetrics,
        evidence: ImageEvidence | None = None,
    ) -> None:
        self.index = index
        # The candidates' images and spreads a search's second stage reads, kept in step with
        # the rows here (an own index only: a shared one's evidence is read from the store).
        self.evidence = evidence if not isinstance(index, SharedCentroidIndex) else None
        self._metrics = metrics
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()  # the dict: different items are applied concurrently
        self._shared = index if isinstance(index, SharedCentroidIndex) else None
        self.breaker = IndexBreaker() if self._shared is not None else None
        # Each item's attributes, returned with search results; kept in step with the index's
        # rows (and their filter terms) by every method below that changes them.
        self.attributes = ItemAttributeMap()

    def configure_breaker(self, failures: int, cooldown_s: float) -> None:
        """Before the index is used: the shared index's breaker opens after ``failures`` failed
        calls in a row, for ``cooldown_s`` (the settings'); nothing for an own index.

        A method rather than a constructor argument because the retriever builds the applier
        and the settings reach it only through ``build_retriever``."""
        if self._shared is not None:
            self.breaker = IndexBreaker(failures, cooldown_s)

    @property
    def shared(self) -> bool:
        """Other processes write this index too (Milvus): states are settled, not applied."""
        return self._shared is not None

    @property
    def breaker_state(self) -> str:
        """The shared index's breaker: ``closed``, ``half-open``, ``open``; ``none`` for an
        index in this process's memory (which cannot be down)."""
        return "none" if self.breaker is None else self.breaker.state.label

    def refuse_writes_if_index_down(self) -> None:
        """Before a store commit: ``IndexBreakerOpenError`` (503) while the shared index is
        known to be down, so nothing is committed that the index cannot take."""
        if self.breaker is not None:
            self.breaker.refuse_writes_if_open()

    def guarded(self) -> AbstractContextManager[None]:
        """Around a search of the index: through the shared index's breaker (refused at once
        while Milvus is known down, its failures counted); nothing for an own index."""
        return self.breaker.guard() if self.breaker is not None else nullcontext()

    def version_of(self, item_id: str) -> int:
        """The version of ``item_id``'s state the index reflects (0: none seen, or a state
        written before versions)."""
        with self._lock:
            return self._versions.get(item_id, 0)

    def versions(self) -> list[tuple[str, int]]:
        """``(item id, version)`` of every item the index holds (a shared index: the versions
        its rows were written with, whoever wrote them)."""
        if self._shared is not None:
            return list(self._shared.stored_versions().items())
        held = set(self.index.item_ids())
        with self._lock:
            return [(i, self._versions.get(i, 0)) for i in held]

    def apply(
        self, state: ItemState, reread: Reread | None = None, images: ImageChange | None = None
    ) -> bool:
        """Put ``state`` in the index unless it is older than what the index reflects; True if
        applied. The caller holds ``state.item_id``'s item lock. ``images``: what this
        replica's write did to the item's images (the evidence re-reads them otherwise).

        A shared index needs ``reread`` (the store's state of an item now): ``state`` is
        settled (see the module docstring), and ``IndexUnavailableError`` or
        ``IndexNotSettledError`` (or the store's error) means the index may not show it yet.
        """
        if self._shared is not None:
            if reread is None:
                raise TypeError("a shared index settles states: pass reread")
            self._settle(self._shared, state.item_id, state, reread)
            return True
        with self._lock:
            prior = self._versions.get(state.item_id, 0)
            if state.version < prior:
                return False
            self._versions[state.item_id] = state.version
        with self._metrics.stage("index_update"):
            if state.count == 0:
                self.index.remove(state.item_id)
                self.attributes.drop(state.item_id)
            else:
                self.index.upsert(
                    state.item_id,
                    centroid_from_sum(state.embedding_sum),
                    attribute_terms(state.attributes),
                )
                self.attributes.set(state.item_id, state.attributes)
        # The feed echoes this replica's own writes (same version): their images are in already.
        if self.evidence is not None and (
            images is not None or state.version != prior or state.version == 0
        ):
            self.evidence.applied(state, images)
        return True

    def apply_replicated(self, state: ItemState) -> bool:
        """A change record from the feed. An own index applies it (newest wins); a shared one
        only notes its version (for ``after=``): its writer settled it. True if newer than what
        was applied or noted. Item lock held."""
        if self._shared is None:
            return self.apply(state)
        with self._lock:
            if state.version < self._versions.get(state.item_id, 0):
                return False
            self._versions[state.item_id] = state.version
        # The row (and its terms) is in Milvus already; the attributes results return are not.
        self.attributes.set(state.item_id, state.attributes if state.count else {})
        return True

    def apply_replicated_batch(self, states: Sequence[ItemState]) -> list[bool]:
        """``apply_replicated`` of each of ``states`` (distinct items, their locks held), the
        index writes of an own index in one ``write_batch`` (one hold of its write lock, not
        one per record); per state, whether it was newer than what was applied or noted."""
        if self._shared is not None:
            return [self.apply_replicated(state) for state in states]
        fresh: list[tuple[ItemState, int]] = []  # with the version the index had before
        outcomes: list[bool] = []
        with self._lock:
            for state in states:
                prior = self._versions.get(state.item_id, 0)
                outcomes.append(state.version >= prior)
                if outcomes[-1]:
                    fresh.append((state, prior))
        writes = [
            IndexWrite(state.item_id, None)
            if state.count == 0
            else IndexWrite(
                state.item_id,
                centroid_from_sum(state.embedding_sum),
                attribute_terms(state.attributes),
            )
            for state, _ in fresh
        ]
        with self._metrics.stage("index_update"):
            write_batch(self.index, writes)
        # Noted once the rows are in (every writer of these items waits on their locks
        # meanwhile), so an ``after=`` wait never sees a version before its row.
        with self._lock:
            for state, _ in fresh:
                self._versions[state.item_id] = state.version
        for state, prior in fresh:
            if state.count == 0:
                self.attributes.drop(state.item_id)
            else:
                self.attributes.set(state.item_id, state.attributes)
            # As in ``apply``: this replica's own write echoed (same version) has its images in.
            if self.evidence is not None and (state.version != prior or state.version == 0):
                self.evidence.applied(state, None)
        return outcomes

    def reconcile(self, item_id: str, reread: Reread) -> bool:
        """Shared index: bring ``item_id``'s row to the store's state if its version differs;
        True if it had to be written. Item lock held."""
        assert self._shared is not None and self.breaker is not None
        now = reread(item_id)
        with self.breaker.guard():
            held = self._shared.stored_version(item_id)
        if _settled(now, held):
            self._note(item_id, now)
            return False
        self._settle(self._shared, item_id, now, reread)
        return True

    def drop(self, item_id: str) -> None:
        """The store holds no ``item_id`` (it read nothing, so it has no version to compare):
        remove it, keeping the version of its deletion if one was seen. Item lock held."""
        self.index.remove(item_id)
        self.attributes.drop(item_id)
        if self.evidence is not None:
            self.evidence.dropped(item_id)

    def version_map(self) -> dict[str, int]:
        """A copy of the remembered versions (item id -> version; deleted items included)."""
        with self._lock:
            return dict(self._versions)

    def load(
        self,
        ids: Sequence[str],
        versions: npt.NDArray[np.int64],
        rows: RowSource,
        terms: Sequence[frozenset[str]] | None = None,
    ) -> None:
        """Replace everything with an index snapshot: ``ids``, their ``(n,)`` versions,
        ``(n, dim)`` unit-norm float32 rows and filter terms (app/index_snapshots.py)."""
        if isinstance(self.index, RowExport):
            self.index.load_rows(ids, rows, terms)
        elif terms is None:
            self.index.rebuild(zip(ids, rows, strict=True))
        else:
            self.index.rebuild(zip(ids, rows, terms, strict=True))
        with self._lock:
            self._versions = dict(zip(ids, versions.tolist(), strict=True))
        if self.evidence is not None:
            self.evidence.rebuilt(None)  # a snapshot holds no spreads: computed from the rows

    def rebuild(self, states: Iterable[ItemState], reread: Reread | None = None) -> int:
        """Replace everything with ``states`` (each item once), versions included. A shared
        index is brought in step instead (needs ``reread``): only items whose version differs
        are written, and settled. Returns the rows written or removed (every row for an own
        index)."""
        if self._shared is not None:
            if reread is None:
                raise TypeError("a shared index settles states: pass reread")
            return self._sync(self._shared, states, reread)
        versions: dict[str, int] = {}
        attributes: list[tuple[str, Attributes]] = []
        spreads: list[tuple[str, int, float | None]] = []

        def rows() -> Iterator[tuple[str, npt.NDArray[np.float32], frozenset[str]]]:
            for state in states:
                versions[state.item_id] = state.version
                if self.evidence is not None:
                    spreads.append((state.item_id, state.count, item_spread(state)))
                if state.attributes:
                    attributes.append((state.item_id, state.attributes))
                terms = attribute_terms(state.attributes)
                yield state.item_id, centroid_from_sum(state.embedding_sum), terms

        self.index.rebuild(rows())
        self.attributes.replace(attributes)
        with self._lock:
            self._versions = versions
        if self.evidence is not None:
            self.evidence.rebuilt(spreads)
        return len(versions)

    # -- shared index -------------------------------------------------------------------------

    def _settle(
        self,
        shared: SharedCentroidIndex,
        item_id: str,
        state: ItemState | None,
        reread: Reread,
    ) -> None:
        """Write ``state`` (None: no item) and re-read the store until they agree."""
        assert self.breaker is not None
        with self.breaker.guard(), self._metrics.stage("index_update"):
            for _ in range(MAX_SETTLE_ROUNDS):
                _write(shared, item_id, state)
                now = reread(item_id)
                if _settled(now, None if state is None or state.count == 0 else state.version):
                    self._note(item_id, now)
                    return
                state = now
        raise IndexNotSettledError(
            f"item {item_id!r} changed {MAX_SETTLE_ROUNDS} times while being written to the "
            "shared index"
        )

    def _note(self, item_id: str, state: ItemState | None) -> None:
        """The index holds the store's state of ``item_id``: remember its version (and the
        attributes results return)."""
        if state is None:
            self.attributes.drop(item_id)
            return  # deleted: its deletion's version, if seen, stays
        with self._lock:
            if state.version >= self._versions.get(item_id, 0):
                self._versions[item_id] = state.version
                self.attributes.set(item_id, state.attributes if state.count else {})

    def _note_attributes(self, state: ItemState) -> None:
        """A rebuild of a shared index read ``state``: keep its attributes unless a newer
        state of the item was noted meanwhile (the change feed's)."""
        with self._lock:
            if state.version >= self._versions.get(state.item_id, 0):
                self.attributes.set(state.item_id, state.attributes)

    def _sync(
        self, shared: SharedCentroidIndex, states: Iterable[ItemState], reread: Reread
    ) -> int:
        held = shared.stored_versions()
        versions: dict[str, int] = {}
        written = 0
        batch: list[ItemState] = []

        def flush() -> None:
            shared.upsert_versioned(
                (
                    s.item_id,
                    centroid_from_sum(s.embedding_sum),
                    s.version,
                    attribute_terms(s.attributes),
                )
                for s in batch
            )
            for s in batch:  # a replica may have committed a newer state meanwhile
                now = reread(s.item_id)
                if not _settled(now, s.version):
                    self._settle(shared, s.item_id, now, reread)
            batch.clear()

        for state in states:
            versions[state.item_id] = state.version
            self._note_attributes(state)
            if held.pop(state.item_id, None) != state.version:
                batch.append(state)
                written += 1
                if len(batch) >= SYNC_BATCH_ROWS:
                    flush()
        if batch:
            flush()
        for item_id in held:  # rows the store no longer holds
            self._settle(shared, item_id, reread(item_id), reread)
            written += 1
        with self._lock:  # by max: a version noted from the feed meanwhile stays
            for item_id, version in versions.items():
                if version > self._versions.get(item_id, 0):
                    self._versions[item_id] = version
        log.info(
            "shared index brought in step with the store: %d of %d items written, %d rows removed",
            written - len(held),
            len(versions),
            len(held),
        )
        return written


def _write(shared: SharedCentroidIndex, item_id: str, state: ItemState | None) -> None:
    if state is None or state.count == 0:
        shared.remove(item_id)
    else:
        centroid = centroid_from_sum(state.embedding_sum)
        shared.upsert_versioned(
            [(item_id, centroid, state.version, attribute_terms(state.attributes))]
        )


def _settled(store_state: ItemState | None, held_version: int | None) -> bool:
    """Does a row of ``held_version`` (None: no row) show ``store_state`` (None: no item)?"""
    if store_state is None or store_state.count == 0:
        return held_version is None
    return held_version == store_state.version
