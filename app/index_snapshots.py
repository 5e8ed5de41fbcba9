"""Index snapshots: a restart loads the last one and replays only the writes after it.

A snapshot holds every item's unit-norm row and version (``app/index_snapshot_file.py``) and
the store position it reflects at least: the store's last version (SQLite: replay the change
log after it, ``store/change_log.py``) or this replica's change-feed cursor (Redis: the follower
resumes from it). It is valid only for the store it was taken from (``Store.instance_id``: a
restored or flushed store is another one), the model whose embeddings it holds, and a store
that has not gone back behind it; anything else, or a change log trimmed past it, falls back
to the full rebuild.

Why replay from the position gives the store's state: the position is read while every item
stripe is held (``StripedLock.hold_all``), and each writer holds its item's stripe from its
store commit through its index update, so every write at or before the position is in the
index by then; the follower's cursor only passes records it has applied. The rows are then
copied out chunk by chunk while writes go on. Every write after the position is replayed after
a restart, and a replayed state is applied when its version is at least the one the snapshot
holds, so an item copied mid-change ends in the store's state too; an item written only before
the position is unchanged while it is copied. Items moved between chunks (a removal moves the
last row) are found again by id.

Snapshots are taken in a background thread, every ``interval_s`` if the index changed, sooner
when ``min_changes`` writes happened since the last one (before the Redis feed, capped at
``change_feed_maxlen``, trims the records a restart would need), and once more at a clean
shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.index_applier import IndexApplier
from app.index_snapshot_file import SnapshotFile, SnapshotFileError, SnapshotWriter, read_snapshot
from app.metrics import ServiceMetrics
from app.striped_lock import StripedLock
from index.centroid_index import CentroidIndex
from index.row_export import RowExport
from store.change_feed import FeedCursor
from store.change_log import ChangeLog
from store.records import ModelIdentity
from store.store import Store

log = logging.getLogger(__name__)

CHUNK_ROWS = 16384  # rows copied per hold of the index's read lock
CHECK_S = 2.0  # how often the thread looks whether a snapshot is due


@dataclass(frozen=True)
class SnapshotPosition:
    version: int  # the store's last version when the snapshot was taken
    feed: FeedCursor | None  # Redis: where this replica's change follower stood


@dataclass(frozen=True)
class LoadedSnapshot:
    position: SnapshotPosition
    items: int
    age_s: float


class IndexSnapshots:
    def __init__(
        self,
        *,
        path: Path,
        store: Store,
        applier: IndexApplier,
        item_locks: StripedLock,
        identity: ModelIdentity,
        metrics: ServiceMetrics,
        interval_s: float,
        min_changes: int,
        feed_cursor: Callable[[], FeedCursor | None] = lambda: None,
    ) -> None:
        self.path = Path(path)
        self._store = store
        self._applier = applier
        self._item_locks = item_locks
        self._identity = identity
        self._metrics = metrics
        self._interval_s = interval_s
        self._min_changes = min_changes
        self.feed_cursor = feed_cursor  # set once the follower exists
        self._taken: tuple[int, int, float] | None = None  # store version, index version, when
        self._retry_at = 0.0  # after a failed snapshot, monotonic time of the next attempt
        self._write_lock = threading.Lock()  # one snapshot at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking -------------------------------------------------------------------------------

    def take(self) -> int:
        """Write a snapshot now; returns the items in it."""
        with self._write_lock:
            started = time.monotonic()
            index = self._applier.index
            index_version = index.version
            with self._item_locks.hold_all():  # no write between its commit and its apply
                position = SnapshotPosition(self._store.last_version(), self.feed_cursor())
            versions = self._applier.version_map()
            attributes = self._applier.attributes
            with SnapshotWriter(self.path, self._identity.dim) as writer:
                for ids, rows, terms in _unique_rows(index):
                    writer.add(
                        ids,
                        rows,
                        [versions.get(i, 0) for i in ids],
                        terms,
                        [attributes.text_of(i) for i in ids],
                    )
                items = writer.commit(self._meta(position))
            elapsed = time.monotonic() - started
            self._taken = (position.version, index_version, time.monotonic())
            self._metrics.index_snapshot_seconds.observe(elapsed)
            self._metrics.index_snapshot_items.set(items)
            log.info(
                "index snapshot of %d items at version %d in %.2f s",
                items,
                position.version,
                elapsed,
            )
            return items

    def start(self, *, take_now: bool) -> None:
        """Take snapshots in the background from now on (the first at once if ``take_now``)."""
        if take_now:
            self._taken = None
        else:
            self._taken = (
                self._store.last_version(),
                self._applier.index.version,
                time.monotonic(),
            )
        self._thread = threading.Thread(target=self._run, name="index-snapshots", daemon=True)
        self._thread.start()

    def close(self, *, final: bool = True) -> None:
        """Stop the thread; with ``final``, take one more snapshot if the index changed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if final and self._due(final=True):
            self._take_logged()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._due(final=False):
                self._take_logged()
            self._stop.wait(min(CHECK_S, self._interval_s))

    def _due(self, *, final: bool) -> bool:
        if not final and time.monotonic() < self._retry_at:
            return False
        if self._taken is None:
            return True
        store_version, index_version, when = self._taken
        if self._applier.index.version == index_version:
            return False
        if final or time.monotonic() - when >= self._interval_s:
            return True
        try:
            return self._store.last_version() - store_version >= self._min_changes
        except Exception:
            return False  # the store is down: the next check will tell

    def _take_logged(self) -> None:
        try:
            self.take()
        except Exception as exc:
            self._metrics.index_snapshot_failures.inc()
            log.warning("index snapshot failed: %s: %s", type(exc).__name__, exc)
            self._retry_at = time.monotonic() + self._interval_s

    def _meta(self, position: SnapshotPosition) -> dict[str, Any]:
        identity = self._identity
        return {
            "backend": self._store.backend,
            "store_instance": self._store.instance_id(),
            "model": {"name": identity.name, "version": identity.version, "dim": identity.dim},
            "version": position.version,
            "feed": (
                None
                if position.feed is None
                else {"position": position.feed.position, "seen": position.feed.seen}
            ),
            "taken_at": time.time(),
        }

    # -- loading ------------------------------------------------------------------------------

    def load(self) -> LoadedSnapshot | None:
        """Put the last snapshot in the index if it fits this store and model (None: it does
        not, or there is none; the reason is logged). The caller replays what came after."""
        started = time.monotonic()
        try:
            snap = read_snapshot(self.path)
            position = self._check(snap)
        except SnapshotFileError as exc:
            log.info("no index snapshot loaded: %s", exc)
            return None
        self._applier.load(snap.ids, snap.versions, snap.rows, snap.terms)
        self._applier.attributes.replace_texts(zip(snap.ids, snap.attributes, strict=True))
        self._metrics.index_items.set(len(snap.ids))
        log.info(
            "index snapshot of %d items loaded in %.2f s", len(snap.ids), time.monotonic() - started
        )
        return LoadedSnapshot(position, len(snap.ids), time.time() - float(snap.meta["taken_at"]))

    def _check(self, snap: SnapshotFile) -> SnapshotPosition:
        meta, identity = snap.meta, self._identity
        model = meta.get("model", {})
        if (model.get("name"), model.get("version"), model.get("dim")) != (
            identity.name,
            identity.version,
            identity.dim,
        ):
            raise SnapshotFileError(f"it holds model {model}, the service runs {identity}")
        if meta.get("backend") != self._store.backend:
            raise SnapshotFileError(f"it was taken from a {meta.get('backend')} store")
        if meta.get("store_instance") != self._store.instance_id():
            raise SnapshotFileError("it was taken from another store (or before a restore)")
        version = int(meta["version"])
        if version > self._store.last_version():
            raise SnapshotFileError(f"the store went back behind it (version {version})")
        feed = meta.get("feed")
        cursor = None if feed is None else FeedCursor(str(feed["position"]), int(feed["seen"]))
        return SnapshotPosition(version, cursor)


def _unique_rows(
    index: CentroidIndex,
) -> Iterator[tuple[list[str], npt.NDArray[np.float32], list[frozenset[str]]]]:
    """Every item of ``index`` once with its row and terms: in chunks from a ``RowExport``
    index (then any item a concurrent removal moved past the copy, one by one), else item by
    item."""
    seen: set[str] = set()
    if isinstance(index, RowExport):
        for ids, rows, terms in index.iter_row_chunks(CHUNK_ROWS):
            keep = [j for j, i in enumerate(ids) if i not in seen]
            seen.update(ids)
            if len(keep) == len(ids):
                yield ids, rows, terms
            elif keep:
                yield [ids[j] for j in keep], rows[keep], [terms[j] for j in keep]
    missing = [i for i in index.item_ids() if i not in seen]
    for start in range(0, len(missing), CHUNK_ROWS):
        found = [
            (i, r, index.terms_of(i) or frozenset())
            for i in missing[start : start + CHUNK_ROWS]
            if (r := index.get(i)) is not None
        ]
        if found:
            yield (
                [i for i, _, _ in found],
                np.stack([r for _, r, _ in found]),
                [t for _, _, t in found],
            )


def replay_change_log(
    log_: ChangeLog, applier: IndexApplier, item_locks: StripedLock, version: int
) -> int:
    """Apply every item the store changed after ``version`` as it is now (an SQLite store's
    restart from a snapshot); returns how many. ``ChangeLogGapError`` if the log lost some."""
    changed = log_.changed_since(version)
    for change in changed:
        with item_locks.hold([change.item_id]):
            if change.state is None:
                applier.drop(change.item_id)
            else:
                applier.apply(change.state)
    return len(changed)
