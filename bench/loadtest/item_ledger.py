"""Every item id a load-test run may have created, until the service confirms it is gone.

The load test runs against a user's service, often next to real data, so whatever it enrolled
must be deleted even when a level fails half-way, a DELETE answers 5xx, or an enrollment timed
out on the client but still commits on the server. Ids are recorded *before* their enrollment
is sent and leave the ledger only on a 204, or on a 404 once no late commit is possible.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx

# Deletions run this many at a time: quick, without flooding a small server.
_DELETE_CONCURRENCY = 8
# Pause before the one retry of failed deletions, so a brief overload or store hiccup (503)
# can pass instead of failing twice in a row.
_RETRY_PAUSE_S = 1.0
# How many of the ids that could not be removed a report lists (the count is always complete).
_LISTED_IDS = 20


@dataclass(frozen=True)
class DeleteResult:
    """``deleted``: answered 204. ``absent``: answered 404 (never committed, or already gone).
    ``failed``: still an error after one retry (5xx, other status, no answer)."""

    deleted: int
    absent: int
    failed: tuple[str, ...]


@dataclass(frozen=True)
class CleanupReport:
    """The end-of-run sweep. ``tracked``: ids the run recorded (seed gallery, enrollments, even
    those never answered); ``deleted``: confirmed deleted (204) during the run or in the sweep;
    ``not_removed``: ids that may still exist on the service (``not_removed_ids`` lists the
    first few)."""

    tracked: int
    deleted: int
    not_removed: int
    not_removed_ids: list[str]


class ItemLedger:
    def __init__(self) -> None:
        # item id → True while its enrollment has not been answered: the server may still be
        # working on it (client timeout, lost connection), so a 404 does not yet prove it gone.
        self._pending: dict[str, bool] = {}
        self._recorded = 0
        self._deleted = 0

    def record(self, item_id: str) -> None:
        """Call before sending the enrollment of ``item_id``."""
        if item_id not in self._pending:
            self._recorded += 1
        self._pending[item_id] = True

    def answered(self, item_id: str) -> None:
        """Call once the enrollment of ``item_id`` got any HTTP answer: the server has finished
        with it, so it either exists now or never will."""
        if item_id in self._pending:
            self._pending[item_id] = False

    @property
    def pending(self) -> list[str]:
        return list(self._pending)

    @property
    def unanswered(self) -> list[str]:
        return [i for i, open_ in self._pending.items() if open_]

    async def delete(
        self, client: httpx.AsyncClient, item_ids: Iterable[str], *, final: bool = False
    ) -> DeleteResult:
        """``DELETE /items/{id}`` for each of ``item_ids``, tolerating 404 and retrying every
        other outcome once. Never raises for an HTTP status or a transport error: what could
        not be deleted stays in the ledger for a later sweep. A 404 for an unanswered
        enrollment keeps the id too, unless ``final``."""
        ids = list(dict.fromkeys(item_ids))
        deleted, absent, failed = await self._delete_pass(client, ids, final=final)
        if failed:
            await asyncio.sleep(_RETRY_PAUSE_S)
            d2, a2, failed = await self._delete_pass(client, failed, final=final)
            deleted, absent = deleted + d2, absent + a2
        return DeleteResult(deleted, absent, tuple(failed))

    async def sweep(
        self,
        client: httpx.AsyncClient,
        *,
        grace_s: float,
        log: Callable[[str], None] | None = None,
    ) -> CleanupReport:
        """Delete everything still in the ledger. Enrollments that never got an answer may
        still commit after their DELETE found nothing, so those are deleted once more after
        ``grace_s`` (the server has had that much longer to finish them). ``log`` hears why
        the sweep pauses."""
        unanswered = set(self.unanswered)
        await self.delete(client, self.pending)
        late = [i for i in self.pending if i in unanswered]
        if late:
            if log is not None:
                log(
                    f"cleanup: {len(late)} enrollments were never answered and may still "
                    f"commit; deleting them again in {grace_s:g} s"
                )
            await asyncio.sleep(grace_s)
            await self.delete(client, late, final=True)
        left = self.pending
        return CleanupReport(
            tracked=self._recorded,
            deleted=self._deleted,
            not_removed=len(left),
            not_removed_ids=left[:_LISTED_IDS],
        )

    async def _delete_pass(
        self, client: httpx.AsyncClient, ids: Sequence[str], *, final: bool
    ) -> tuple[int, int, list[str]]:
        gate = asyncio.Semaphore(_DELETE_CONCURRENCY)

        async def one(item_id: str) -> int | None:
            async with gate:
                try:
                    return (await client.delete(f"/items/{item_id}")).status_code
                except httpx.HTTPError:
                    return None

        statuses = await asyncio.gather(*(one(i) for i in ids))
        deleted, absent, failed = 0, 0, []
        for item_id, status in zip(ids, statuses, strict=True):
            if status == 204:
                deleted += 1
                self._deleted += 1
                self._pending.pop(item_id, None)
            elif status == 404:
                absent += 1
                if final or not self._pending.get(item_id, False):
                    self._pending.pop(item_id, None)
            else:
                failed.append(item_id)
        return deleted, absent, failed
