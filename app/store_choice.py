"""Which store the settings name: Redis when a URL is configured, the embedded SQLite store
otherwise (light to import: the command-line tools open stores without the service)."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings
from store.sqlite_store import SqliteStore
from store.store import Store


def open_store(
    settings: Settings, *, namespace: str | None = None, sqlite_path: Path | None = None
) -> Store:
    """The configured store; ``namespace`` / ``sqlite_path`` name another one beside it (a
    model migration's shadow) instead of the settings' own."""
    if settings.redis_url:
        from store.redis_store import RedisStore

        return RedisStore(
            settings.redis_url,
            namespace=namespace or settings.redis_namespace,
            change_feed_maxlen=settings.change_feed_maxlen,
        )
    return SqliteStore(sqlite_path or settings.sqlite_path)
