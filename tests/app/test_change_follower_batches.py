"""The change follower applies the feed in batches (a page's newest record per item, several
items per hold of their locks): on the real test Redis, a replica catching up with a backlog
of pages, while writes through the store go on (this replica's own, applied under the item
lock as the retriever does) and more records arrive, ends with the store's state of every item
(no gap), never applies a record twice nor an older state after a newer one (no double apply),
and counts every record once, applied or skipped."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from app import change_follower
from app.change_follower import ChangeFollower
from app.index_applier import IndexApplier
from app.metrics import ServiceMetrics
from app.striped_lock import StripedLock
from index.centroid_math import centroid_from_sum
from index.flat_centroid_index import FlatCentroidIndex
from store.change_feed import RedisChangeFeed
from store.errors import ItemNotFoundError
from store.item_attributes import attribute_terms
from store.records import ItemState, ModelIdentity, NewImage
from store.redis_store import RedisStore
from tests import redis_server
from tests.store.conftest import _drop_namespace

pytestmark = pytest.mark.redis

DIM = 8
ITEMS = 12  # few items, many writes: a page holds several records of one item


@pytest.fixture
def store() -> Iterator[RedisStore]:
    namespace = f"t{uuid.uuid4().hex[:12]}"
    opened = RedisStore(redis_server.REDIS_URL, namespace)
    opened.claim_model_identity(ModelIdentity("m", "1", DIM))
    yield opened
    opened.close()
    _drop_namespace(namespace)


class RecordingApplier(IndexApplier):
    """Notes every state the follower applied, in order."""

    def __init__(self, index: FlatCentroidIndex, metrics: ServiceMetrics) -> None:
        super().__init__(index, metrics)
        self.applied: list[tuple[str, int]] = []
        self.batch_sizes: list[int] = []

    def apply_replicated_batch(self, states: Sequence[ItemState]) -> list[bool]:
        outcomes = super().apply_replicated_batch(states)
        self.batch_sizes.append(len(states))
        self.applied += [
            (s.item_id, s.version) for s, ok in zip(states, outcomes, strict=True) if ok
        ]
        return outcomes


def write_some(
    store: RedisStore,
    rng: np.random.Generator,
    count: int,
    own: tuple[IndexApplier, StripedLock] | None = None,
) -> int:
    """``count`` random writes to ``ITEMS`` items (enrollments, image and item deletions,
    attribute patches); with ``own``, each applied to the index under the item's lock right
    after its commit, as this replica's own writes are. Returns the writes that committed."""
    done = 0
    for _ in range(count):
        item_id = f"i{rng.integers(ITEMS)}"
        pick = rng.random()
        lock = own[1].hold([item_id]) if own is not None else None
        with lock if lock is not None else _nothing():
            try:
                if pick < 0.55:
                    attrs = {"colour": str(rng.choice(["red", "blue"]))} if pick < 0.2 else None
                    image = NewImage(uuid.uuid4().hex * 2, rng.normal(size=DIM).astype(np.float32))
                    state = store.enroll(item_id, [image], attributes_patch=attrs).item
                elif pick < 0.7:
                    record = store.get_item(item_id)
                    if record is None:
                        continue
                    state = store.delete_image(item_id, record.image_ids[0]).item
                elif pick < 0.85:
                    state = store.delete_item(item_id).item
                else:
                    state = store.patch_attributes(item_id, {"size": int(rng.integers(3))})
            except ItemNotFoundError:
                continue
            if own is not None:
                own[0].apply(state)
        done += 1
    return done


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def assert_index_is_the_store(store: RedisStore, applier: IndexApplier) -> None:
    index = applier.index
    states = {s.item_id: s for s in store.iter_item_states()}
    assert sorted(index.item_ids()) == sorted(states)
    for item_id, state in states.items():
        row = index.get(item_id)
        assert row is not None
        assert float(np.abs(row - centroid_from_sum(state.embedding_sum)).max()) < 1e-6
        assert index.terms_of(item_id) == attribute_terms(state.attributes)
        assert applier.attributes.get(item_id) == state.attributes
        assert applier.version_of(item_id) == state.version


def test_a_replica_catching_up_in_batches_while_writes_go_on_ends_in_the_stores_state(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(change_follower, "APPLY_BATCH_ITEMS", 5)  # several batches per page
    rng = np.random.default_rng(11)
    write_some(store, rng, 40)
    feed = RedisChangeFeed(redis_server.REDIS_URL, store.namespace, DIM)
    cursor = feed.cursor()  # noted before the start-up read, as a starting replica does
    start_records = feed.status().entries_added
    metrics = ServiceMetrics()
    applier = RecordingApplier(FlatCentroidIndex(DIM), metrics)
    applier.rebuild(store.iter_item_states())
    locks = StripedLock()
    write_some(store, rng, 150)  # the backlog: pages of 16 records with items repeated
    follower = ChangeFollower(
        feed=feed,
        applier=applier,
        item_locks=locks,
        rebuild=lambda: pytest.fail("nothing was trimmed: no rebuild"),
        metrics=metrics,
        block_ms=50,
        page_records=16,
    )
    writers = [
        # Another replica's writes (only in the feed) and this replica's own (applied here
        # too, then echoed by the feed), while the backlog is read.
        threading.Thread(target=write_some, args=(store, np.random.default_rng(12), 120)),
        threading.Thread(
            target=write_some, args=(store, np.random.default_rng(13), 120, (applier, locks))
        ),
    ]
    follower.start(cursor)
    try:
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        deadline = time.monotonic() + 20
        total = feed.status().entries_added - start_records
        while True:
            counted = sum(
                metrics.registry.get_sample_value(
                    "retrieval_changes_applied_total", {"outcome": outcome}
                )
                or 0
                for outcome in ("applied", "skipped")
            )
            if follower.caught_up and follower.lag_records == 0 and counted >= total:
                break
            assert time.monotonic() < deadline, f"counted {counted} of {total} records"
            time.sleep(0.02)
    finally:
        follower.close()
    assert counted == total  # every record read once: none missed, none read twice
    assert follower.cursor is not None and follower.cursor.seen == cursor.seen + total
    assert_index_is_the_store(store, applier)
    # Batches: more than one item per lock hold, never more than APPLY_BATCH_ITEMS.
    assert max(applier.batch_sizes) == 5 and min(applier.batch_sizes) >= 1
    # No double apply: per item, the follower applied strictly newer versions each time.
    by_item: dict[str, list[int]] = {}
    for item_id, version in applier.applied:
        by_item.setdefault(item_id, []).append(version)
    for item_id, versions in by_item.items():
        assert versions == sorted(set(versions)), f"{item_id}: {versions}"
    # A page's older records of an item were skipped, not applied: fewer applied than read.
    assert len(applier.applied) < total


def test_a_page_with_several_records_of_one_item_applies_only_the_newest(
    store: RedisStore,
) -> None:
    feed = RedisChangeFeed(redis_server.REDIS_URL, store.namespace, DIM)
    cursor = feed.cursor()
    rng = np.random.default_rng(5)
    for n in range(4):
        store.enroll("a", [NewImage(f"{n:064x}", rng.normal(size=DIM).astype(np.float32))])
    store.enroll("b", [NewImage("f" * 64, rng.normal(size=DIM).astype(np.float32))])
    store.delete_item("a")
    metrics = ServiceMetrics()
    applier = RecordingApplier(FlatCentroidIndex(DIM), metrics)
    follower = ChangeFollower(
        feed=feed,
        applier=applier,
        item_locks=StripedLock(),
        rebuild=lambda: pytest.fail("no rebuild"),
        metrics=metrics,
        block_ms=50,
    )
    follower.start(cursor)
    try:
        deadline = time.monotonic() + 5
        while not follower.caught_up:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        follower.close()
    versions = {s.item_id: s.version for s in store.iter_item_states()}
    assert applier.applied == [("a", store.last_version()), ("b", versions["b"])]
    assert applier.index.item_ids() == ["b"]
    value = metrics.registry.get_sample_value
    assert value("retrieval_changes_applied_total", {"outcome": "applied"}) == 2
    assert value("retrieval_changes_applied_total", {"outcome": "skipped"}) == 4
