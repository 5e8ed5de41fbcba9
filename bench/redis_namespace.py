"""A throw-away key namespace on a (possibly shared) Redis, for one benchmark run."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import redis

# Keys deleted per DEL while dropping a namespace: large enough to be quick, small enough not to
# block a Redis that others use for long.
_DELETE_BATCH = 500


def redact_url(url: str) -> str:
    """``url`` without its password, fit for a report."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def drop_namespace(client: redis.Redis, namespace: str) -> int:
    """Delete every key under ``namespace:`` (SCAN, then DEL in batches); returns how many."""
    # Escaped so that a namespace holding glob characters matches only itself.
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", namespace) + ":*"
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= _DELETE_BATCH:
            deleted += int(client.delete(*batch))
            batch.clear()
    if batch:
        deleted += int(client.delete(*batch))
    return deleted


def _client(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise RuntimeError(f"no Redis answering at {redact_url(url)}: {exc}") from exc
    return client


def check_redis(url: str) -> None:
    """Raise ``RuntimeError`` naming the URL unless a Redis answers there."""
    _client(url).close()


@dataclass
class ThrowawayNamespace:
    """``name``: the key prefix to use. ``keys_deleted``: set once the namespace is dropped."""

    name: str
    keys_deleted: int | None = None


@contextmanager
def throwaway_namespace(url: str, *, prefix: str = "bench") -> Iterator[ThrowawayNamespace]:
    """A namespace ``<prefix>-<random hex>`` no one else uses on the Redis at ``url``; its keys
    are deleted on exit (stop whatever writes to it first). Fails at once, naming the URL, if
    Redis does not answer, rather than as a service that never gets ready."""
    client = _client(url)
    namespace = ThrowawayNamespace(f"{prefix}-{uuid.uuid4().hex[:12]}")
    try:
        yield namespace
    finally:
        try:
            namespace.keys_deleted = drop_namespace(client, namespace.name)
        finally:
            client.close()
