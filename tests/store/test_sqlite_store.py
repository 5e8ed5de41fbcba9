"""SQLite-only behaviour: durability settings, schema version, lock and path failures, the
space given back by compaction."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from store.directory_blob_store import DirectoryBlobStore
from store.errors import StoreError, StoreUnavailableError
from store.records import ModelIdentity, NewImage
from store.sqlite_store import SCHEMA_VERSION, SqliteStore

IDENTITY = ModelIdentity("m", "1", 4)


def test_wal_and_full_sync_and_parent_dirs(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.sqlite3"
    store = SqliteStore(path)
    assert path.is_file()
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # 2 = FULL
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
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


def disk_usage(directory: Path) -> int:
    """Bytes allocated to every file and directory under ``directory`` (as ``du`` counts)."""
    return sum(p.lstat().st_blocks * 512 for p in directory.rglob("*"))


def test_deleting_everything_then_compacting_gives_the_space_back(tmp_path: Path) -> None:
    # The figure: disk usage after deleting everything within 10 % of an empty store.
    # N = 200 items of 2 images (512-d embeddings, 4 KiB originals), enrolled the way the
    # retriever does (blobs first, then the store), then all deleted.
    dim, n = 512, 200
    identity = ModelIdentity("m", "1", dim)
    empty_dir = tmp_path / "empty"
    empty = SqliteStore(empty_dir / "store.sqlite3")
    empty.claim_model_identity(identity)
    DirectoryBlobStore(empty_dir / "blobs")
    empty_bytes = disk_usage(empty_dir)

    data_dir = tmp_path / "data"
    store = SqliteStore(data_dir / "store.sqlite3")
    store.claim_model_identity(identity)
    blobs = DirectoryBlobStore(data_dir / "blobs")
    rng = np.random.default_rng(0)
    for i in range(n):
        images = []
        for _ in range(2):
            data = rng.bytes(4096)
            h = hashlib.sha256(data).hexdigest()
            blobs.put(h, data)
            images.append(NewImage(h, rng.normal(size=dim).astype(np.float32)))
        store.enroll(f"item-{i}", images)
    assert blobs.count() == 2 * n and blobs.count_dirs() > n
    full_bytes = disk_usage(data_dir)
    for i in range(n):
        for h in store.delete_item(f"item-{i}").released_hashes:
            blobs.delete(h)
    assert store.counts() == (0, 0)
    assert blobs.count() == 0 and blobs.count_dirs() == 0
    deleted_bytes = disk_usage(data_dir)
    # Without compaction the freed pages and the WAL stay: the check below can fail.
    assert deleted_bytes > 1.1 * empty_bytes
    store.compact()
    compacted_bytes = disk_usage(data_dir)
    print(f"empty {empty_bytes} B, full {full_bytes} B, deleted {deleted_bytes} B, "
          f"compacted {compacted_bytes} B")  # fmt: skip
    assert compacted_bytes <= 1.1 * empty_bytes
    assert store.enroll("again", [NewImage("h", np.ones(dim, np.float32))]).item.count == 1
    store.close()
    empty.close()
