"""Load-test scenarios: which request the ``i``-th arrival is, and what to clean up after.

Enrollment always uses a fresh item id (enrolling the same bytes again is a no-op that would
measure nothing), and every id it creates is deleted in ``cleanup``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Protocol

import httpx

from deploy.loadtest.request_sample import Operation

SEARCH_ENDPOINT = "POST /search"
ENROLL_ENDPOINT = "POST /items/{item_id}/images"
# Deletions during cleanup run this many at a time: quick, without flooding a small server.
_CLEANUP_CONCURRENCY = 8


class Scenario(Protocol):
    name: str

    def operation(self, i: int) -> Operation: ...

    async def cleanup(self, client: httpx.AsyncClient) -> int:
        """Undo what the scenario wrote; returns how many items were deleted."""
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
    """Every arrival enrolls one photo under a new item id ``<prefix><uuid4 hex>``."""

    name = "enroll"

    def __init__(self, photos: Sequence[bytes], *, id_prefix: str = "loadtest-") -> None:
        if not photos:
            raise ValueError("no photos")
        self._photos = list(photos)
        self._prefix = id_prefix
        self.created: list[str] = []

    def operation(self, i: int) -> Operation:
        photo = self._photos[i % len(self._photos)]
        item_id = f"{self._prefix}{uuid.uuid4().hex}"
        # Recorded before sending: a request that timed out may still have been committed.
        self.created.append(item_id)

        async def send(client: httpx.AsyncClient) -> int:
            files = {"images": ("photo.jpg", photo, "image/jpeg")}
            response = await client.post(f"/items/{item_id}/images", files=files)
            return response.status_code

        return Operation(ENROLL_ENDPOINT, send)

    async def cleanup(self, client: httpx.AsyncClient) -> int:
        ids, self.created = self.created, []
        return await delete_items(client, ids)


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


async def delete_items(client: httpx.AsyncClient, item_ids: Sequence[str]) -> int:
    """``DELETE /items/{id}`` for each id; returns how many existed (204). 404 is fine."""
    gate = asyncio.Semaphore(_CLEANUP_CONCURRENCY)

    async def delete(item_id: str) -> bool:
        async with gate:
            response = await client.delete(f"/items/{item_id}")
            if response.status_code not in (204, 404):
                raise RuntimeError(f"DELETE /items/{item_id} answered {response.status_code}")
            return response.status_code == 204

    return sum(await asyncio.gather(*(delete(i) for i in item_ids)))
