"""Redis-only behaviour: fast failure when unreachable, namespaces, persistence report, and the
AOF rewrite of the shipped deploy/redis.conf."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from store.errors import StoreUnavailableError
from store.records import ModelIdentity, NewImage
from store.redis_store import RedisStore
from tests.live_server import free_port
from tests.redis_server import REDIS_URL, answers
from tests.store.conftest import _drop_namespace

pytestmark = pytest.mark.redis

REDIS_CONF = Path(__file__).resolve().parents[2] / "deploy" / "redis.conf"


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


@pytest.fixture
def shipped_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A private redis-server run with the shipped deploy/redis.conf (AOF on, everysec), on its
    own port and directory; yields its URL and its AOF directory."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", str(REDIS_CONF), "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not answers(url):
        assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    try:
        yield url, tmp_path / "appendonlydir"
    finally:
        proc.kill()
        proc.wait()


def aof_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir())


def test_compact_rewrites_the_shipped_configs_aof_back_to_an_empty_stores_size(
    shipped_redis: tuple[str, Path],
) -> None:
    url, aof_dir = shipped_redis
    # Retention 0: compaction drops every change record (by default it keeps the last ones).
    store = RedisStore(url, namespace="cr", change_feed_retention_s=0)
    assert store.persistence_info() == {"appendonly": "yes", "appendfsync": "everysec"}
    store.claim_model_identity(ModelIdentity("m", "1", 512))
    # The empty store of reference has been written once: its ``counts`` hash exists (at 0).
    store.enroll("first", [NewImage("first", np.ones(512, np.float32))])
    store.delete_item("first")
    store.compact()
    empty = aof_bytes(aof_dir)
    rng = np.random.default_rng(0)
    for i in range(200):
        images = [NewImage(f"{i}-{j}", rng.normal(size=512).astype(np.float32)) for j in range(2)]
        store.enroll(f"item-{i}", images)
    for i in range(200):
        store.delete_item(f"item-{i}")
    assert store.counts() == (0, 0)
    # The counters and the change feed (400 records until compaction) are all that is left.
    assert store.namespace_keys() == [
        "cr:changes",
        "cr:counts",
        "cr:model",
        "cr:schema",
        "cr:version",
    ]
    grown = aof_bytes(aof_dir)
    assert grown > 100 * empty  # every command since start is still in the AOF
    # What the store reports is the server's own figure of the same files.
    reported = store.disk_bytes()
    assert reported is not None and 0.9 * grown <= reported <= 1.1 * grown, (reported, grown)
    store.compact()
    # Redis unlinks the old AOF files in a background thread once the rewrite is done.
    deadline = time.monotonic() + 10
    while aof_bytes(aof_dir) > 1.1 * empty and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"AOF: empty {empty} B, after deletes {grown} B, compacted {aof_bytes(aof_dir)} B")
    assert aof_bytes(aof_dir) <= 1.1 * empty, (empty, grown, aof_bytes(aof_dir))
    assert store.get_model_identity() == ModelIdentity("m", "1", 512)
    assert (store.disk_bytes() or 0) <= 1.1 * empty
    store.close()


def test_compact_is_a_no_op_without_an_aof() -> None:
    store = RedisStore(REDIS_URL, namespace=f"test-{uuid.uuid4().hex}")
    if store.disk_bytes() is not None:
        pytest.skip("the shared test Redis keeps an AOF here")
    store.compact()
    store.ping()


def test_an_image_removed_between_a_writes_reads_makes_it_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer deletes an image after a delete's WATCHed read of the item's order and
    before its read of the embeddings: the delete reads and plans again (it raised a
    TypeError on the missing embedding, a 500, before)."""
    namespace = f"test-{uuid.uuid4().hex}"
    store, other = RedisStore(REDIS_URL, namespace), RedisStore(REDIS_URL, namespace)
    try:
        store.claim_model_identity(ModelIdentity("m", "1", 2))
        images = [NewImage(h * 64, np.array(v, np.float32)) for h, v in (("a", [1, 0]),
                  ("b", [0, 1]), ("c", [1, 1]))]  # fmt: skip
        ids = store.enroll("cat", images).image_ids
        read_order = RedisStore._held_hashes
        interleaved: list[str] = []

        def order_then_other_writer(self: RedisStore, pipe: object, item_id: str) -> object:
            held = read_order(self, pipe, item_id)
            if self is store and not interleaved:
                interleaved.append(item_id)
                other.delete_image("cat", ids[1])
            return held

        monkeypatch.setattr(RedisStore, "_held_hashes", order_then_other_writer)
        out = store.delete_image("cat", ids[0])
        assert interleaved == ["cat"]
        assert out.item.count == 1 and out.item.embedding_sum.tolist() == [1.0, 1.0]
        record = store.get_item("cat")
        assert record is not None and record.image_ids == [ids[2]]
    finally:
        store.close()
        other.close()
        _drop_namespace(namespace)
