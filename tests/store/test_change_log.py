"""The SQLite change log (replay after an index snapshot) and the stores' instance ids."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import numpy as np
import pytest

from store.change_log import ChangeLogGapError
from store.records import ModelIdentity, NewImage
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from tests.redis_server import REDIS_URL
from tests.store.conftest import _drop_namespace

DIM = 3


def image(n: int) -> NewImage:
    return NewImage(f"{n:064x}", np.full(DIM, n, dtype=np.float32))


def open_store(path: Path, **kw: int) -> SqliteStore:
    store = SqliteStore(path, **kw)
    store.claim_model_identity(ModelIdentity("m", "1", DIM))
    return store


def test_items_changed_since_a_version_once_each_as_they_are_now(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    store.enroll("a", [image(1)])
    start = store.last_version()
    assert store.changed_since(start) == []
    b = store.enroll("b", [image(2)])
    store.enroll("a", [image(3)])
    store.enroll("c", [image(4)])
    store.delete_item("c")
    store.delete_image("b", b.image_ids[0])  # b's last image: b is gone
    changed = {c.item_id: c.state for c in store.changed_since(start)}
    assert sorted(changed) == ["a", "b", "c"]
    assert changed["b"] is None and changed["c"] is None
    a = changed["a"]
    assert a is not None and a.count == 2 and a.version == store.get_item_state("a").version  # type: ignore[union-attr]
    np.testing.assert_array_equal(a.embedding_sum, np.full(DIM, 4.0))
    assert [c.item_id for c in store.changed_since(store.last_version() - 1)] == ["b"]
    with pytest.raises(ValueError, match="ahead"):
        store.changed_since(store.last_version() + 1)
    store.close()


def test_a_write_that_writes_nothing_takes_no_row(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    store.enroll("a", [image(1)])
    before = store.last_version()
    store.enroll("a", [image(1)])  # the same bytes again: nothing written
    assert store.last_version() == before and store.changed_since(before) == []
    store.close()


def test_a_log_trimmed_past_the_reader_is_a_gap(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db", change_log_rows=3)
    for n in range(6):
        store.enroll(f"i{n}", [image(n)])
    last = store.last_version()
    assert len(store.changed_since(last - 3)) == 3  # the newest three are kept
    with pytest.raises(ChangeLogGapError):
        store.changed_since(last - 4)
    rows = sqlite3.connect(tmp_path / "s.db").execute("SELECT COUNT(*) FROM changes").fetchone()
    assert rows == (3,)
    store.close()


def test_a_store_written_before_the_log_replays_nothing_it_cannot_prove(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    store.enroll("a", [image(1)])
    store.enroll("b", [image(2)])
    store.close()
    with sqlite3.connect(tmp_path / "s.db") as c:  # as if written by the code before the log
        c.execute("DELETE FROM changes")
    store = open_store(tmp_path / "s.db")
    with pytest.raises(ChangeLogGapError):
        store.changed_since(0)
    store.enroll("c", [image(3)])
    assert [c.item_id for c in store.changed_since(store.last_version() - 1)] == ["c"]
    store.close()


def test_sqlite_instance_id_is_kept_and_a_restore_makes_another(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    first = store.instance_id()
    assert len(first) == 32
    store.close()
    store = open_store(tmp_path / "s.db")
    assert store.instance_id() == first
    store.backup_to(tmp_path / "backup.db")
    store.restore_from(tmp_path / "backup.db")
    assert store.instance_id() not in (first, "")
    store.close()
    assert SqliteStore(tmp_path / "other.db").instance_id() != first


@pytest.mark.redis
def test_redis_instance_id_is_kept_and_a_restore_or_flush_makes_another() -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    store = RedisStore(REDIS_URL, namespace=namespace)
    try:
        store.claim_model_identity(ModelIdentity("m", "1", DIM))
        first = store.instance_id()
        assert RedisStore(REDIS_URL, namespace=namespace).instance_id() == first
        dump = store.dump_namespace()
        store.restore_namespace(namespace, dump.entries, dump.expire_at_ms)
        restored = store.instance_id()
        assert restored != first
        _drop_namespace(namespace)  # flushed by hand
        assert store.instance_id() not in (first, restored)
    finally:
        store.close()
        _drop_namespace(namespace)
