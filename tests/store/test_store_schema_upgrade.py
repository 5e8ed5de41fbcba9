"""A store written by the code of schema 1 opens: unit sums computed, attributes empty, the
schema version recorded, nothing else changed.

The fixtures in ``fixtures/`` were written by that code itself (``make_store_v1_fixtures.py``,
run on commit 6356b35): an SQLite file and a Redis namespace as JSON, holding the same items
written by the same calls. Each test first checks that its copy really is of schema 1.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import redis

from store import sqlite_store
from store.change_feed import START, FeedCursor, RedisChangeFeed
from store.embedding_codec import f64_from
from store.errors import StoreError
from store.records import ImageRecord, ItemState, ModelIdentity
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store
from tests import redis_server
from tests.store.conftest import _drop_namespace
from tests.store.redis_key_dump import load_keys
from tests.store.test_store_congruence import IDENTITY as DIM8
from tests.store.test_store_congruence import image

FIXTURES = Path(__file__).parent / "fixtures"
IDENTITY = ModelIdentity(name="fixture-model", version="1", dim=8)
# What make_store_v1_fixtures.py wrote: item → images left (its "gone" item was deleted).
IMAGES_PER_ITEM = {"a:b": 1, "cat": 3, "dog": 2}


@pytest.fixture
def v1_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "store.sqlite3"
    shutil.copy(FIXTURES / "store_v1.sqlite3", path)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        columns = {r[1] for r in conn.execute("PRAGMA table_info(items)")}
        assert columns == {"item_id", "image_count", "embedding_sum", "version"}
    finally:
        conn.close()
    return path


@pytest.fixture
def v1_namespace() -> Iterator[str]:
    namespace = f"test-v1-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_server.REDIS_URL)
    entries = json.loads((FIXTURES / "redis_v1.json").read_text())
    load_keys(client, namespace, entries)
    assert client.get(f"{namespace}:schema") is None
    metas = [k for k in client.scan_iter(match=f"{namespace}:meta:*")]
    assert len(metas) == 3 and all(
        set(client.hkeys(k)) == {b"count", b"sum", b"ver"} for k in metas
    )
    client.close()
    yield namespace
    _drop_namespace(namespace)


def brute_unit_sum(images: list[ImageRecord], item_id: str) -> npt.NDArray[np.float64]:
    held = [r.embedding.astype(np.float64) for r in images if r.item_id == item_id]
    return np.sum([e / np.linalg.norm(e) for e in held], axis=0)


def check_upgraded(s: Store, before: dict[str, tuple[int, bytes, int]]) -> dict[str, ItemState]:
    """The store's items after the upgrade, checked against what the schema-1 layout held
    (``before``: item → count, sum bytes, version) and against its stored embeddings."""
    assert s.schema_version() == 3
    assert s.get_model_identity() == IDENTITY
    images = list(s.iter_images())
    got = {state.item_id: state for state in s.iter_item_states()}
    assert {i: st.count for i, st in got.items()} == IMAGES_PER_ITEM
    for item_id, state in got.items():
        count, raw_sum, version = before[item_id]
        assert (state.count, state.version) == (count, version)  # versions stay
        np.testing.assert_array_equal(state.embedding_sum, f64_from(raw_sum))
        held = [r.embedding.astype(np.float64) for r in images if r.item_id == item_id]
        np.testing.assert_array_equal(state.embedding_sum, np.sum(held, axis=0))
        assert state.unit_sum is not None and state.attributes == {}
        np.testing.assert_allclose(
            state.unit_sum, brute_unit_sum(images, item_id), rtol=1e-12, atol=1e-12
        )
        record = s.get_item(item_id)
        assert record is not None and len(record.image_ids) == count
    return got


def check_writable(s: Store) -> None:
    version = s.last_version()
    patched = s.patch_attributes("cat", {"sku": "1"})
    assert patched.version == version + 1 and patched.attributes == {"sku": "1"}
    record = s.get_item("cat")
    assert record is not None
    after = s.delete_image("cat", record.image_ids[0]).item
    images = list(s.iter_images())
    assert after.unit_sum is not None and after.attributes == {"sku": "1"}
    np.testing.assert_allclose(after.unit_sum, brute_unit_sum(images, "cat"), rtol=1e-12)


def test_a_schema_1_sqlite_file_is_upgraded_on_open(v1_sqlite: Path) -> None:
    conn = sqlite3.connect(v1_sqlite)
    before = {
        str(r[0]): (int(r[1]), bytes(r[2]), int(r[3]))
        for r in conn.execute("SELECT item_id, image_count, embedding_sum, version FROM items")
    }
    conn.close()
    s = SqliteStore(v1_sqlite)
    upgraded = check_upgraded(s, before)
    s.close()
    reopened = SqliteStore(v1_sqlite)  # upgraded once: opens as it is
    again = {st.item_id: st for st in reopened.iter_item_states()}
    for item_id, state in upgraded.items():
        assert again[item_id].unit_sum is not None and state.unit_sum is not None
        np.testing.assert_array_equal(again[item_id].unit_sum, state.unit_sum)
    check_writable(reopened)
    reopened.close()


def test_an_interrupted_sqlite_upgrade_resumes_on_the_next_open(
    v1_sqlite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = sqlite3.connect(v1_sqlite)
    before = {
        str(r[0]): (int(r[1]), bytes(r[2]), int(r[3]))
        for r in conn.execute("SELECT item_id, image_count, embedding_sum, version FROM items")
    }
    conn.close()
    # One item per transaction; the open dies after the first page is committed.
    monkeypatch.setattr(sqlite_store, "PAGE_ROWS", 1)
    pages = 0
    fill_page = SqliteStore._fill_unit_sum_page

    def dying_page(c: sqlite3.Connection, after: str) -> tuple[str | None, int]:
        nonlocal pages
        pages += 1
        if pages == 2:
            raise sqlite3.OperationalError("disk I/O error (planted)")
        return fill_page(c, after)

    monkeypatch.setattr(SqliteStore, "_fill_unit_sum_page", staticmethod(dying_page))
    with pytest.raises(StoreError):
        SqliteStore(v1_sqlite)
    conn = sqlite3.connect(v1_sqlite)
    try:
        # Still schema 1, the first page's item filled, the rest not.
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        filled = conn.execute("SELECT item_id FROM items WHERE unit_sum IS NOT NULL").fetchall()
        assert filled == [(min(IMAGES_PER_ITEM),)]
    finally:
        conn.close()
    monkeypatch.setattr(SqliteStore, "_fill_unit_sum_page", staticmethod(fill_page))
    s = SqliteStore(v1_sqlite)
    check_upgraded(s, before)
    check_writable(s)
    s.close()


def test_a_schema_1_redis_namespace_is_upgraded_on_first_use(v1_namespace: str) -> None:
    client = redis.Redis.from_url(redis_server.REDIS_URL)
    before = {}
    for item_id in IMAGES_PER_ITEM:
        count, raw_sum, ver = client.hmget(
            f"{v1_namespace}:meta:{item_id}", ["count", "sum", "ver"]
        )
        before[item_id] = (int(count), raw_sum, int(ver))
    # The schema-1 change records carry no unit sum and no attributes.
    feed = RedisChangeFeed(redis_server.REDIS_URL, v1_namespace, IDENTITY.dim)
    old = feed.read(FeedCursor(START, 0), block_ms=0).changes
    assert old and all(c.state.attributes == {} for c in old)
    assert all((c.state.unit_sum is None) == (c.state.count > 0) for c in old)
    s = RedisStore(redis_server.REDIS_URL, namespace=v1_namespace)
    s.ping()  # the first call upgrades
    assert client.get(f"{v1_namespace}:schema") == b"3"
    check_upgraded(s, before)
    check_writable(s)
    new = feed.read(FeedCursor(START, 0), block_ms=0).changes[len(old) :]
    assert len(new) == 2 and all(c.state.unit_sum is not None for c in new)
    assert new[0].state.attributes == {"sku": "1"}
    feed.close()
    s.close()
    client.close()


def test_both_backends_upgrade_the_same_items_to_the_same_state(
    v1_sqlite: Path, v1_namespace: str
) -> None:
    lite = SqliteStore(v1_sqlite)
    red = RedisStore(redis_server.REDIS_URL, namespace=v1_namespace)
    a = {st.item_id: st for st in lite.iter_item_states()}
    b = {st.item_id: st for st in red.iter_item_states()}
    assert a.keys() == b.keys() == IMAGES_PER_ITEM.keys()
    for item_id in a:
        assert a[item_id].unit_sum is not None and b[item_id].unit_sum is not None
        np.testing.assert_array_equal(a[item_id].embedding_sum, b[item_id].embedding_sum)
        np.testing.assert_array_equal(a[item_id].unit_sum, b[item_id].unit_sum)
    lite.close()
    red.close()


def test_a_redis_item_written_without_a_unit_sum_after_the_upgrade_gets_one_at_its_next_write(
    v1_namespace: str,
) -> None:
    """A replica still running schema-1 code writes items without ``usum``: reads say None,
    and the next write by this code computes it from the item's embeddings."""
    s = RedisStore(redis_server.REDIS_URL, namespace=v1_namespace)
    s.ping()
    client = redis.Redis.from_url(redis_server.REDIS_URL)
    client.hdel(f"{v1_namespace}:meta:dog", "usum")
    client.close()
    state = s.get_item_state("dog")
    assert state is not None and state.unit_sum is None
    written = s.patch_attributes("dog", {"k": 1})
    images = list(s.iter_images())
    assert written.unit_sum is not None
    np.testing.assert_allclose(written.unit_sum, brute_unit_sum(images, "dog"), rtol=1e-12)
    state = s.get_item_state("dog")
    assert state is not None and state.unit_sum is not None
    s.close()


def test_a_store_of_a_newer_schema_is_refused(v1_sqlite: Path, v1_namespace: str) -> None:
    conn = sqlite3.connect(v1_sqlite)
    conn.execute("UPDATE schema_version SET version = 4")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 4"):
        SqliteStore(v1_sqlite)
    client = redis.Redis.from_url(redis_server.REDIS_URL)
    client.set(f"{v1_namespace}:schema", 4)
    client.close()
    s = RedisStore(redis_server.REDIS_URL, namespace=v1_namespace)
    with pytest.raises(StoreError, match="schema version 4"):
        s.counts()
    s.close()


def test_a_schema_2_store_gains_quarantine_with_nothing_else_changed(tmp_path: Path) -> None:
    """Schema 2's layout is schema 3's without ``images.quarantined`` (SQLite) and with no
    ``quarantine:`` sets (Redis): a store written now and taken back to it opens as schema 3,
    every image counted, every sum as it was."""
    path = tmp_path / "v2.sqlite3"
    namespace = f"test-v2-{uuid.uuid4().hex}"
    stores: list[Store] = [SqliteStore(path), RedisStore(redis_server.REDIS_URL, namespace)]
    try:
        for s in stores:
            s.claim_model_identity(DIM8)
            s.enroll("cat", [image("a"), image("b")])
            s.enroll("dog", [image("c")])
        before = [{x.item_id: x for x in s.iter_item_states()} for s in stores]
        for s in stores:
            s.close()
        conn = sqlite3.connect(path)
        conn.execute("ALTER TABLE images DROP COLUMN quarantined")
        conn.execute("UPDATE schema_version SET version = 2")
        conn.commit()
        conn.close()
        client = redis.Redis.from_url(redis_server.REDIS_URL)
        client.set(f"{namespace}:schema", 2)
        client.close()
        stores = [SqliteStore(path), RedisStore(redis_server.REDIS_URL, namespace)]
        for s, old in zip(stores, before, strict=True):
            after = {x.item_id: x for x in s.iter_item_states()}
            assert s.schema_version() == 3
            assert sorted(after) == sorted(old)
            for item_id, state in old.items():
                assert after[item_id].count == state.count
                assert after[item_id].embedding_sum.tobytes() == state.embedding_sum.tobytes()
            assert not any(i.quarantined for i in s.iter_images())
            cat = s.get_item("cat")
            assert cat is not None and cat.quarantined_image_ids == []
            held = s.set_image_quarantine("cat", cat.image_ids[1], True)
            assert held.count == 1
    finally:
        for s in stores:
            s.close()
        _drop_namespace(namespace)
