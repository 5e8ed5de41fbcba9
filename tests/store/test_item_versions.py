"""Item versions on both backends: every write takes a larger one, deletions included, and the
states the store reads back carry the version their write answered with."""

from __future__ import annotations

import contextlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from store.errors import ItemNotFoundError
from store.records import ItemState
from store.sqlite_store import SqliteStore
from store.store import Store
from tests.store.conftest import StoreFactory
from tests.store.test_store_congruence import IDENTITY, image


@pytest.fixture
def claimed(store: Store) -> Store:
    store.claim_model_identity(IDENTITY)
    return store


def stored_versions(store: Store) -> dict[str, int]:
    return {s.item_id: s.version for s in store.iter_item_states()}


def test_every_write_takes_a_larger_version_and_reads_return_it(claimed: Store) -> None:
    a1 = claimed.enroll("a", [image("1")]).item.version
    b1 = claimed.enroll("b", [image("2")]).item.version
    a2 = claimed.enroll("a", [image("3"), image("4")])
    gone = claimed.delete_image("a", a2.image_ids[0]).item.version
    assert 0 < a1 < b1 < a2.item.version < gone
    assert stored_versions(claimed) == {"a": gone, "b": b1}
    assert claimed.last_version() == gone
    state = claimed.get_item_state("a")
    assert state is not None and state.version == gone


def test_bytes_already_held_write_nothing_and_answer_with_the_stored_version(
    claimed: Store,
) -> None:
    assert claimed.last_version() == 0
    first = claimed.enroll("a", [image("1")])
    again = claimed.enroll("a", [image("1")])
    assert again.item.version == first.item.version
    assert claimed.enroll("b", [image("2")]).item.version == first.item.version + 1


def test_an_item_deleted_and_enrolled_again_is_newer_than_its_deletion(claimed: Store) -> None:
    claimed.enroll("a", [image("1")])
    deleted = claimed.delete_item("a").item
    assert deleted.count == 0
    again = claimed.enroll("a", [image("1")]).item
    assert again.version > deleted.version


def test_versions_survive_close_and_reopen(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.claim_model_identity(IDENTITY)
    last = store.enroll("a", [image("1")]).item.version
    store.close()
    reopened = store_factory()
    assert stored_versions(reopened) == {"a": last}
    assert reopened.enroll("b", [image("2")]).item.version > last


def test_concurrent_writers_on_their_own_connections_get_distinct_versions_in_commit_order(
    store_factory: StoreFactory,
) -> None:
    """Eight connections (as replicas) write one item: each answer's version is unique and the
    item ends at the largest, the state of the write that committed last."""
    stores = [store_factory() for _ in range(8)]
    stores[0].claim_model_identity(IDENTITY)

    def write(i: int) -> ItemState:
        return stores[i].enroll("shared", [image(f"x{i}")]).item

    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(write, range(8)))
    versions = sorted(s.version for s in states)
    assert len(set(versions)) == 8
    last = max(states, key=lambda s: s.version)
    assert last.count == 8  # the last to commit saw every other image
    final = stores[0].get_item_state("shared")
    assert final is not None and final.version == last.version
    np.testing.assert_array_equal(final.embedding_sum, last.embedding_sum)


def test_a_sqlite_store_written_before_versions_opens_with_version_0(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    store = SqliteStore(path)
    store.claim_model_identity(IDENTITY)
    store.enroll("a", [image("1")])
    store.close()
    # The items table as it was before versions (schema 1): no version column, no counter.
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE old_items (item_id TEXT PRIMARY KEY, image_count INTEGER NOT NULL,"
        " embedding_sum BLOB NOT NULL);"
        " INSERT INTO old_items SELECT item_id, image_count, embedding_sum FROM items;"
        " DROP TABLE items; ALTER TABLE old_items RENAME TO items; DROP TABLE write_counter;"
        " UPDATE schema_version SET version = 1;"
    )
    conn.close()
    reopened = SqliteStore(path)
    assert stored_versions(reopened) == {"a": 0}
    assert reopened.enroll("a", [image("2")]).item.version == 1
    reopened.close()


def test_enrollments_racing_deletions_of_one_item_only_ever_fail_as_not_found(
    store_factory: StoreFactory,
) -> None:
    """Four connections enroll the same few images into one item and delete it, over and over:
    an enrollment reading the item while another creates it retries instead of failing."""
    stores = [store_factory() for _ in range(4)]
    stores[0].claim_model_identity(IDENTITY)
    versions: list[int] = []

    def churn(i: int) -> None:
        for n in range(150):
            if (n + i) % 3 == 2:
                with contextlib.suppress(ItemNotFoundError):
                    versions.append(stores[i].delete_item("hot").item.version)
            else:
                versions.append(stores[i].enroll("hot", [image(f"shared-{n % 3}")]).item.version)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(churn, range(4)))
    written = [v for v in versions if v]  # held bytes answer with the stored version
    assert len(written) > 40
    final = stores[0].get_item_state("hot")
    assert final is None or final.version == max(written)
