"""Load-test scenarios: which request the ``i``-th arrival is, and what to clean up after.

Enrollment always uses a fresh item id (enrolling the same bytes again is a no-op that would
measure nothing); every id it sends is recorded in an ``ItemLedger`` and deleted in
``cleanup``, and whatever that cannot delete stays in the ledger for the run's final sweep.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from bench.loadtest.item_ledger import ItemLedger
from bench.loadtest.request_sample import Operation

SEARCH_ENDPOINT = "POST /search"
ENROLL_ENDPOINT = "POST /items/{item_id}/images"


@dataclass(frozen=True)
class Acknowledged:
    """An enrollment the service acknowledged (2xx): what was sent and the image ids it
    answered with, so a run can check later that they are still there, or send the same write
    to another service."""

    item_id: str
    photo: bytes
    image_ids: tuple[str, ...]


class Scenario(Protocol):
    name: str

    def operation(self, i: int) -> Operation: ...

    async def cleanup(self, client: httpx.AsyncClient) -> int:
        """Undo what the scenario wrote; returns how many items were deleted. Must not raise
        for a failed deletion (the ledger keeps those for the final sweep)."""
        ...


class SearchScenario:
    """Every arrival is one ``POST /search?k=...`` with the next photo, round robin."""

    name = "search"

    def __init__(self, photos: Sequence[bytes], *, k: int = 10) -> None:
        if not photos:
            raise ValueError("no photos")
        self._photos = list(photos)
        self._k = k

    def operation(self, i: int) -> Operation:
        photo = self._photos[i % len(self._photos)]

        async def send(client: httpx.AsyncClient) -> int:
            files = {"image": ("query.jpg", photo, "image/jpeg")}
            response = await client.post("/search", params={"k": self._k}, files=files)
            return response.status_code

        return Operation(SEARCH_ENDPOINT, send)

    async def cleanup(self, client: httpx.AsyncClient) -> int:
        return 0


class EnrollScenario:
    """Every arrival enrolls one photo under a new item id ``<prefix><uuid4 hex>``.

    ``ledger``: where the ids go; pass the run's own so its final sweep sees them."""

    name = "enroll"

    def __init__(
        self,
        photos: Sequence[bytes],
        *,
        id_prefix: str = "loadtest-",
        ledger: ItemLedger | None = None,
    ) -> None:
        if not photos:
            raise ValueError("no photos")
        self._photos = list(photos)
        self._prefix = id_prefix
        self.ledger = ledger if ledger is not None else ItemLedger()
        # Ids sent since the last cleanup: what this level's cleanup deletes.
        self.created: list[str] = []
        # Every acknowledged enrollment, in the order the answers came.
        self.acknowledged: list[Acknowledged] = []

    def operation(self, i: int) -> Operation:
        photo = self._photos[i % len(self._photos)]
        item_id = f"{self._prefix}{uuid.uuid4().hex}"

        async def send(client: httpx.AsyncClient) -> int:
            # Recorded when actually sent (an arrival dropped at the in-flight cap creates
            # nothing), before the request leaves: one that times out may still commit.
            self.ledger.record(item_id)
            self.created.append(item_id)
            files = {"images": ("photo.jpg", photo, "image/jpeg")}
            response = await client.post(f"/items/{item_id}/images", files=files)
            self.ledger.answered(item_id)
            if response.is_success:
                ids = tuple(response.json()["image_ids"])
                self.acknowledged.append(Acknowledged(item_id, photo, ids))
            return response.status_code

        return Operation(ENROLL_ENDPOINT, send)

    async def cleanup(self, client: httpx.AsyncClient) -> int:
        ids, self.created = self.created, []
        return (await self.ledger.delete(client, ids)).deleted


class MixScenario:
    """Search and enrollment interleaved: one enrollment in every ``enroll_every`` arrivals
    (10 → the 90/10 search/enroll mix), spread evenly rather than in bursts."""

    def __init__(
        self, search: SearchScenario, enroll: EnrollScenario, *, enroll_every: int = 10
    ) -> None:
        if enroll_every < 1:
            raise ValueError("enroll_every must be >= 1")
        self._search = search
        self._enroll = enroll
        self._every = enroll_every
        self.name = f"mix{100 - 100 // enroll_every}-{100 // enroll_every}"

    def operation(self, i: int) -> Operation:
        if i % self._every == self._every - 1:
            return self._enroll.operation(i)
        return self._search.operation(i)

    async def cleanup(self, client: httpx.AsyncClient) -> int:
        return await self._enroll.cleanup(client)
