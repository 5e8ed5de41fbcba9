"""Every indexed item's attributes, in memory beside the centroid index, for search results.

A search result carries its item's attributes. They are kept here rather than read from the
store per search so that searches keep working while the store is unreachable (as the index
itself does) and cost no store round trip. The index's filter terms are not enough: they hold
only top-level scalars, rendered, while a result returns the whole JSON object.

Each entry is the item's attributes as compact JSON text (``attributes_json``: the form the
store keeps and the size limit counts), parsed again for each result that returns it; items
without attributes take no entry. The :class:`~app.index_applier.IndexApplier` updates it on
every path that updates the index (own writes, the change feed, the reconciler, rebuilds), under
the item's lock; index snapshots store each item's text and a restart puts them back
(``replace_texts``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from store.item_attributes import Attributes, attributes_from_json, attributes_json


class ItemAttributeMap:
    """item id -> attributes; thread-safe (items are applied concurrently)."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def set(self, item_id: str, attributes: Mapping[str, Any]) -> None:
        """Keep ``attributes`` for ``item_id`` ({} removes its entry)."""
        text = attributes_json(attributes) if attributes else None
        with self._lock:
            self._put(item_id, text)

    def drop(self, item_id: str) -> None:
        with self._lock:
            self._put(item_id, None)

    def replace(self, pairs: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Replace every entry by ``pairs`` (a rebuild: each item once)."""
        texts = {item_id: attributes_json(attrs) for item_id, attrs in pairs if attrs}
        total = sum(_entry_bytes(i, t) for i, t in texts.items())
        with self._lock:
            self._texts, self._bytes = texts, total

    def replace_texts(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Replace every entry by ``(item id, compact JSON text)`` pairs as :meth:`text_of` gave
        them (an index snapshot; "" for an item without attributes)."""
        texts = {item_id: text for item_id, text in pairs if text}
        total = sum(_entry_bytes(i, t) for i, t in texts.items())
        with self._lock:
            self._texts, self._bytes = texts, total

    def text_of(self, item_id: str) -> str:
        """``item_id``'s attributes as the compact JSON text kept ("" if none)."""
        return self._texts.get(item_id, "")

    def get(self, item_id: str) -> Attributes:
        """A fresh copy of ``item_id``'s attributes ({} if it has none or is not held)."""
        text = self._texts.get(item_id)
        return {} if text is None else attributes_from_json(text)

    def __len__(self) -> int:
        return len(self._texts)

    def memory_bytes(self) -> int:
        """Approximate: the dict's table (``getsizeof``) plus its id and JSON strings."""
        return sys.getsizeof(self._texts) + self._bytes

    def _put(self, item_id: str, text: str | None) -> None:
        old = self._texts.pop(item_id, None)
        if old is not None:
            self._bytes -= _entry_bytes(item_id, old)
        if text is not None:
            self._texts[item_id] = text
            self._bytes += _entry_bytes(item_id, text)


def _entry_bytes(item_id: str, text: str) -> int:
    return sys.getsizeof(item_id) + sys.getsizeof(text)
