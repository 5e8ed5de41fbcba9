"""Store fixtures: every congruence test runs against a real SQLite file and a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store
from tests import redis_server

StoreFactory = Callable[[], Store]


def _drop_namespace(namespace: str) -> None:
    client = redis.Redis.from_url(redis_server.REDIS_URL)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["sqlite", "redis"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens (or re-opens) one fresh store of the parametrised backend; closes them all after."""
    opened: list[Store] = []
    namespace = f"test-{uuid.uuid4().hex}"
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)

    def open_store() -> Store:
        store: Store
        if request.param == "sqlite":
            store = SqliteStore(tmp_path / "db" / "store.sqlite3")
        else:
            store = RedisStore(redis_server.REDIS_URL, namespace=namespace)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()
    if request.param == "redis":
        _drop_namespace(namespace)


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory()
