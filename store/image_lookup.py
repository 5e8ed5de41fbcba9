"""Which bytes an image is: its content hash, read by item and image id (one indexed read).

The ``Store`` protocol has no such read yet, and the two backends are being changed by others
as this is written, so each backend's read is here, beside the protocol, through the backend's
own read helpers (SQLite: the ``images`` table's unique ``image_id``; Redis: the item's
``hashof`` hash). It belongs in ``Store`` as ``image_content_hash``; until then this is the one
place that knows the two layouts for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from store.errors import ImageNotFoundError, ItemNotFoundError
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store


def image_content_hash(store: Store, item_id: str, image_id: str) -> str:
    """The content hash of ``image_id`` of ``item_id``; ``ItemNotFoundError`` or
    ``ImageNotFoundError`` when the store holds no such image (``StoreUnavailableError`` when it
    cannot be read)."""
    for backend, read in _READS.items():
        if isinstance(store, backend):
            found = read(store, item_id, image_id)
            break
    else:
        raise TypeError(f"no image lookup for a {store.backend} store")
    if found is not None:
        return found
    if store.get_item(item_id) is None:
        raise ItemNotFoundError(f"item {item_id!r} not found")
    raise ImageNotFoundError(f"item {item_id!r} has no image {image_id!r}")


def _sqlite(store: SqliteStore, item_id: str, image_id: str) -> str | None:
    rows = store._fetch_all(
        "SELECT content_hash FROM images WHERE image_id = ? AND item_id = ?", (image_id, item_id)
    )
    return str(rows[0][0]) if rows else None


def _redis(store: RedisStore, item_id: str, image_id: str) -> str | None:
    key = store._key("hashof", item_id)
    raw = store._call(lambda: store._client.hget(key, image_id))
    return raw.decode() if isinstance(raw, bytes) else raw


_READS: Mapping[type[Any], Callable[[Any, str, str], str | None]] = {
    SqliteStore: _sqlite,
    RedisStore: _redis,
}
