"""The idempotency rules shared by both backends, without a store."""

from __future__ import annotations

import numpy as np
import pytest

from store.idempotency import (
    IdempotencyClaim,
    IdempotencyKeyReusedError,
    IdempotencyRecord,
    IdempotentReplay,
    replay_if_recorded,
    with_response_record,
)
from store.mutations import RecordResponse, StoredResponse
from store.records import DeleteOutcome, ItemState
from store.write_plan import WritePlan

ANSWER = StoredResponse(204, b"", None)


def record(fingerprint: str = "fp", expires_at: float = 100.0) -> IdempotencyRecord:
    return IdempotencyRecord(fingerprint, ANSWER, expires_at)


def test_no_record_or_an_expired_one_lets_the_write_run() -> None:
    replay_if_recorded(None, "fp", now=50.0)
    replay_if_recorded(record(expires_at=100.0), "fp", now=100.0)  # expiry is exclusive
    replay_if_recorded(record(fingerprint="other", expires_at=10.0), "fp", now=50.0)


def test_a_live_record_of_the_same_request_is_replayed() -> None:
    with pytest.raises(IdempotentReplay) as caught:
        replay_if_recorded(record(), "fp", now=99.9)
    assert caught.value.response == ANSWER


def test_a_live_record_of_another_request_is_a_reused_key() -> None:
    with pytest.raises(IdempotencyKeyReusedError):
        replay_if_recorded(record(fingerprint="other"), "fp", now=50.0)


def test_the_record_is_the_plans_last_mutation_rendered_from_its_outcome() -> None:
    gone = DeleteOutcome(ItemState("cat", 0, np.zeros(4)), ["h"])
    plan = WritePlan(gone, ())
    rendered: list[DeleteOutcome] = []

    def respond(outcome: DeleteOutcome) -> StoredResponse:
        rendered.append(outcome)
        return StoredResponse(204, b"", None)

    claim = IdempotencyClaim("k1:abc", "fp", 60.0, respond)
    recorded = with_response_record(plan, claim, now=1000.0)
    assert rendered == [gone]
    assert recorded.outcome is gone
    assert recorded.mutations == (
        RecordResponse("k1:abc", "fp", StoredResponse(204, b"", None), 1060.0, 1000.0),
    )
    assert with_response_record(plan, None) is plan
