"""A gallery enrolled before searching (searching an empty index measures nothing), under
fresh item ids, and removed again afterwards."""

from __future__ import annotations

import httpx

from deploy.loadtest.photo_set import PhotoSet
from deploy.loadtest.scenarios import delete_items


class SeedGallery:
    """``copies`` items per source photo, each enrolled with all of that photo's views."""

    def __init__(self, photos: PhotoSet, *, id_prefix: str, copies: int = 4) -> None:
        if copies < 1:
            raise ValueError("copies must be >= 1")
        self._photos = photos
        self._prefix = id_prefix
        self._copies = copies
        self.item_ids: list[str] = []

    async def enroll(self, client: httpx.AsyncClient) -> int:
        """Enroll every item one request at a time; returns the number of items."""
        for copy in range(self._copies):
            for name, views in self._photos.views.items():
                item_id = f"{self._prefix}g{copy}-{name}"
                self.item_ids.append(item_id)
                files = [("images", (f"{n}.jpg", v, "image/jpeg")) for n, v in enumerate(views)]
                response = await client.post(f"/items/{item_id}/images", files=files)
                if response.status_code != 201:
                    raise RuntimeError(
                        f"seeding {item_id} failed: {response.status_code} {response.text[:200]}"
                    )
        return len(self.item_ids)

    async def remove(self, client: httpx.AsyncClient) -> int:
        ids, self.item_ids = self.item_ids, []
        return await delete_items(client, ids)
