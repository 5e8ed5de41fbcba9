"""Idempotency keys: a write's answer, recorded in the write's own transaction, replayed on retry.

A client that sends ``Idempotency-Key`` with a write and never gets the answer (a timeout, a
503 "outcome unknown") can send the same request again: if the first one committed, the store
holds its answer under that key and the retry gets it back without writing anything; if it did
not, the retry writes. Because the record commits with the write or not at all, "committed" and
"recorded" never disagree, on one replica or across replicas sharing the store.

A record is keyed by the caller's scope (its API key id) and the client's key, carries a
fingerprint of the request (method, path, body content), and lives ``ttl_s`` (a day by
default). The same key with another fingerprint is a client bug: ``IdempotencyKeyReusedError``.
Only committed writes are recorded; a refused request (4xx) or a failed one leaves no record,
so retrying it runs it again.

Both backends call :func:`replay_if_recorded` inside their write transaction, before planning,
and append the plan's :class:`~store.mutations.RecordResponse` via :func:`with_response_record`
(through ``store.item_versions.to_commit``, which stamps the version first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic

from store.errors import StoreError
from store.mutations import RecordResponse, StoredResponse
from store.write_plan import OutcomeT, WritePlan

DEFAULT_TTL_S = 24 * 3600.0


@dataclass(frozen=True)
class IdempotencyRecord:
    """What the store holds under a key: the request's fingerprint and the answer it got."""

    fingerprint: str
    response: StoredResponse
    expires_at: float  # Unix seconds (wall clock: records outlive processes and cross replicas)

    def live(self, now: float) -> bool:
        return now < self.expires_at


@dataclass(frozen=True)
class IdempotencyClaim(Generic[OutcomeT]):
    """A write's request to be recorded under ``key`` once it commits.

    ``respond`` renders the answer from the write's outcome (pure: a Redis transaction retried
    on a WATCH conflict renders it again from its new outcome).
    """

    key: str  # the caller's scope and the client's key, e.g. "<key id>:<Idempotency-Key>"
    fingerprint: str  # hex digest of method, path and body content
    ttl_s: float
    respond: Callable[[OutcomeT], StoredResponse]


class IdempotentReplay(Exception):
    """The key already holds this request's answer: give it back, write nothing.

    Not an error of the write; the service answers ``response`` as it was first answered.
    """

    def __init__(self, response: StoredResponse) -> None:
        super().__init__(f"replayed answer {response.status}")
        self.response = response


class IdempotencyKeyReusedError(StoreError):
    """The key holds the answer to a different request (HTTP 422)."""


def replay_if_recorded(
    record: IdempotencyRecord | None, fingerprint: str, now: float | None = None
) -> None:
    """Raise ``IdempotentReplay`` for a live record of this request, ``IdempotencyKeyReusedError``
    for a live record of another one; return if there is none (or it expired)."""
    if record is None or not record.live(time.time() if now is None else now):
        return
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReusedError(
            "this Idempotency-Key was already used with a different request (method, path or "
            "body); use a new key for a new request"
        )
    raise IdempotentReplay(record.response)


def with_response_record(
    plan: WritePlan[OutcomeT], claim: IdempotencyClaim[OutcomeT] | None, now: float | None = None
) -> WritePlan[OutcomeT]:
    """``plan`` with the claim's record as its last mutation (``plan`` itself if no claim).

    Even a plan that writes nothing else (re-enrolled bytes) records its answer, so its retry
    is answered the same way.
    """
    if claim is None:
        return plan
    at = time.time() if now is None else now
    record = RecordResponse(
        key=claim.key,
        fingerprint=claim.fingerprint,
        response=claim.respond(plan.outcome),
        expires_at=at + claim.ttl_s,
        now=at,
    )
    return replace(plan, mutations=(*plan.mutations, record))
