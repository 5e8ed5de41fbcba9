"""Property: an index loaded from a snapshot and brought forward by replay equals a full rebuild.

Random enroll / delete-image / delete-item sequences run against a real store (SQLite and Redis)
while an index follows the outcomes; snapshots are taken at random points. Then a fresh index
loads the last snapshot and replays what came after it — SQLite: the change log, Redis: the
change feed from the snapshot's cursor, as a restarting replica does — and must hold the same
items, versions and rows as an index rebuilt from every item in the store.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.index_applier import IndexApplier
from app.index_snapshots import IndexSnapshots, replay_change_log
from app.metrics import ServiceMetrics
from app.striped_lock import StripedLock
from index.flat_centroid_index import FlatCentroidIndex
from store.change_feed import FeedCursor, RedisChangeFeed
from store.records import ModelIdentity, NewImage
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store
from tests.redis_server import REDIS_URL
from tests.store.conftest import _drop_namespace

DIM = 5
IDENTITY = ModelIdentity("m", "1", DIM)
ITEMS = ["a", "b", "c", "d"]
rng = np.random.default_rng(0)
EMBEDDINGS = rng.normal(size=(8, DIM)).astype(np.float32)

operation = st.one_of(
    st.tuples(
        st.just("enroll"),
        st.sampled_from(ITEMS),
        st.lists(st.integers(0, len(EMBEDDINGS) - 1), min_size=1, max_size=3),
    ),
    st.tuples(st.just("delete_image"), st.sampled_from(ITEMS), st.integers(0, 3)),
    st.tuples(st.just("delete_item"), st.sampled_from(ITEMS), st.just(0)),
    st.tuples(st.just("snapshot"), st.just(""), st.just(0)),
)


class Follower:
    """What the change follower does, inline: apply feed records after a cursor."""

    def __init__(self, feed: RedisChangeFeed, applier: IndexApplier, cursor: FeedCursor) -> None:
        self.feed, self.applier, self.cursor = feed, applier, cursor

    def catch_up(self) -> None:
        while True:
            batch = self.feed.read(self.cursor, block_ms=0)
            for change in batch.changes:
                self.applier.apply(change.state)
            self.cursor = batch.cursor
            if not batch.changes:
                return


def snapshots_of(store: Store, applier: IndexApplier, path: Path) -> IndexSnapshots:
    return IndexSnapshots(
        path=path,
        store=store,
        applier=applier,
        item_locks=StripedLock(),
        identity=IDENTITY,
        metrics=ServiceMetrics(),
        interval_s=3600,
        min_changes=10**9,
    )


def index_content(applier: IndexApplier) -> dict[str, tuple[int, np.ndarray]]:
    index = applier.index
    versions = applier.version_map()
    out = {}
    for i in index.item_ids():
        row = index.get(i)
        assert row is not None
        out[i] = (versions.get(i, 0), row)
    return out


def run(store: Store, ops: list[tuple[str, str, int | list[int]]], tmp: Path) -> None:
    store.claim_model_identity(IDENTITY)
    feed = (
        RedisChangeFeed(REDIS_URL, store.namespace, DIM) if isinstance(store, RedisStore) else None
    )
    live = IndexApplier(FlatCentroidIndex(DIM), ServiceMetrics())
    follower = Follower(feed, live, feed.cursor()) if feed is not None else None
    snapshots = snapshots_of(store, live, tmp / "snap.bin")
    if follower is not None:
        snapshots.feed_cursor = lambda: follower.cursor
    held: dict[str, list[str]] = {}
    taken = False
    for op, item, arg in ops:
        if op == "enroll":
            assert isinstance(arg, list)
            images = [NewImage(f"{e:064x}", EMBEDDINGS[e]) for e in arg]
            out = store.enroll(item, images)
            held[item] = sorted(set(held.get(item, [])) | set(out.image_ids))
            live.apply(out.item)
        elif op == "delete_image" and held.get(item):
            assert isinstance(arg, int)
            image_id = held[item][arg % len(held[item])]
            outcome = store.delete_image(item, image_id)
            held[item].remove(image_id)
            live.apply(outcome.item)
        elif op == "delete_item" and held.get(item):
            live.apply(store.delete_item(item).item)
            del held[item]
        elif op == "snapshot":
            if follower is not None:
                follower.catch_up()
            snapshots.take()
            taken = True
    if not taken:
        snapshots.take()

    # The restart: a fresh index from the snapshot, then the writes after it.
    restarted = IndexApplier(FlatCentroidIndex(DIM), ServiceMetrics())
    loaded = snapshots_of(store, restarted, tmp / "snap.bin").load()
    assert loaded is not None
    if feed is None:
        assert isinstance(store, SqliteStore)
        replay_change_log(store, restarted, StripedLock(), loaded.position.version)
    else:
        assert loaded.position.feed is not None
        Follower(feed, restarted, loaded.position.feed).catch_up()
        feed.close()

    rebuilt = IndexApplier(FlatCentroidIndex(DIM), ServiceMetrics())
    rebuilt.rebuild(store.iter_item_states())
    got, want = index_content(restarted), index_content(rebuilt)
    assert sorted(got) == sorted(want)
    for item_id, (version, row) in want.items():
        assert got[item_id][0] == version, item_id
        np.testing.assert_allclose(got[item_id][1], row, rtol=0, atol=1e-6)


ops_strategy = st.lists(operation, min_size=1, max_size=20)
# 20 sequences of up to 20 operations per backend (30 took half as long again): enough for
# snapshots before, between and after deletions of every kind; a failure shrinks to a few.
EXAMPLES = 20


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy)
def test_sqlite_snapshot_and_change_log_replay_equal_a_rebuild(
    ops: list[tuple[str, str, int | list[int]]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "store.sqlite3")
        try:
            run(store, ops, Path(tmp))
        finally:
            store.close()


@pytest.mark.redis
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy)
def test_redis_snapshot_and_feed_replay_equal_a_rebuild(
    ops: list[tuple[str, str, int | list[int]]],
) -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    store = RedisStore(REDIS_URL, namespace=namespace)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run(store, ops, Path(tmp))
    finally:
        store.close()
        _drop_namespace(namespace)
