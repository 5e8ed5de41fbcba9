"""The Redis store's change feed, read by replicas: every committed write's item state, in order.

Each write appends one record to the ``changes`` stream in its own transaction
(``store/redis_store.py``): the item id, its version and its state after the write. A replica
notes :meth:`RedisChangeFeed.cursor` *before* it pages through the item states to build its
index, then reads every record after that position and applies those whose version is newer
than what it holds. A write that committed before the position is in the pages; one that
committed after is in the feed (and maybe in the pages too, which the version comparison
resolves): no gap, no double apply.

A service-level record changed through ``Store.set_meta`` (the model migration's record:
``store/store_meta.py``) appends a record of its own, ``meta`` = its key, in the same
transaction: replicas learn of a switch or a rollback from the feed, as of any write, instead
of waiting for their next poll of the record. Such records carry no item state; a batch gives
their keys apart (``FeedBatch.meta_keys``).

The stream is capped (``XADD MAXLEN ~``) and trimmed by compaction, so a replica that fell too
far behind cannot catch up from it: :meth:`read` raises ``ChangeFeedGapError`` when records
after its position were trimmed, and the replica rebuilds from the store instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import redis

from store.embedding_codec import f64_from
from store.errors import StoreError, StoreUnavailableError
from store.item_attributes import attributes_from_json
from store.records import ItemState

START = "0-0"  # the position before any record
# The field of a record that says a service record (``Store.set_meta``) changed: its key.
META_FIELD = b"meta"

T = TypeVar("T")


class ChangeFeedGapError(StoreError):
    """Records after the reader's position were trimmed: it must rebuild from the store."""


@dataclass(frozen=True)
class Change:
    position: str  # the record's stream id, "<ms>-<seq>": ordered as the writes committed
    # The item's whole state after the write, attributes and unit sum included; count 0: the
    # item was deleted (its sums are then zero vectors, its attributes {}). A record of a
    # writer of schema 1 has no unit sum (None) and no attributes ({}).
    state: ItemState

    @property
    def committed_ms(self) -> int:
        """When the record was appended (the Redis server's clock), Unix ms."""
        return int(self.position.split("-", 1)[0])


@dataclass(frozen=True)
class FeedCursor:
    """Where a reader stands: the last record it has seen, and how many records had ever been
    appended up to it (so it can tell whether records it has not seen were trimmed)."""

    position: str
    seen: int


@dataclass(frozen=True)
class FeedStatus:
    last_position: str  # the newest record's id (START if none ever)
    entries_added: int  # records ever appended (trimmed ones included)
    length: int  # records kept
    first_position: str | None  # the oldest record kept, None if none

    def cursor(self) -> FeedCursor:
        return FeedCursor(self.last_position, self.entries_added)

    def trimmed_past(self, cursor: FeedCursor) -> bool:
        """Were records after ``cursor`` trimmed? Trimming drops the oldest first, so only if
        every record kept is after it and fewer are kept than were appended since."""
        if self.first_position is not None and position_key(self.first_position) <= position_key(
            cursor.position
        ):
            return False
        return self.entries_added - cursor.seen > self.length


@dataclass(frozen=True)
class FeedBatch:
    changes: list[Change]  # the item records, oldest first
    cursor: FeedCursor  # after the last record read, item or meta (the reader's if none)
    status: FeedStatus  # the feed as the records were read
    meta_keys: tuple[str, ...] = ()  # the keys of the service records changed, in order

    @property
    def behind(self) -> int:
        """Records appended that the reader has still not seen."""
        return max(0, self.status.entries_added - self.cursor.seen)

    @property
    def behind_s(self) -> float:
        """How much older the reader's last record is than the feed's newest (0 if none)."""
        if not self.behind:
            return 0.0
        newest, _ = position_key(self.status.last_position)
        seen, _ = position_key(self.cursor.position)
        return max(0.0, (newest - seen) / 1000)


NO_FEED = FeedStatus(START, 0, 0, None)  # the status of a feed nothing was ever appended to


def position_key(position: str) -> tuple[int, int]:
    """A stream id as a sortable pair."""
    ms, _, seq = position.partition("-")
    return int(ms), int(seq or 0)


class RedisChangeFeed:
    """Reads one namespace's change feed on its own connection (``XREAD BLOCK`` holds it)."""

    def __init__(self, url: str, namespace: str, dim: int, socket_timeout_s: float = 5.0) -> None:
        self._key = f"{namespace}:changes"
        self._dim = dim
        self._client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )

    def status(self) -> FeedStatus:
        def read() -> FeedStatus:
            try:
                return _status(self._client.xinfo_stream(self._key))
            except redis.ResponseError as exc:
                if _no_stream(exc):
                    return NO_FEED
                raise

        return self._call(read)

    def cursor(self) -> FeedCursor:
        """Where a reader that has seen every record so far stands."""
        return self.status().cursor()

    def read(self, cursor: FeedCursor, *, block_ms: int, count: int = 500) -> FeedBatch:
        """Up to ``count`` records after ``cursor``, oldest first, waiting up to ``block_ms`` for
        the first; the cursor after them, and the feed's status as they were read. Raises
        ``ChangeFeedGapError`` if records after ``cursor`` were trimmed."""

        def wait_and_read() -> tuple[FeedStatus, list[Any]]:
            if block_ms > 0:
                self._client.xread({self._key: cursor.position}, count=1, block=block_ms)
            # The status and the records as of one moment, so no trim falls between them.
            with self._client.pipeline(transaction=True) as pipe:
                pipe.xinfo_stream(self._key)
                pipe.xrange(self._key, min=f"({cursor.position}", count=count)
                try:
                    info, entries = pipe.execute()
                except redis.ResponseError as exc:
                    if _no_stream(exc):
                        return NO_FEED, []
                    raise
            return _status(info), entries

        status, entries = self._call(wait_and_read)
        if status.trimmed_past(cursor):
            raise ChangeFeedGapError(f"change records after {cursor.position} were trimmed")
        changes = [self._change(_text(i), f) for i, f in entries if META_FIELD not in f]
        meta_keys = tuple(_text(f[META_FIELD]) for _, f in entries if META_FIELD in f)
        after = FeedCursor(_text(entries[-1][0]), cursor.seen + len(entries)) if entries else cursor
        return FeedBatch(changes, after, status, meta_keys)

    def close(self) -> None:
        self._client.close()

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except redis.ResponseError as exc:
            raise StoreError(f"reading the change feed: {exc}") from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailableError(f"Redis unreachable: {exc}") from exc

    def _change(self, position: str, fields: dict[bytes, bytes]) -> Change:
        item_id = _text(fields[b"item"])
        count = int(fields[b"count"])
        raw_sum = fields.get(b"sum")
        embedding_sum = f64_from(raw_sum) if raw_sum is not None else np.zeros(self._dim)
        raw_usum = fields.get(b"usum")
        if raw_usum is not None:
            unit_sum: np.ndarray | None = f64_from(raw_usum)
        else:
            unit_sum = np.zeros(self._dim) if count == 0 else None
        state = ItemState(
            item_id,
            count,
            embedding_sum,
            int(fields[b"ver"]),
            attributes=attributes_from_json(fields.get(b"attrs")),
            unit_sum=unit_sum,
        )
        return Change(position, state)


def _no_stream(exc: redis.ResponseError) -> bool:
    """Redis's answer to XINFO on a key never written: nothing was ever appended."""
    return "no such key" in str(exc).lower()


def _status(info: dict[Any, Any]) -> FeedStatus:
    first = info.get("first-entry")
    return FeedStatus(
        _text(info.get("last-generated-id", START)),
        int(info.get("entries-added", 0)),
        int(info.get("length", 0)),
        _text(first[0]) if first else None,
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
