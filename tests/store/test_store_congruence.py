"""One behaviour, two backends: every test here runs on SQLite and on Redis."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from store.errors import (
    ImageNotFoundError,
    ItemNotFoundError,
    ModelMismatchError,
    StoreError,
)
from store.records import ItemState, ModelIdentity, NewImage
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store
from tests.store.conftest import StoreFactory

DIM = 8
IDENTITY = ModelIdentity(name="test-model", version="1", dim=DIM)


def image(tag: str, values: list[float] | None = None, dim: int = DIM) -> NewImage:
    """An image whose hash is derived from ``tag`` and whose embedding is ``values``."""
    rng = np.random.default_rng(int(hashlib.sha256(tag.encode()).hexdigest()[:8], 16))
    emb = np.asarray(values, np.float32) if values is not None else rng.normal(size=dim)
    return NewImage(hashlib.sha256(tag.encode()).hexdigest(), emb.astype(np.float32))


def states(store: Store) -> dict[str, ItemState]:
    return {s.item_id: s for s in store.iter_item_states()}


@pytest.fixture
def claimed(store: Store) -> Store:
    store.claim_model_identity(IDENTITY)
    return store


def test_enroll_creates_item_with_exact_float64_sum(claimed: Store) -> None:
    imgs = [image(t) for t in ("a", "b", "c")]
    out = claimed.enroll("cat", imgs)
    expected = np.zeros(DIM)
    for i in imgs:
        expected += i.embedding.astype(np.float64)
    assert out.item.item_id == "cat" and out.item.count == 3
    assert out.item.embedding_sum.dtype == np.float64
    np.testing.assert_array_equal(out.item.embedding_sum, expected)
    assert out.created == [True, True, True]
    assert len(set(out.image_ids)) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in out.image_ids)
    record = claimed.get_item("cat")
    assert record is not None and record.image_ids == out.image_ids
    assert claimed.counts() == (1, 3)
    np.testing.assert_array_equal(states(claimed)["cat"].embedding_sum, expected)


def test_duplicates_within_a_call_and_across_calls_count_once(claimed: Store) -> None:
    a, b, c = image("a"), image("b"), image("c")
    first = claimed.enroll("cat", [a, b, a])
    assert first.created == [True, True, False]
    assert first.image_ids[2] == first.image_ids[0] != first.image_ids[1]
    assert first.item.count == 2
    second = claimed.enroll("cat", [b, c])
    assert second.created == [False, True]
    assert second.image_ids[0] == first.image_ids[1]
    assert second.item.count == 3
    expected = a.embedding.astype(np.float64) + b.embedding + c.embedding
    np.testing.assert_allclose(second.item.embedding_sum, expected, rtol=0, atol=1e-12)
    again = claimed.enroll("cat", [c, a])
    assert again.created == [False, False] and again.item.count == 3
    np.testing.assert_array_equal(again.item.embedding_sum, second.item.embedding_sum)
    record = claimed.get_item("cat")
    assert record is not None
    assert record.image_ids == [first.image_ids[0], first.image_ids[1], second.image_ids[1]]
    assert claimed.counts() == (1, 3)


def test_enroll_failing_on_its_last_image_stores_nothing(claimed: Store) -> None:
    before = claimed.enroll("cat", [image("a")])
    bad = image("bad", dim=DIM + 1)
    with pytest.raises(ValueError):
        claimed.enroll("cat", [image("b"), image("c"), bad])
    with pytest.raises(ValueError):
        claimed.enroll("dog", [image("d"), bad])
    record = claimed.get_item("cat")
    assert record is not None and record.image_ids == before.image_ids
    assert claimed.get_item("dog") is None
    assert claimed.counts() == (1, 1)
    assert set(states(claimed)) == {"cat"}
    np.testing.assert_array_equal(states(claimed)["cat"].embedding_sum, before.item.embedding_sum)
    for tag in ("b", "c", "d"):
        assert not claimed.is_hash_referenced(image(tag).content_hash)
    with pytest.raises(ValueError):
        claimed.enroll("cat", [image("nan", [float("nan")] * DIM)])
    with pytest.raises(ValueError):
        claimed.enroll("cat", [])
    assert claimed.counts() == (1, 1)


def test_model_identity_rules(store_factory: StoreFactory) -> None:
    store = store_factory()
    assert store.get_model_identity() is None
    store.claim_model_identity(IDENTITY)
    store.claim_model_identity(IDENTITY)
    assert store.get_model_identity() == IDENTITY
    other = ModelIdentity(name="other-model", version="2", dim=16)
    with pytest.raises(ModelMismatchError) as err:
        store.claim_model_identity(other)
    assert "test-model" in str(err.value) and "other-model" in str(err.value)
    assert err.value.stored == IDENTITY and err.value.configured == other
    out = store.enroll("cat", [image("a")])
    reopened = store_factory()
    assert reopened.get_model_identity() == IDENTITY
    with pytest.raises(StoreError):
        reopened.reset_model_identity()
    assert reopened.get_model_identity() == IDENTITY
    reopened.delete_image("cat", out.image_ids[0])
    reopened.reset_model_identity()
    assert reopened.get_model_identity() is None
    reopened.claim_model_identity(other)
    assert store_factory().get_model_identity() == other


def test_enroll_checks_the_claimed_dim(claimed: Store) -> None:
    with pytest.raises(ValueError):
        claimed.enroll("cat", [image("short", dim=DIM - 2)])
    assert claimed.counts() == (0, 0)


def test_paging_25_items_by_10(claimed: Store) -> None:
    ids = [f"item-{i:02d}" for i in range(25)]
    for i in np.random.default_rng(0).permutation(25):
        claimed.enroll(ids[i], [image(f"{i}-{j}") for j in range(i % 3 + 1)])
    seen = []
    cursor = None
    pages = []
    while True:
        page, cursor = claimed.list_items(10, cursor)
        pages.append(len(page))
        seen += page
        if cursor is None:
            break
    assert pages == [10, 10, 5]
    assert [s.item_id for s in seen] == ids
    assert [s.image_count for s in seen] == [i % 3 + 1 for i in range(25)]
    page, cursor = claimed.list_items(5, None)
    assert cursor == "item-04"
    page, cursor = claimed.list_items(25, None)
    assert len(page) == 25 and cursor is None
    with pytest.raises(ValueError):
        claimed.list_items(0, None)


def test_item_ids_with_separators_and_unicode_stay_apart(claimed: Store) -> None:
    ids = ["a", "a:b", "meta:a", "emb:a", "ä", "a b"]
    for n, item_id in enumerate(ids, start=1):
        claimed.enroll(item_id, [image(f"{item_id}/{j}") for j in range(n)])
    got = {s.item_id: s.image_count for s in claimed.list_items(100, None)[0]}
    assert got == {item_id: n for n, item_id in enumerate(ids, start=1)}
    assert [s.item_id for s in claimed.list_items(100, None)[0]] == sorted(ids)
    claimed.delete_item("a")
    assert claimed.get_item("a") is None
    record = claimed.get_item("a:b")
    assert record is not None and len(record.image_ids) == 2


@pytest.mark.parametrize("per_thread_store", [False, True], ids=["shared", "replicas"])
def test_concurrent_enrollments_to_one_item_lose_nothing(
    store_factory: StoreFactory, per_thread_store: bool
) -> None:
    main = store_factory()
    main.claim_model_identity(IDENTITY)
    rng = np.random.default_rng(3)
    # Small integers: their float64 sum is exact in any order, so the expected sum is exact.
    embs = rng.integers(-50, 50, size=(80, DIM)).astype(np.float32)

    def work(t: int) -> list[str]:
        s = store_factory() if per_thread_store else main
        ids = []
        for j in range(10):
            n = t * 10 + j
            out = s.enroll("shared", [NewImage(f"{n:064x}", embs[n])])
            ids += out.image_ids
        return ids

    with ThreadPoolExecutor(max_workers=8) as pool:
        all_ids = [i for ids in pool.map(work, range(8)) for i in ids]
    assert len(set(all_ids)) == 80
    state = states(main)["shared"]
    assert state.count == 80
    np.testing.assert_array_equal(state.embedding_sum, embs.astype(np.float64).sum(axis=0))
    record = main.get_item("shared")
    assert record is not None and sorted(record.image_ids) == sorted(all_ids)
    assert main.counts() == (1, 80)


def test_concurrent_writes_sharing_bytes_keep_references_and_counts_right(
    store_factory: StoreFactory,
) -> None:
    main = store_factory()
    main.claim_model_identity(IDENTITY)
    shared = [image(f"shared-{k}") for k in range(2)]

    def work(t: int) -> list[str]:
        s = store_factory()
        released: list[str] = []
        for j in range(12):
            mine = image(f"own-{t}-{j}")
            out = s.enroll(f"t{t}", [shared[j % 2], mine])
            if j % 3 == 2:
                released += s.delete_item(f"t{t}").released_hashes
            else:
                released += s.delete_image(f"t{t}", out.image_ids[0]).released_hashes
        return released

    with ThreadPoolExecutor(max_workers=6) as pool:
        released = [h for hs in pool.map(work, range(6)) for h in hs]
    held = Counter(r.content_hash for r in main.iter_images())
    for h in {*released, *(i.content_hash for i in shared)}:
        assert main.is_hash_referenced(h) == (h in held), h
    # Each thread's own bytes are never shared: released exactly once each time they are dropped.
    own_released = Counter(h for h in released if h not in {i.content_hash for i in shared})
    assert all(n == 1 for n in own_released.values())
    assert main.counts() == (len(states(main)), sum(held.values()))


def test_delete_image_recomputes_the_sum_instead_of_subtracting(claimed: Store) -> None:
    # 1e20 + 1 rounds to 1e20 in float64, so subtracting the big one would leave 0, not 1.
    big, small = image("big", [1e20] * DIM), image("small", [1.0] * DIM)
    out = claimed.enroll("cat", [big, small])
    after = claimed.delete_image("cat", out.image_ids[0])
    assert after.item.count == 1
    np.testing.assert_array_equal(after.item.embedding_sum, np.ones(DIM))
    np.testing.assert_array_equal(states(claimed)["cat"].embedding_sum, np.ones(DIM))
    assert after.released_hashes == [big.content_hash]
    record = claimed.get_item("cat")
    assert record is not None and record.image_ids == [out.image_ids[1]]


def test_deleting_the_last_image_deletes_the_item(claimed: Store) -> None:
    out = claimed.enroll("cat", [image("a")])
    claimed.enroll("dog", [image("b")])
    gone = claimed.delete_image("cat", out.image_ids[0])
    assert gone.item.count == 0 and gone.item.item_id == "cat"
    assert gone.released_hashes == [image("a").content_hash]
    assert claimed.get_item("cat") is None
    assert [s.item_id for s in claimed.list_items(10, None)[0]] == ["dog"]
    assert set(states(claimed)) == {"dog"}
    assert claimed.counts() == (1, 1)
    again = claimed.enroll("cat", [image("a")])
    assert again.created == [True] and again.item.count == 1


def test_delete_errors(claimed: Store) -> None:
    cat = claimed.enroll("cat", [image("a")])
    dog = claimed.enroll("dog", [image("b")])
    with pytest.raises(ItemNotFoundError):
        claimed.delete_image("nobody", cat.image_ids[0])
    with pytest.raises(ImageNotFoundError):
        claimed.delete_image("cat", "0" * 32)
    with pytest.raises(ImageNotFoundError):
        claimed.delete_image("cat", dog.image_ids[0])
    with pytest.raises(ItemNotFoundError):
        claimed.delete_item("nobody")
    with pytest.raises(KeyError):
        claimed.delete_item("nobody")
    assert claimed.counts() == (2, 2)


def test_shared_bytes_are_released_only_when_no_item_holds_them(claimed: Store) -> None:
    shared, own = image("shared"), image("own")
    claimed.enroll("cat", [shared, own])
    dog = claimed.enroll("dog", [shared])
    assert dog.created == [True]
    assert claimed.counts() == (2, 3)
    out = claimed.delete_item("cat")
    assert out.item.count == 0 and out.item.embedding_sum.shape == (DIM,)
    assert out.released_hashes == [own.content_hash]
    assert claimed.is_hash_referenced(shared.content_hash)
    assert not claimed.is_hash_referenced(own.content_hash)
    last = claimed.delete_image("dog", dog.image_ids[0])
    assert last.released_hashes == [shared.content_hash]
    assert not claimed.is_hash_referenced(shared.content_hash)
    assert claimed.counts() == (0, 0)
    assert list(claimed.iter_item_states()) == [] and list(claimed.iter_images()) == []


def test_iter_images_returns_every_embedding(claimed: Store) -> None:
    sent = {"cat": [image("a"), image("b")], "dog": [image("c")]}
    ids = {item: claimed.enroll(item, imgs).image_ids for item, imgs in sent.items()}
    got = {r.image_id: r for r in claimed.iter_images()}
    assert len(got) == 3
    for item, imgs in sent.items():
        for image_id, img in zip(ids[item], imgs, strict=True):
            rec = got[image_id]
            assert rec.item_id == item and rec.content_hash == img.content_hash
            assert rec.embedding.dtype == np.float32
            np.testing.assert_array_equal(rec.embedding, img.embedding)


def test_data_survives_close_and_reopen(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.claim_model_identity(IDENTITY)
    out = store.enroll("cat", [image("a"), image("b")])
    store.close()
    reopened = store_factory()
    reopened.ping()
    assert reopened.get_model_identity() == IDENTITY
    record = reopened.get_item("cat")
    assert record is not None and record.image_ids == out.image_ids
    np.testing.assert_array_equal(states(reopened)["cat"].embedding_sum, out.item.embedding_sum)
    assert reopened.counts() == (1, 2)
    assert reopened.enroll("cat", [image("a")]).created == [False]


def test_store_reports_its_backend(store: Store) -> None:
    assert store.backend in {"sqlite", "redis"}
    store.ping()


def leftovers(store: Store) -> list[str]:
    """What the backend still holds besides the model identity, the counters and the change
    feed (bounded, trimmed by compaction): Redis keys (by SCAN over the namespace), SQLite rows
    of the item and image tables."""
    if isinstance(store, RedisStore):
        ns = store.namespace
        bookkeeping = {f"{ns}:{k}" for k in ("model", "counts", "version", "changes", "schema")}
        return [k for k in store.namespace_keys() if k not in bookkeeping]
    assert isinstance(store, SqliteStore)
    conn = sqlite3.connect(store.path)
    try:
        return [
            f"{table}: {row}"
            for table in ("items", "images")
            for row in conn.execute(f"SELECT * FROM {table}")
        ]
    finally:
        conn.close()


def test_deleting_every_item_and_image_leaves_nothing_of_them(claimed: Store) -> None:
    shared = image("shared")
    cat = claimed.enroll("cat", [shared, image("c1"), image("c2")])
    claimed.enroll("dog", [shared, image("d1")])
    claimed.enroll("a:b:c", [image("colons")])
    assert len(leftovers(claimed)) > 5  # the probe sees what is there
    claimed.delete_image("cat", cat.image_ids[1])
    claimed.delete_item("dog")
    claimed.delete_image("cat", cat.image_ids[0])
    claimed.delete_image("cat", cat.image_ids[2])  # its last image: the item goes too
    claimed.delete_item("a:b:c")
    assert claimed.counts() == (0, 0)
    assert leftovers(claimed) == []
    assert not claimed.is_hash_referenced(shared.content_hash)


def test_compact_keeps_every_item_image_and_sum(claimed: Store) -> None:
    for i in range(30):
        claimed.enroll(f"item{i:02d}", [image(f"{i}-a"), image(f"{i}-b")])
    for i in range(0, 30, 2):
        claimed.delete_item(f"item{i:02d}")
    before = states(claimed)
    images_before = {r.image_id: r for r in claimed.iter_images()}
    claimed.compact()
    claimed.compact()  # idempotent
    after = states(claimed)
    assert sorted(after) == sorted(before) and len(after) == 15
    for item_id, state in before.items():
        assert after[item_id].count == state.count
        np.testing.assert_array_equal(after[item_id].embedding_sum, state.embedding_sum)
    images_after = {r.image_id: r for r in claimed.iter_images()}
    assert images_after.keys() == images_before.keys()
    for image_id, record in images_before.items():
        np.testing.assert_array_equal(images_after[image_id].embedding, record.embedding)
    assert claimed.counts() == (15, 30) and claimed.get_model_identity() == IDENTITY
    assert claimed.enroll("item00", [image("0-a")]).created == [True]  # still writable


def test_disk_bytes_come_down_when_deleted_data_is_compacted(claimed: Store) -> None:
    for i in range(40):
        claimed.enroll(f"item{i:02d}", [image(f"{i}-a"), image(f"{i}-b")])
    for i in range(40):
        claimed.delete_item(f"item{i:02d}")
    before = claimed.disk_bytes()
    claimed.compact()
    after = claimed.disk_bytes()
    if before is None:
        # Only a server that keeps nothing on disk (the suite's shared Redis: no AOF).
        assert claimed.backend == "redis" and after is None
        return
    assert after is not None and 0 < after < before, (before, after)
