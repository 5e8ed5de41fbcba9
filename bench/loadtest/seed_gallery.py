"""A gallery enrolled before searching (searching an empty index measures nothing), under
fresh item ids, and removed again afterwards."""

from __future__ import annotations

from functools import partial

import httpx

from bench.loadtest.item_ledger import ItemLedger
from bench.loadtest.photo_set import PhotoSet
from client.write_retries import send_idempotent_async


class SeedGallery:
    """``copies`` items per source photo, each enrolled with all of that photo's views.

    ``ledger``: where the ids go; pass the run's own so its final sweep removes them even when
    seeding fails half-way."""

    def __init__(
        self,
        photos: PhotoSet,
        *,
        id_prefix: str,
        copies: int = 4,
        ledger: ItemLedger | None = None,
    ) -> None:
        if copies < 1:
            raise ValueError("copies must be >= 1")
        self._photos = photos
        self._prefix = id_prefix
        self._copies = copies
        self.ledger = ledger if ledger is not None else ItemLedger()
        self.item_ids: list[str] = []

    async def enroll(self, client: httpx.AsyncClient) -> int:
        """Enroll every item one request at a time; returns the number of items. A 503 (an
        overloaded or briefly unavailable service, an unknown outcome) is retried under one
        Idempotency-Key, as any client should; what still fails stops the seeding."""
        for copy in range(self._copies):
            for name, views in self._photos.views.items():
                item_id = f"{self._prefix}g{copy}-{name}"
                self.ledger.record(item_id)
                self.item_ids.append(item_id)
                files = [("images", (f"{n}.jpg", v, "image/jpeg")) for n, v in enumerate(views)]
                response = await send_idempotent_async(
                    partial(self._post, client, f"/items/{item_id}/images", files)
                )
                self.ledger.answered(item_id)
                if response.status_code not in (200, 201):  # 200: already seeded
                    raise RuntimeError(
                        f"seeding {item_id} failed: {response.status_code} {response.text[:200]}"
                    )
        return len(self.item_ids)

    @staticmethod
    async def _post(
        client: httpx.AsyncClient,
        path: str,
        files: list[tuple[str, tuple[str, bytes, str]]],
        headers: dict[str, str],
    ) -> httpx.Response:
        return await client.post(path, files=files, headers=headers)

    async def remove(self, client: httpx.AsyncClient) -> int:
        """Delete the gallery; returns how many items were deleted. What fails stays in the
        ledger."""
        ids, self.item_ids = self.item_ids, []
        return (await self.ledger.delete(client, ids)).deleted
