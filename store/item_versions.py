"""Item versions: every committed write takes the next number of the store's write counter.

A backend takes the version inside its write transaction (SQLite: a counter row under the write
lock; Redis: ``INCR`` after the transaction's ``WATCH``es, so a write that commits after
another write to the same item has read that one's state, and so has a larger number), then
calls :func:`to_commit`: the outcome's state carries the version, and a ``RecordChange``
follows the plan's mutations so the version is kept with the item and fed to replicas; the
idempotency record, if any, comes after it.

Versions are global, not per item, so a state of an item deleted and enrolled again is still
newer than its deletion: a replica applies a state only if its version is larger than the one
it holds (deletions included), whatever order it learns them in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import replace

from store.idempotency import IdempotencyClaim, with_response_record
from store.mutations import RecordChange
from store.records import DeleteOutcome, EnrollOutcome, PatchOutcome
from store.write_plan import OutcomeT, WritePlan


def to_commit(
    plan: WritePlan[OutcomeT],
    next_version: Callable[[], int],
    claim: IdempotencyClaim[OutcomeT] | None,
) -> WritePlan[OutcomeT]:
    """What a backend applies in its transaction for ``plan``: a plan that writes takes
    ``next_version()`` (called only then: a write that writes nothing takes no number) and its
    change record; the idempotency record, rendered from that stamped outcome, comes last."""
    if plan.mutations:
        plan = with_change(plan, next_version())
    return with_response_record(plan, claim)


def with_change(plan: WritePlan[OutcomeT], version: int) -> WritePlan[OutcomeT]:
    """``plan`` with its outcome's item state stamped ``version`` and a ``RecordChange`` of that
    state appended. A plan that writes nothing (bytes the item holds already) stays as is: no
    write, no version."""
    if not plan.mutations:
        return plan
    state = replace(plan.outcome.item, version=version)
    outcome: EnrollOutcome | DeleteOutcome | PatchOutcome = replace(plan.outcome, item=state)
    return WritePlan(outcome, (*plan.mutations, RecordChange(state)))  # type: ignore[arg-type]


def versions_digest(pairs: Iterable[tuple[str, int]]) -> str:
    """SHA-256 hex of ``(item id, version)`` pairs in item-id order: two holders of the same
    items at the same versions (a replica's index and the store) give the same digest."""
    digest = hashlib.sha256()
    for item_id, version in sorted(pairs):
        digest.update(f"{item_id}\0{version}\n".encode())
    return digest.hexdigest()
