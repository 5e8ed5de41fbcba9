"""A write whose answer is lost after EXEC raises StoreOutcomeUnknownError, never a plain error,
and redis-py never resends it; ``get_item_state`` reads one item's state on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import redis

from store.errors import StoreOutcomeUnknownError, StoreUnavailableError
from store.records import ModelIdentity, NewImage
from store.redis_store import RedisStore
from tests import redis_server
from tests.live_server import free_port
from tests.redis_server import start_redis_server
from tests.store.conftest import StoreFactory, _drop_namespace
from tests.store.resp_cutting_proxy import RespCuttingProxy

DIM = 4
IDENTITY = ModelIdentity("tiny", "1", DIM)


def _image(seed: int) -> NewImage:
    vec = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return NewImage(f"{seed:064x}", vec)


@pytest.fixture
def stores() -> Iterator[tuple[RedisStore, RedisStore, RespCuttingProxy]]:
    """A store talking through the cutting proxy, one talking to Redis directly, the proxy."""
    shared = urlparse(redis_server.REDIS_URL)
    namespace = f"test-{uuid.uuid4().hex}"
    with RespCuttingProxy(shared.hostname or "127.0.0.1", shared.port or 6379) as proxy:
        cut = RedisStore(proxy.url, namespace)
        direct = RedisStore(redis_server.REDIS_URL, namespace)
        cut.claim_model_identity(IDENTITY)
        yield cut, direct, proxy
        cut.close()
        direct.close()
    _drop_namespace(namespace)


@pytest.mark.redis
def test_an_exec_that_reached_redis_is_committed_and_reported_unknown(
    stores: tuple[RedisStore, RedisStore, RespCuttingProxy],
) -> None:
    cut, direct, proxy = stores
    cut.enroll("a", [_image(1)])
    proxy.cut_next_exec(deliver=True)
    with pytest.raises(StoreOutcomeUnknownError):
        cut.enroll("a", [_image(2)])
    assert proxy.cuts == 1
    state = direct.get_item_state("a")
    assert state is not None and state.count == 2  # committed once, not resent
    assert direct.counts() == (1, 2)
    # The store works again at once through the same proxy and client.
    assert cut.enroll("a", [_image(2)]).created == [False]

    proxy.cut_next_exec(deliver=True)
    with pytest.raises(StoreOutcomeUnknownError):
        cut.delete_item("a")
    assert direct.get_item_state("a") is None and direct.counts() == (0, 0)


@pytest.mark.redis
def test_an_exec_that_never_reached_redis_is_not_committed_and_reported_unknown(
    stores: tuple[RedisStore, RedisStore, RespCuttingProxy],
) -> None:
    cut, direct, proxy = stores
    cut.enroll("a", [_image(1)])
    proxy.cut_next_exec(deliver=False)
    with pytest.raises(StoreOutcomeUnknownError) as caught:
        cut.enroll("a", [_image(2)])
    assert isinstance(caught.value, StoreUnavailableError)  # a 503 wherever it is not mapped
    assert proxy.cuts == 1
    state = direct.get_item_state("a")
    assert state is not None and state.count == 1
    assert direct.counts() == (1, 1)


def test_get_item_state_reads_one_item(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.claim_model_identity(IDENTITY)
    assert store.get_item_state("a") is None
    images = [_image(1), _image(2)]
    outcome = store.enroll("a", images)
    state = store.get_item_state("a")
    assert state is not None and state.item_id == "a" and state.count == 2
    np.testing.assert_array_equal(state.embedding_sum, outcome.item.embedding_sum)
    store.delete_item("a")
    assert store.get_item_state("a") is None


@pytest.mark.redis
def test_a_transaction_redis_discards_is_unavailable_not_unknown(tmp_path: Path) -> None:
    """Out of memory (``maxmemory``, ``noeviction``) Redis refuses the queued writes and discards
    the transaction: known not applied, so a plain 503, not "outcome unknown" and not a 500."""
    port = free_port()
    proc = start_redis_server(port, tmp_path, durable=False)
    url = f"redis://127.0.0.1:{port}/0"
    store = RedisStore(url)
    try:
        store.claim_model_identity(IDENTITY)
        store.enroll("a", [_image(1)])
        redis.Redis.from_url(url).config_set("maxmemory", 1)
        with pytest.raises(StoreUnavailableError) as caught:
            store.enroll("a", [_image(2)])
        assert not isinstance(caught.value, StoreOutcomeUnknownError)
        assert "maxmemory" in str(caught.value)
        state = store.get_item_state("a")
        assert state is not None and state.count == 1
    finally:
        store.close()
        proc.kill()
        proc.wait()
