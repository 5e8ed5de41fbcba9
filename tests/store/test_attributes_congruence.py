"""Attributes, unit sums, filtered listing and image lookup: one behaviour, two backends.

Every test runs on a real SQLite file and on the real test Redis (``store_factory``); numbers
are checked against numpy brute force over the embeddings the store holds, merges against
``rfc7396`` (the RFC's pseudo-code, in ``test_write_plan``), listings against a filter applied
to every item by hand.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import store.redis_store
import store.sqlite_store
from store.change_feed import START, FeedCursor, RedisChangeFeed
from store.errors import (
    AttributesInvalidError,
    AttributesTooLargeError,
    ImageNotFoundError,
    ItemNotFoundError,
)
from store.item_attributes import AttributeFilter, Attributes
from store.item_spread import item_spread
from store.records import ItemState
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store
from tests import redis_server
from tests.store.conftest import StoreFactory
from tests.store.test_store_congruence import DIM, IDENTITY, image, states
from tests.store.test_write_plan import rfc7396


@pytest.fixture
def claimed(store: Store) -> Store:
    store.claim_model_identity(IDENTITY)
    return store


def recorded_change(store: Store, after: int) -> ItemState:
    """The state the store's change record of its one write after version ``after`` carries:
    SQLite's change log (the item as it is now), Redis's change feed record itself."""
    if isinstance(store, SqliteStore):
        (changed,) = store.changed_since(after)
        assert changed.state is not None
        return changed.state
    assert isinstance(store, RedisStore)
    feed = RedisChangeFeed(redis_server.REDIS_URL, store.namespace, DIM)
    try:
        changes = feed.read(FeedCursor(START, 0), block_ms=0, count=10_000).changes
    finally:
        feed.close()
    (change,) = [c for c in changes if c.state.version > after]
    return change.state


def brute_unit_sum(store: Store, item_id: str) -> npt.NDArray[np.float64]:
    """Σ e/‖e‖ in float64 over the embeddings the store holds for the item."""
    held = [r.embedding.astype(np.float64) for r in store.iter_images() if r.item_id == item_id]
    return np.sum([e / np.linalg.norm(e) for e in held], axis=0)


def test_attributes_round_trip_through_every_read_and_a_reopen(
    store_factory: StoreFactory,
) -> None:
    s = store_factory()
    s.claim_model_identity(IDENTITY)
    attrs: Attributes = {"sku": "A-1", "n": 3, "x": 2.5, "ok": True, "tags": ["a", "é"]}
    attrs["dims"] = {"w": 10, "h": {"deep": "ünï"}}
    out = s.enroll("cat", [image("a")], attributes_patch={**attrs, "dropped": None})
    assert out.item.attributes == attrs
    s.enroll("dog", [image("b")])
    record = s.get_item("cat")
    assert record is not None and record.attributes == attrs
    dog = s.get_item("dog")
    assert dog is not None and dog.attributes == {}
    state = s.get_item_state("cat")
    assert state is not None and state.attributes == attrs
    assert states(s)["cat"].attributes == attrs and states(s)["dog"].attributes == {}
    listed = {i.item_id: i.attributes for i in s.list_items(10, None)[0]}
    assert listed == {"cat": attrs, "dog": {}}
    s.close()
    reopened = store_factory()
    record = reopened.get_item("cat")
    assert record is not None and record.attributes == attrs
    assert states(reopened)["cat"].attributes == attrs


def test_patches_merge_by_rfc_7396_and_each_change_is_a_recorded_write(claimed: Store) -> None:
    claimed.enroll("cat", [image("a"), image("b")])
    model: Any = {}
    patches: list[Attributes] = [
        {"sku": "1", "color": "red", "dims": {"w": 1, "h": 2}},
        {"color": None, "dims": {"h": None, "d": [3]}},
        {"dims": "flat", "n": 0},
        {"dims": {"w": None}, "sku": "2"},
    ]
    for patch in patches:
        before = claimed.last_version()
        state = claimed.patch_attributes("cat", patch)
        model = rfc7396(model, patch)
        assert state.attributes == model
        assert state.version == claimed.last_version() == before + 1
        assert state.count == 2 and state.unit_sum is not None
        change = recorded_change(claimed, before)
        assert change.version == state.version and change.attributes == model
        assert change.count == 2
        np.testing.assert_array_equal(change.embedding_sum, state.embedding_sum)
        assert change.unit_sum is not None
        np.testing.assert_array_equal(change.unit_sum, state.unit_sum)
    assert model == {"dims": {}, "n": 0, "sku": "2"}
    # A patch that changes nothing writes nothing: no version, no change record.
    last = claimed.last_version()
    same = claimed.patch_attributes("cat", {"n": 0, "absent": None})
    assert same.version == last == claimed.last_version() and same.attributes == model
    # Enrolling held bytes with a patch that changes the attributes is a write too.
    again = claimed.enroll("cat", [image("a")], attributes_patch={"n": 1})
    assert again.created == [False] and again.item.version == last + 1
    assert recorded_change(claimed, last).attributes == {**model, "n": 1}
    with pytest.raises(ItemNotFoundError):
        claimed.patch_attributes("nobody", {"a": 1})
    claimed.delete_item("cat")
    with pytest.raises(ItemNotFoundError):
        claimed.patch_attributes("cat", {"a": 1})
    assert claimed.enroll("cat", [image("a")]).item.attributes == {}  # not resurrected


def test_oversize_or_invalid_attributes_write_nothing(claimed: Store) -> None:
    held = {"k": "v" * 20}  # {"k":"vvvvvvvvvvvvvvvvvvvv"}: 28 bytes
    claimed.enroll("cat", [image("a")], attributes_patch=held, max_attributes_bytes=28)
    version, counts = claimed.last_version(), claimed.counts()
    refused: list[tuple[str, Any]] = [
        ("enroll-new", lambda: claimed.enroll("dog", [image("d")], attributes_patch=held,
                                              max_attributes_bytes=27)),
        ("enroll-image", lambda: claimed.enroll("cat", [image("b")], attributes_patch={"x": 1},
                                                max_attributes_bytes=33)),
        ("patch", lambda: claimed.patch_attributes("cat", {"k2": "w"}, max_attributes_bytes=36)),
    ]  # fmt: skip
    for name, call in refused:
        with pytest.raises(AttributesTooLargeError):
            call()
        assert claimed.last_version() == version and claimed.counts() == counts, name
    for bad in ([1, 2], {"x": float("nan")}):
        with pytest.raises(AttributesInvalidError):
            claimed.patch_attributes("cat", bad)  # type: ignore[arg-type]
        with pytest.raises(AttributesInvalidError):
            claimed.enroll("cat", [image("c")], attributes_patch=bad)  # type: ignore[arg-type]
    assert claimed.last_version() == version and claimed.counts() == counts
    assert claimed.get_item("dog") is None and not claimed.is_hash_referenced(
        image("b").content_hash
    )
    record = claimed.get_item("cat")
    assert record is not None and record.attributes == held and len(record.image_ids) == 1
    # The same patch at the limit exactly is taken: {"k":"vv…v","k2":"w"} is 37 bytes.
    claimed.patch_attributes("cat", {"k2": "w"}, max_attributes_bytes=37)
    assert claimed.last_version() == version + 1


def test_unit_sums_follow_random_enrollments_and_deletions(claimed: Store) -> None:
    rng = np.random.default_rng(11)
    items = ["a", "b", "c", "d"]
    # Embeddings of very different norms: a sum of raw vectors would be dominated by the big
    # ones, the unit sum is not.
    pool = [f"img-{n}" for n in range(14)]
    for step in range(40):
        item_id = str(rng.choice(items))
        record = claimed.get_item(item_id)
        if record is not None and rng.random() < 0.35:
            victim = str(rng.choice(record.image_ids))
            out = claimed.delete_image(item_id, victim).item
        else:
            tags = [str(t) for t in rng.choice(pool, size=int(rng.integers(1, 4)))]
            out = claimed.enroll(item_id, [image(t) for t in tags]).item
        stored = claimed.get_item_state(item_id)
        if out.count == 0:
            assert stored is None and out.unit_sum is not None and not out.unit_sum.any()
            continue
        assert stored is not None and stored.unit_sum is not None and out.unit_sum is not None
        want = brute_unit_sum(claimed, item_id)
        np.testing.assert_allclose(stored.unit_sum, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(out.unit_sum, stored.unit_sum)
        if step % 5 == 0:
            change = recorded_change(claimed, stored.version - 1)
            assert change.unit_sum is not None
            np.testing.assert_array_equal(change.unit_sum, stored.unit_sum)
    for state in claimed.iter_item_states():
        held = [r.embedding.astype(np.float64) for r in claimed.iter_images()
                if r.item_id == state.item_id]  # fmt: skip
        assert state.unit_sum is not None
        np.testing.assert_allclose(
            state.unit_sum, brute_unit_sum(claimed, state.item_id), rtol=1e-12, atol=1e-12
        )
        centroid = np.sum(held, axis=0) / np.linalg.norm(np.sum(held, axis=0))
        cosines = [e @ centroid / np.linalg.norm(e) for e in held]
        assert item_spread(state) == pytest.approx(float(np.mean(cosines)), rel=1e-9)


PALETTE: list[Attributes] = [
    {"cat": "shoe", "n": 1},
    {"cat": "shoe", "n": "1", "ok": True},
    {"cat": "hat", "n": 2, "ok": False},
    {"cat": "bag", "size": 2.5, "tags": ["shoe"]},
    {"cat": {"nested": "shoe"}, "n": 1},
    {},
]
FILTERS = [
    [],
    ["cat:shoe"],
    ["n:1"],
    ["cat:shoe", "n:1"],
    ["ok:true"],
    ["ok:false", "cat:hat"],
    ["size:2.5"],
    ["cat:none"],
    ["tags:shoe"],
]


@pytest.mark.parametrize("page_rows", [7, 1000])
def test_filtered_listing_pages_through_exactly_the_matching_items(
    claimed: Store, monkeypatch: pytest.MonkeyPatch, page_rows: int
) -> None:
    # Small scan pages too, so one listing page spans several reads.
    monkeypatch.setattr(store.sqlite_store, "PAGE_ROWS", page_rows)
    monkeypatch.setattr(store.redis_store, "PAGE_ITEMS", page_rows)
    rng = np.random.default_rng(2)
    given: dict[str, Attributes] = {}
    for n in range(45):
        item_id = f"item-{n:02d}"
        given[item_id] = PALETTE[int(rng.integers(len(PALETTE)))]
        claimed.enroll(item_id, [image(item_id)], attributes_patch=given[item_id])
    claimed.delete_item("item-03")
    del given["item-03"]
    for specs, limit in itertools.product(FILTERS, [1, 4, 50]):
        where = AttributeFilter.parse(specs)
        want = sorted(i for i, a in given.items() if brute_match(a, specs))
        got: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page, cursor = claimed.list_items(limit, cursor, where)
            pages += 1
            assert len(page) <= limit
            assert all(p.image_count == 1 and p.attributes == given[p.item_id] for p in page)
            got += [p.item_id for p in page]
            if cursor is None:
                break
            assert len(page) == limit  # a page short of the limit is the last one
        assert got == want, (specs, limit)
        assert pages == max(1, -(-len(want) // limit)), (specs, limit)


def brute_match(attrs: Attributes, specs: list[str]) -> bool:
    """The filter rule by hand: each ``key:value`` needs a scalar at ``key`` whose JSON text
    (strings unquoted) is ``value``."""
    for spec in specs:
        key, _, value = spec.partition(":")
        held = attrs.get(key)
        if isinstance(held, str):
            text = held
        elif isinstance(held, bool):
            text = "true" if held else "false"
        elif isinstance(held, (int, float)):
            text = repr(held)
        else:
            return False
        if text != value:
            return False
    return True


def test_image_content_hash_names_the_bytes_of_that_image_of_that_item(claimed: Store) -> None:
    cat = claimed.enroll("cat", [image("a"), image("shared")])
    dog = claimed.enroll("dog", [image("shared")])
    assert claimed.image_content_hash("cat", cat.image_ids[0]) == image("a").content_hash
    assert claimed.image_content_hash("cat", cat.image_ids[1]) == image("shared").content_hash
    assert claimed.image_content_hash("dog", dog.image_ids[0]) == image("shared").content_hash
    with pytest.raises(ImageNotFoundError):
        claimed.image_content_hash("dog", cat.image_ids[0])  # another item's image
    with pytest.raises(ImageNotFoundError):
        claimed.image_content_hash("cat", "0" * 32)
    with pytest.raises(ItemNotFoundError):
        claimed.image_content_hash("nobody", cat.image_ids[0])
    claimed.delete_image("cat", cat.image_ids[0])
    with pytest.raises(ImageNotFoundError):
        claimed.image_content_hash("cat", cat.image_ids[0])
