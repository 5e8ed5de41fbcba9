"""Keeps this replica's index in step with writes made through any replica sharing the Redis store.

A background thread tails the store's change feed (``store/change_feed.py``) from the cursor
noted before the index was built, and applies each record's item state through the
:class:`~app.index_applier.IndexApplier`, under that item's lock: a record older than what the
index holds (this replica's own write, already applied; a state the start-up pages already
had) is skipped. When the feed was trimmed past this replica's position, it rebuilds the index
from the store (noting a new cursor first, as at start-up). While Redis is unreachable it
retries every ``retry_s``, and the index keeps serving what it has.

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

from app.index_applier import IndexApplier
from app.metrics import ServiceMetrics
from app.striped_lock import StripedLock
from index.index_errors import IndexUnavailableError
from store.change_feed import ChangeFeedGapError, FeedBatch, FeedCursor, RedisChangeFeed
from store.errors import StoreError

log = logging.getLogger(__name__)

BLOCK_MS = 500  # one blocking read waits at most this long for the next record
RETRY_S = 0.5  # after a failed read


class ChangeFollower:
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
    ) -> None:
        self._feed = feed
        self._applier = applier
        self._item_locks = item_locks
        self._rebuild = rebuild  # the index from the store's item states
        self._metrics = metrics
        self._block_ms = block_ms
        self._retry_s = retry_s
        self._cursor: FeedCursor | None = None
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
                batch = self._feed.read(self._cursor, block_ms=self._block_ms)
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
        for change in batch.changes:
            state = change.state
            with self._item_locks.hold([state.item_id]):
                applied = self._applier.apply_replicated(state)
            outcome = "skipped" if not applied else "noted" if self._applier.shared else "applied"
            self._metrics.changes_applied.labels(outcome=outcome).inc()
            if self._caught_up.is_set():  # not the start-up replay of old records
                delay_s = time.time() - change.committed_ms / 1000
                self._metrics.replication_delay.observe(max(0.0, delay_s))
        self._cursor = batch.cursor
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
        self._metrics.index_rebuilds.inc()
        log.info("index rebuilt from the store in %.2f s", time.monotonic() - started)
