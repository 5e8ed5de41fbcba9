"""Idempotency records on both backends: recorded with the write, replayed, expired, refused."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from store.errors import ItemNotFoundError
from store.idempotency import (
    IdempotencyClaim,
    IdempotencyKeyReusedError,
    IdempotentReplay,
)
from store.mutations import StoredResponse
from store.records import DeleteOutcome, EnrollOutcome
from store.store import Store
from tests.store.conftest import StoreFactory
from tests.store.test_store_congruence import IDENTITY, image


def enrolled(outcome: EnrollOutcome) -> StoredResponse:
    body = {"item_id": outcome.item.item_id, "image_ids": outcome.image_ids}
    return StoredResponse(201, json.dumps(body).encode(), "application/json")


def deleted(outcome: DeleteOutcome) -> StoredResponse:
    return StoredResponse(204, b"", None)


def claim(
    key: str, respond: Callable[[Any], StoredResponse], fingerprint: str = "fp", ttl_s: float = 60
) -> IdempotencyClaim[Any]:
    return IdempotencyClaim(key, fingerprint, ttl_s, respond)


@pytest.fixture
def claimed(store: Store) -> Store:
    store.claim_model_identity(IDENTITY)
    return store


def test_a_retried_enrollment_replays_its_answer_and_writes_nothing(claimed: Store) -> None:
    first = claimed.enroll("cat", [image("a")], claim("k:1", enrolled))
    record = claimed.get_idempotency_record("k:1")
    assert record is not None and record.fingerprint == "fp"
    assert record.response == enrolled(first)
    assert record.expires_at == pytest.approx(time.time() + 60, abs=5)
    with pytest.raises(IdempotentReplay) as caught:
        # Different bytes under the same key and fingerprint: the store trusts the fingerprint,
        # so nothing of this call may be written.
        claimed.enroll("cat", [image("b")], claim("k:1", enrolled))
    assert caught.value.response == enrolled(first)
    assert claimed.counts() == (1, 1)


def test_the_same_key_for_another_request_is_refused_and_writes_nothing(claimed: Store) -> None:
    claimed.enroll("cat", [image("a")], claim("k:1", enrolled))
    with pytest.raises(IdempotencyKeyReusedError):
        claimed.enroll("dog", [image("b")], claim("k:1", enrolled, fingerprint="other"))
    assert claimed.counts() == (1, 1)


def test_keys_are_separate_per_scope(claimed: Store) -> None:
    claimed.enroll("cat", [image("a")], claim("alice:1", enrolled))
    claimed.enroll("dog", [image("b")], claim("bob:1", enrolled, fingerprint="other"))
    assert claimed.counts() == (2, 2)


def test_a_delete_retried_after_it_committed_replays_its_204(claimed: Store) -> None:
    out = claimed.enroll("cat", [image("a"), image("b")])
    claimed.delete_image("cat", out.image_ids[0], claim("k:del-img", deleted))
    claimed.delete_item("cat", claim("k:del-item", deleted))
    # Without the key each would now be a 404; with it, the first answer comes back.
    for retry in (
        lambda: claimed.delete_image("cat", out.image_ids[0], claim("k:del-img", deleted)),
        lambda: claimed.delete_item("cat", claim("k:del-item", deleted)),
    ):
        with pytest.raises(IdempotentReplay) as caught:
            retry()
        assert caught.value.response == StoredResponse(204, b"", None)
    with pytest.raises(ItemNotFoundError):
        claimed.delete_item("cat", claim("k:fresh", deleted))


def test_a_refused_write_records_nothing(claimed: Store) -> None:
    with pytest.raises(ItemNotFoundError):
        claimed.delete_item("absent", claim("k:1", deleted))
    assert claimed.get_idempotency_record("k:1") is None
    claimed.enroll("absent", [image("a")])
    claimed.delete_item("absent", claim("k:1", deleted))  # the key is free: this one runs
    assert claimed.counts() == (0, 0)


def test_re_enrolled_bytes_record_their_answer_too(claimed: Store) -> None:
    first = claimed.enroll("cat", [image("a")])
    again = claimed.enroll("cat", [image("a")], claim("k:1", enrolled))
    assert again.image_ids == first.image_ids and again.created == [False]
    record = claimed.get_idempotency_record("k:1")
    assert record is not None and record.response == enrolled(again)


def test_an_expired_record_is_gone_and_its_key_runs_again(claimed: Store) -> None:
    claimed.enroll("cat", [image("a")], claim("k:1", enrolled, ttl_s=0.3))
    assert claimed.get_idempotency_record("k:1") is not None
    time.sleep(0.4)
    assert claimed.get_idempotency_record("k:1") is None
    out = claimed.enroll("cat", [image("b")], claim("k:1", enrolled, fingerprint="new"))
    assert out.item.count == 2
    record = claimed.get_idempotency_record("k:1")
    assert record is not None and record.fingerprint == "new"


def test_records_survive_close_and_reopen(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.claim_model_identity(IDENTITY)
    first = store.enroll("cat", [image("a")], claim("k:1", enrolled))
    store.close()
    reopened = store_factory()
    with pytest.raises(IdempotentReplay) as caught:
        reopened.enroll("cat", [image("a")], claim("k:1", enrolled))
    assert caught.value.response == enrolled(first)


def test_concurrent_retries_with_one_key_write_once(store_factory: StoreFactory) -> None:
    """Eight clients (each its own connection, like replicas) send one request with one key:
    one writes, the others get its answer."""
    stores = [store_factory() for _ in range(8)]
    stores[0].claim_model_identity(IDENTITY)

    def attempt(i: int) -> StoredResponse:
        images = [image(f"img-{i}")]  # distinct bytes: a second write would be visible
        try:
            return enrolled(stores[i].enroll("cat", images, claim("k:race", enrolled)))
        except IdempotentReplay as replay:
            return replay.response

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(8)))
    assert len(set(answers)) == 1
    assert stores[0].counts() == (1, 1)
