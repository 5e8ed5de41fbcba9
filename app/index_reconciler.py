"""Brings the in-memory index back in line with the store when they may disagree.

A write whose store outcome is unknown (``StoreOutcomeUnknownError``: the commit was sent, its
answer never came) leaves this instance unable to tell whether the index should show it. Its
item is marked *pending*: a background thread re-reads that item's state from the store at once,
again every ``PENDING_RETRY_S`` while the store stays unreachable, and as soon as another write
succeeds. Separately, every ``interval_s`` the thread compares the whole index with the store
(``iter_item_states``) and corrects whatever else disagrees: an item written by another replica,
or any case nobody marked.

Every correction re-reads the item under its item lock, the lock writes hold from commit to
index update, so a correction never overwrites a newer write's index entry with older state.

With a shared index (Milvus) the item lock is only this process's, so corrections are settled
(``IndexApplier.reconcile``: written, then read back from the store until they agree) and
compared by the versions the rows hold, not by their vectors. A write that committed while
Milvus was unreachable is marked pending here too, and retried every ``PENDING_RETRY_S``
through the index's circuit breaker until Milvus answers; so is one a replica could not settle.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from app.index_applier import IndexApplier, IndexNotSettledError
from app.metrics import ServiceMetrics
from app.striped_lock import StripedLock
from index.centroid_math import centroid_from_sum
from index.index_errors import IndexUnavailableError
from store.errors import StoreError
from store.records import ItemState
from store.store import Store

log = logging.getLogger(__name__)

# Pending items are retried this often while the store is unreachable.
PENDING_RETRY_S = 2.0

# Index rows are float32; a centroid recomputed from the same sum matches to rounding.
_CENTROID_ATOL = 1e-6


class IndexReconciler:
    def __init__(
        self,
        *,
        store: Store,
        applier: IndexApplier,
        item_locks: StripedLock,
        metrics: ServiceMetrics,
        interval_s: float,
        pending_retry_s: float = PENDING_RETRY_S,
    ) -> None:
        self._store = store
        self._applier = applier
        self._index = applier.index
        self._item_locks = item_locks
        self._metrics = metrics
        self._interval_s = interval_s
        self._pending_retry_s = pending_retry_s
        self._pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread (once the index has been built from the store)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="index-reconciler", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def mark(self, item_id: str) -> None:
        """``item_id``'s last write has an unknown outcome: re-read it as soon as possible."""
        with self._pending_lock:
            self._pending.add(item_id)
            self._metrics.reconcile_pending.set(len(self._pending))
        self._wake.set()

    def store_answered(self) -> None:
        """A store operation just succeeded: a good moment to retry pending items."""
        if self._pending:
            self._wake.set()

    def pending(self) -> set[str]:
        with self._pending_lock:
            return set(self._pending)

    def reconcile_pending(self) -> int:
        """Re-read every pending item; returns how many index entries changed. Raises
        ``StoreError`` or ``IndexUnavailableError`` (leaving the rest pending) if the store or
        a shared index fails meanwhile."""
        changed = 0
        for item_id in sorted(self.pending()):
            if self._fix(item_id, "pending"):
                changed += 1
            with self._pending_lock:
                self._pending.discard(item_id)
                self._metrics.reconcile_pending.set(len(self._pending))
        return changed

    def reconcile_all(self) -> int:
        """Compare every item of the store and of the index; returns how many entries changed."""
        if self._applier.shared:
            changed = self._applier.rebuild(
                self._store.iter_item_states(), reread=self._store.get_item_state
            )
            if changed:
                self._metrics.reconciled_items.labels(source="periodic").inc(changed)
            return changed
        changed = 0
        extra = set(self._index.item_ids())
        for state in self._store.iter_item_states():
            if self._stop.is_set():  # closing: the store is about to be closed under us
                return changed
            extra.discard(state.item_id)
            if not self._holds(state) or not self._evidence_holds(state):
                changed += self._fix(state.item_id, "periodic")
        for item_id in sorted(extra):
            changed += self._fix(item_id, "periodic")
        return changed

    def _fix(self, item_id: str, source: str) -> bool:
        """Make the index hold what the store holds for ``item_id`` now; True if it changed."""
        with self._item_locks.hold([item_id]):
            if self._applier.shared:
                if not self._applier.reconcile(item_id, self._store.get_item_state):
                    return False
                log.warning(
                    "shared index entry of item %r settled from the store (%s)", item_id, source
                )
                self._metrics.reconciled_items.labels(source=source).inc()
                return True
            state = self._store.get_item_state(item_id)
            row = self._index.get(item_id)
            if state is None or state.count == 0:
                if row is None:
                    return False
                self._applier.drop(item_id)
            else:
                if not self._evidence_holds(state):
                    # The index may be right while the images kept beside it are not (a
                    # re-read that failed): re-read them now (not counted as an index fix).
                    assert self._applier.evidence is not None
                    self._applier.evidence.applied(state)
                if self._holds(state):
                    return False
                if not self._applier.apply(state):
                    return False  # the index already holds a newer state (the change feed's)
        log.warning("index entry of item %r corrected from the store (%s)", item_id, source)
        self._metrics.reconciled_items.labels(source=source).inc()
        self._metrics.index_items.set(len(self._index))
        return True

    def _evidence_holds(self, state: ItemState) -> bool:
        """Do the per-image embeddings kept beside the index agree with ``state``?"""
        evidence = self._applier.evidence
        return evidence is None or evidence.holds(state)

    def _holds(self, state: ItemState) -> bool:
        """Does the index show ``state`` (an existing item): its centroid, and its attributes
        (the filter terms and what results return, changed together by the applier)?"""
        row = self._index.get(state.item_id)
        centroid = centroid_from_sum(state.embedding_sum)
        return (
            row is not None
            and np.allclose(row, centroid, rtol=0, atol=_CENTROID_ATOL)
            and self._applier.attributes.get(state.item_id) == state.attributes
        )

    def _run(self) -> None:
        next_full = time.monotonic() + self._interval_s
        while not self._stop.is_set():
            now = time.monotonic()
            waits = [] if self._interval_s <= 0 else [max(0.0, next_full - now)]
            if self._pending:
                waits.append(self._pending_retry_s)
            self._wake.wait(min(waits) if waits else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self._pending:
                    self.reconcile_pending()
                if self._interval_s > 0 and time.monotonic() >= next_full:
                    next_full = time.monotonic() + self._interval_s
                    self.reconcile_all()
            except StoreError as exc:
                log.info("index reconciliation postponed, the store failed: %s", exc)
            except (IndexUnavailableError, IndexNotSettledError) as exc:
                log.info("index reconciliation postponed, the index failed: %s", exc)
            except Exception:
                # Never let the thread die: the next round tries again.
                log.exception("index reconciliation failed")
