"""A gallery enrolled over real HTTP into a real service (the tiny artifact): what the
service-store data source is tested on."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from app.main import create_app
from app.settings import Settings
from tests.live_server import live_server

# Items per photo: each photo's views are shared out between this many items.
ITEMS_PER_PHOTO = 2


def gallery_items(photo_views: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    """``<photo>-a``, ``<photo>-b``, …: each photo's views shared out in turn (20 items of 3
    views from the 10 photos of ``photo_views``)."""
    items: dict[str, list[bytes]] = {}
    for name, views in photo_views.items():
        for n in range(ITEMS_PER_PHOTO):
            items[f"{name}-{'ab'[n]}"] = views[n::ITEMS_PER_PHOTO]
    return items


@contextmanager
def service(model_path: Path, data_dir: Path, **settings: Any) -> Iterator[httpx.Client]:
    """The real app under uvicorn on ``data_dir`` (SQLite unless ``redis_url`` is given),
    ready; a client on it."""
    app = create_app(Settings(model_path=model_path, data_dir=data_dir, **settings))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def enroll(client: httpx.Client, items: dict[str, list[bytes]]) -> None:
    """Each item in one request, its views in the given order."""
    for item, views in items.items():
        files = [("images", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(views)]
        r = client.post(f"/items/{item}/images", files=files)
        assert r.status_code == 201, r.text


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha1_fraction(text: str) -> float:
    """The oracle of the split's hash: SHA-1's first 64 bits over 2**64."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:16], 16) / 2.0**64
