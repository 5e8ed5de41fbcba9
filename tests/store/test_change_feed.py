"""The Redis change feed on the real test Redis: one record per committed write, in commit
order, with the state the write answered; a trimmed feed says so."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from store.change_feed import START, ChangeFeedGapError, FeedCursor, RedisChangeFeed, position_key
from store.redis_store import RedisStore
from tests import redis_server
from tests.store.conftest import _drop_namespace
from tests.store.test_store_congruence import DIM, IDENTITY, image

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_store() -> Iterator[RedisStore]:
    namespace = f"test-{uuid.uuid4().hex}"
    store = RedisStore(redis_server.REDIS_URL, namespace=namespace)
    store.claim_model_identity(IDENTITY)
    yield store
    store.close()
    _drop_namespace(namespace)


def feed_of(store: RedisStore) -> RedisChangeFeed:
    return RedisChangeFeed(redis_server.REDIS_URL, store.namespace, DIM)


def test_each_write_appends_its_answered_state_in_commit_order(redis_store: RedisStore) -> None:
    feed = feed_of(redis_store)
    origin = feed.cursor()
    empty = feed.read(origin, block_ms=1)
    assert origin == FeedCursor(START, 0) and empty.changes == [] and empty.cursor == origin
    a = redis_store.enroll("a", [image("1"), image("2")])
    b = redis_store.enroll("b", [image("3")])
    redis_store.enroll("b", [image("3")])  # held bytes: no write, no record
    gone = redis_store.delete_image("a", a.image_ids[0])
    deleted = redis_store.delete_item("b")
    batch = feed.read(origin, block_ms=1)
    changes, cursor = batch.changes, batch.cursor
    assert batch.behind == 0 and batch.behind_s == 0
    assert [c.state.item_id for c in changes] == ["a", "b", "a", "b"]
    expected = [a.item, b.item, gone.item, deleted.item]
    for change, state in zip(changes, expected, strict=True):
        assert change.state.version == state.version and change.state.count == state.count
        np.testing.assert_array_equal(change.state.embedding_sum, state.embedding_sum)
    assert changes[-1].state.count == 0 and not changes[-1].state.embedding_sum.any()
    positions = [position_key(c.position) for c in changes]
    assert positions == sorted(positions) and feed.cursor() == cursor
    assert cursor == FeedCursor(changes[-1].position, 4)
    assert abs(changes[0].committed_ms - time.time() * 1000) < 60_000
    later = feed.read(FeedCursor(changes[1].position, 2), block_ms=1, count=1).changes
    assert [c.position for c in later] == [changes[2].position]
    partial = feed.read(FeedCursor(changes[1].position, 2), block_ms=1, count=1)
    assert partial.behind == 1 and partial.behind_s >= 0
    feed.close()


def test_a_reader_waits_for_the_next_record(redis_store: RedisStore) -> None:
    feed = feed_of(redis_store)
    start = time.monotonic()
    assert feed.read(feed.cursor(), block_ms=200).changes == []
    assert time.monotonic() - start >= 0.15
    feed.close()


def test_a_reader_behind_the_trimmed_records_is_told_to_rebuild(redis_store: RedisStore) -> None:
    feed = feed_of(redis_store)
    redis_store.enroll("a", [image("1")])
    behind = feed.cursor()
    redis_store.enroll("b", [image("2")])
    redis_store.enroll("c", [image("3")])
    seen_all = feed.cursor()
    redis_store.change_feed_retention_s = 0
    redis_store.compact()  # drops every record
    with pytest.raises(ChangeFeedGapError):
        feed.read(behind, block_ms=1)
    # A reader that had seen everything has missed nothing, and goes on reading.
    assert feed.read(seen_all, block_ms=1).cursor == seen_all
    redis_store.enroll("d", [image("4")])
    (change,) = feed.read(seen_all, block_ms=1).changes
    assert change.state.item_id == "d"
    feed.close()


def test_a_service_record_change_is_a_meta_record_in_its_place(redis_store: RedisStore) -> None:
    feed = feed_of(redis_store)
    origin = feed.cursor()
    a = redis_store.enroll("a", [image("1")])
    redis_store.set_meta("migration", '{"state": "x"}')
    b = redis_store.enroll("b", [image("2")])
    redis_store.set_meta("migration", None)
    batch = feed.read(origin, block_ms=1)
    assert [(c.state.item_id, c.state.version) for c in batch.changes] == [
        ("a", a.item.version),
        ("b", b.item.version),
    ]
    assert batch.meta_keys == ("migration", "migration")
    # The cursor counts every record read, so a trim behind it is still told apart.
    assert batch.cursor.seen == 4 and batch.behind == 0
    assert position_key(batch.cursor.position) > position_key(batch.changes[-1].position)
    assert redis_store.get_meta("migration") is None
    assert feed.read(batch.cursor, block_ms=1).meta_keys == ()
    feed.close()
