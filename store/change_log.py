"""The SQLite store's change log: which items each committed write changed, for replay.

Every write transaction that takes a version (``store/item_versions.py``) also inserts one
``changes`` row ``(version, item id, committed_at)``; the newest ``change_log_rows`` are kept.
Versions are handed out one by one under SQLite's write lock, so the log of a store holds
every version after its oldest row: a reader that reflects the store up to version ``v`` reads
the items changed since (each once, with its state *now*, which is at least as new as any
change it missed) and is in step again. When rows after ``v`` were trimmed it must rebuild.

The Redis store's equivalent is its change feed (``store/change_feed.py``), which carries whole
states because other processes tail it; this log serves one process's restart, so an item id
is enough and the rows stay small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from store.errors import StoreError
from store.records import ItemState


class ChangeLogGapError(StoreError):
    """Writes after the reader's version are no longer all in the log: rebuild instead."""


@dataclass(frozen=True)
class ChangedItem:
    item_id: str
    state: ItemState | None  # None: the item is gone


@runtime_checkable
class ChangeLog(Protocol):
    def last_version(self) -> int: ...

    def changed_since(self, version: int) -> list[ChangedItem]:
        """Every item written after ``version`` once, as it is now; ``ChangeLogGapError`` if
        the log lost writes after ``version``, ValueError if ``version`` is in the future."""
        ...
