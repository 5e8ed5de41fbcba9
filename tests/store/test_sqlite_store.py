"""SQLite-only behaviour: durability settings, schema version, lock and path failures."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from store.errors import StoreError, StoreUnavailableError
from store.records import ModelIdentity, NewImage
from store.sqlite_store import SqliteStore

IDENTITY = ModelIdentity("m", "1", 4)


def test_wal_and_full_sync_and_parent_dirs(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.sqlite3"
    store = SqliteStore(path)
    assert path.is_file()
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # 2 = FULL
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    other.close()
    store.close()


def test_a_write_locked_database_is_unavailable_not_hung(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path, busy_timeout_s=0.2)
    store.claim_model_identity(IDENTITY)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        store.enroll("x", [NewImage("h", np.ones(4, np.float32))])
    assert time.monotonic() - start < 3
    blocker.execute("ROLLBACK")
    blocker.close()
    assert store.enroll("x", [NewImage("h", np.ones(4, np.float32))]).item.count == 1
    store.close()


def test_an_unusable_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreUnavailableError):
        SqliteStore(tmp_path / "file" / "store.sqlite3")


def test_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    store.close()
    with pytest.raises(StoreUnavailableError):
        store.ping()


def test_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    SqliteStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="99"):
        SqliteStore(path)
