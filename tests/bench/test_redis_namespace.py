"""The bench's throw-away Redis namespace: unique, dropped on exit (also after an error), and
nothing outside it touched; URLs in reports carry no password."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from bench.redis_namespace import (
    check_redis,
    drop_namespace,
    redact_url,
    throwaway_namespace,
)
from tests.redis_server import REDIS_URL


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(REDIS_URL)
    yield c
    c.close()


pytestmark = pytest.mark.redis


def test_drop_deletes_only_that_namespace(client: redis.Redis) -> None:
    run = uuid.uuid4().hex
    # A glob character in the name must not widen the match; neighbours sharing a prefix stay.
    target = f"t-{run}-a*"
    keep = [f"t-{run}-ab:k", f"t-{run}-a:k", f"t-{run}-a*x:k", f"t-{run}-a*"]
    mine = [f"{target}:{i}" for i in range(1203)]  # more than one DEL batch
    client.mset(dict.fromkeys(mine + keep, b"1"))
    try:
        assert drop_namespace(client, target) == len(mine)
        assert client.exists(*mine) == 0
        assert client.exists(*keep) == len(keep)
    finally:
        client.delete(*mine, *keep)


def test_throwaway_namespace_is_fresh_and_dropped_even_after_an_error(
    client: redis.Redis,
) -> None:
    with pytest.raises(RuntimeError, match="boom"), throwaway_namespace(REDIS_URL) as ns:
        assert ns.name.startswith("bench-")
        assert list(client.scan_iter(match=f"{ns.name}:*")) == []
        client.set(f"{ns.name}:model", b"x")
        client.hset(f"{ns.name}:counts", "items", 1)
        raise RuntimeError("boom")
    assert ns.keys_deleted == 2
    assert list(client.scan_iter(match=f"{ns.name}:*")) == []
    with throwaway_namespace(REDIS_URL) as other:
        assert other.name != ns.name
    assert other.keys_deleted == 0


def test_unreachable_redis_fails_at_once_naming_it_without_password() -> None:
    url = "redis://:s3cret@127.0.0.1:1/0"
    with pytest.raises(RuntimeError, match=r"no Redis answering at redis://:\*\*\*@127.0.0.1:1/0"):
        check_redis(url)
    with pytest.raises(RuntimeError) as raised, throwaway_namespace(url):
        pass
    assert "s3cret" not in str(raised.value)


def test_redact_url() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("redis://user:pw@h:6380/1") == "redis://user:***@h:6380/1"
    assert redact_url("rediss://:pw@h/0") == "rediss://:***@h/0"
