"""Redis-only behaviour: fast failure when unreachable, namespaces, persistence report."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from store.errors import StoreUnavailableError
from store.records import ModelIdentity, NewImage
from store.redis_store import RedisStore
from tests.redis_server import REDIS_URL
from tests.store.conftest import _drop_namespace

pytestmark = pytest.mark.redis


def closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for ns in made:
        _drop_namespace(ns)


def test_unreachable_redis_fails_fast_with_store_unavailable() -> None:
    store = RedisStore(f"redis://127.0.0.1:{closed_port()}/0", namespace="x")
    calls = [
        store.ping,
        store.counts,
        lambda: store.enroll("a", [NewImage("h", np.ones(4, np.float32))]),
        lambda: store.list_items(10, None),
        lambda: store.delete_item("a"),
    ]
    for call in calls:
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            call()
        assert time.monotonic() - start < 2.5


def test_namespaces_do_not_see_each_other(namespaces: list[str]) -> None:
    namespaces += [f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"]
    one, two = (RedisStore(REDIS_URL, namespace=ns) for ns in namespaces)
    one.claim_model_identity(ModelIdentity("m", "1", 4))
    one.enroll("cat", [NewImage("h", np.ones(4, np.float32))])
    assert two.counts() == (0, 0) and two.get_item("cat") is None
    assert two.get_model_identity() is None
    client = redis.Redis.from_url(REDIS_URL)
    keys = [k.decode() for k in client.scan_iter(match=f"{namespaces[0]}:*")]
    assert keys and all(k.startswith(namespaces[0] + ":") for k in keys)
    assert not list(client.scan_iter(match=f"{namespaces[1]}:*"))
    client.close()


def test_persistence_info_reports_the_server_config() -> None:
    info = RedisStore(REDIS_URL).persistence_info()
    assert set(info) == {"appendonly", "appendfsync"}
    assert info["appendonly"] in {"yes", "no", "unknown"}
    assert info["appendfsync"] in {"always", "everysec", "no", "unknown"}
