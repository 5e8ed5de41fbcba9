"""Keeps this replica's index in step with writes made through any replica sharing the Redis store.

A background thread tails the store's change feed (``store/change_feed.py``) from the cursor
noted before the index was built, and applies the records' item states through the
:class:`~app.index_applier.IndexApplier` a page at a time: of each item the page's newest
record, in batches of ``APPLY_BATCH_ITEMS`` items under their locks, each batch's index writes
in one hold of the index's write lock. A record older than what the index holds (this
replica's own write, already applied; a state the start-up pages already had; an older record
of an item in the same page) is skipped. While a read leaves records behind, the next one is
made at once, without the blocking wait. When the feed was trimmed past this replica's
position, it rebuilds the index from the store (noting a new cursor first, as at start-up).
While Redis is unreachable it retries every ``retry_s``, and the index keeps serving what it
has.

``caught_up`` turns true once a read reaches the end of the feed as it stood; ``/readyz`` waits
for it, and then for the lag to stay within ``max_replication_lag_s``.

With a shared index (Milvus) the follower does not write to it: the replica that took a write
settled it in Milvus before answering, and N followers writing every change again would fight
over one collection. It only notes each record's version (``IndexApplier.apply_replicated``,
counted as ``outcome="noted"``), so ``after=`` waits and the lag metrics work on every replica
as with an own index. A feed gap still rebuilds, which for a shared index writes only the
items whose versions differ from the store's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.index_applier import IndexApplier
from app.metrics import ServiceMetrics
from app.striped_lock import StripedLock
from index.index_errors import IndexUnavailableError
from store.change_feed import ChangeFeedGapError, FeedBatch, FeedCursor, RedisChangeFeed
from store.errors import StoreError
from store.records import ItemState

if TYPE_CHECKING:
    from app.retriever import Retriever

log = logging.getLogger(__name__)

BLOCK_MS = 500  # one blocking read waits at most this long for the next record
RETRY_S = 0.5  # after a failed read
# Items applied per hold of their locks and of the index's write lock: a page of records is
# applied in batches (one lock hold each, not one per record), bounded so that a write through
# this replica to one of those items waits for one batch at most.
APPLY_BATCH_ITEMS = 256
PAGE_RECORDS = 500  # records per read (about 20 KiB each at D = 1280: both sums)


class ChangeFollower:
    @classmethod
    def of(
        cls, retriever: Retriever, feed: RedisChangeFeed, metrics: ServiceMetrics
    ) -> ChangeFollower:
        """A follower applying ``feed`` to ``retriever``'s index, under its item locks,
        rebuilding it from its store after a gap."""
        return cls(
            feed=feed,
            applier=retriever.applier,
            item_locks=retriever.item_locks,
            rebuild=retriever.rebuild_from_store,
            metrics=metrics,
        )

    def __init__(
        self,
        *,
        feed: RedisChangeFeed,
        applier: IndexApplier,
        item_locks: StripedLock,
        rebuild: Callable[[], None],
        metrics: ServiceMetrics,
        block_ms: int = BLOCK_MS,
        retry_s: float = RETRY_S,
        page_records: int = PAGE_RECORDS,
    ) -> None:
        self._feed = feed
        self._applier = applier
        self._item_locks = item_locks
        self._rebuild = rebuild  # the index from the store's item states
        self._metrics = metrics
        self._block_ms = block_ms
        self._retry_s = retry_s
        self._page_records = page_records
        self._cursor: FeedCursor | None = None
        # Told the key of each service record (``Store.set_meta``) the feed says changed: the
        # model migration's follower steps at once instead of at its next poll.
        self.on_meta: Callable[[str], None] | None = None
        # Records known to follow the cursor: read them at once instead of waiting on XREAD
        # (true at the start, so an empty feed is caught up with on the first read).
        self._more = True
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lag_records = 0
        self.lag_s = 0.0
        self.last_error: str | None = None

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    @property
    def cursor(self) -> FeedCursor | None:
        """Where the follower stands: every record up to it is applied (None before start)."""
        return self._cursor

    def start(self, cursor: FeedCursor) -> None:
        """Follow from ``cursor``, noted before the index was built from the store."""
        self._cursor = cursor
        self._thread = threading.Thread(target=self._run, name="change-follower", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._block_ms / 1000 + 5)
        self._feed.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            assert self._cursor is not None
            try:
                block_ms = 0 if self._more else self._block_ms
                batch = self._feed.read(self._cursor, block_ms=block_ms, count=self._page_records)
            except ChangeFeedGapError as exc:
                log.warning("%s: rebuilding the index from the store", exc)
                self._rebuild_from_store()
                continue
            except StoreError as exc:
                if self.last_error is None:
                    log.warning("change feed unreachable (%s); retrying", type(exc).__name__)
                self.last_error = type(exc).__name__
                self._stop.wait(self._retry_s)
                continue
            self.last_error = None
            self._apply(batch)

    def _apply(self, batch: FeedBatch) -> None:
        self._apply_items(batch)
        on_meta = self.on_meta
        if on_meta is not None:
            for key in batch.meta_keys:
                try:
                    on_meta(key)
                except Exception:  # the feed must go on whatever the listener does
                    log.exception("the listener of service record %r failed", key)

    def _apply_items(self, batch: FeedBatch) -> None:
        # Each record holds its item's whole state, so of an item's records in the page only
        # the newest needs applying (the older ones would lose to it anyway): skipped.
        newest: dict[str, ItemState] = {}
        for change in batch.changes:
            state = change.state
            held = newest.get(state.item_id)
            if held is None or state.version >= held.version:
                newest[state.item_id] = state
        states = list(newest.values())
        applied = 0
        for start in range(0, len(states), APPLY_BATCH_ITEMS):
            part = states[start : start + APPLY_BATCH_ITEMS]
            with self._item_locks.hold([state.item_id for state in part]):
                applied += sum(self._applier.apply_replicated_batch(part))
        outcome = "noted" if self._applier.shared else "applied"
        if applied:
            self._metrics.changes_applied.labels(outcome=outcome).inc(applied)
        if len(batch.changes) > applied:
            self._metrics.changes_applied.labels(outcome="skipped").inc(
                len(batch.changes) - applied
            )
        if self._caught_up.is_set():  # not the start-up replay of old records
            now = time.time()
            for change in batch.changes:
                delay_s = now - change.committed_ms / 1000
                self._metrics.replication_delay.observe(max(0.0, delay_s))
        self._cursor = batch.cursor
        self._more = batch.behind > 0
        self.lag_records, self.lag_s = batch.behind, batch.behind_s
        self._metrics.replication_lag_records.set(self.lag_records)
        self._metrics.replication_lag_seconds.set(self.lag_s)
        if batch.changes and not self._applier.shared:  # a shared one: its writers count it
            self._metrics.index_items.set(len(self._applier.index))
        # Read to the feed's end as it stood: under a steady stream of writes that is as caught
        # up as a replica gets.
        if batch.behind == 0 and not self._caught_up.is_set():
            self._caught_up.set()
            log.info("caught up with the change feed at %s", batch.cursor.position)

    def _rebuild_from_store(self) -> None:
        try:
            cursor = self._feed.cursor()
            started = time.monotonic()
            self._rebuild()
        except (StoreError, IndexUnavailableError) as exc:
            log.warning("rebuild failed (%s); retrying", type(exc).__name__)
            self._stop.wait(self._retry_s)
            return
        self._cursor = cursor
        self._more = True  # records appended while it rebuilt
        self._metrics.index_rebuilds.inc()
        log.info("index rebuilt from the store in %.2f s", time.monotonic() - started)
