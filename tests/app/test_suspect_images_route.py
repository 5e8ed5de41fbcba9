"""The enrollment quality gate over real HTTP on real photos (tiny real model): a photo of one
item enrolled under another is flagged in the enrollment's answer and by
``GET /items/{item_id}/suspects``, whose verdicts equal a brute force over the store's
embeddings; genuine views are not flagged; an idempotent replay answers the same suspects."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import numpy as np
import pytest

from store.store import Store
from tests.app.conftest import ServiceFactory

ITEMS = ("astronaut", "chelsea", "coffee", "rocket", "camera")
MARGIN, MIN_Z = 0.1, -8.0


def files(views: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"v{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def oracle(store: Store, item_id: str) -> dict[str, tuple[float, str | None, float, bool, bool]]:
    """image id -> (own, nearest other item, its cosine, closer, outside) from the store's
    raw embeddings: every centroid rebuilt from its images, the item's without the image."""
    states = {s.item_id: s for s in store.iter_item_states() if s.count}
    images = store.item_images(list(states))
    cents = {i: unit(np.sum([r.embedding for r in images[i]], axis=0)) for i in states}
    mine = images[item_id]
    out = {}
    for j, record in enumerate(mine):
        rest = [r.embedding.astype(np.float64) for k, r in enumerate(mine) if k != j]
        if not rest:
            continue
        q = unit(record.embedding.astype(np.float64))
        c = unit(np.sum(rest, axis=0))
        own = float(q @ c)
        scores = {i: float(q @ v) for i, v in cents.items() if i != item_id}
        best = max(scores, key=lambda i: (scores[i], i)) if scores else None
        other = -1.0 if best is None else scores[best]
        n = len(rest)
        spread = float(np.mean([unit(e) @ c for e in rest]))
        rho = (n * spread * spread - 1) / (n - 1) if n >= 2 else 0.82
        rho = min(max(rho, 0.05), 0.999)
        mu = n * rho / np.sqrt(n * (1 + (n - 1) * rho))
        z = (own - mu) / (1 - mu)
        out[record.image_id] = (own, best, other, other - own > MARGIN, z < MIN_Z)
    return out


def store_of(client: httpx.Client) -> Store:
    store: Store = client.app.state.service.retriever.store  # type: ignore[attr-defined]
    return store


def check_against_oracle(client: httpx.Client, item_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/items/{item_id}/suspects")
    assert r.status_code == 200, r.text
    body = r.json()
    expected = oracle(store_of(client), item_id)
    flagged = {i for i, v in expected.items() if v[3] or v[4]}
    assert [s["image_id"] for s in body["suspects"]] == [i for i in expected if i in flagged]
    for s in body["suspects"]:
        own, best, other, closer, outside = expected[s["image_id"]]
        assert s["own_score"] == pytest.approx(own, abs=1e-5)
        assert s["nearest_other_item"] == best
        assert s["nearest_other_score"] == pytest.approx(other, abs=1e-5)
        assert s["reasons"] == [
            r
            for r, on in (("closer_to_other_item", closer), ("outside_item_spread", outside))
            if on
        ]
    suspects: list[dict[str, Any]] = body["suspects"]
    return suspects


def test_a_photo_of_another_item_is_flagged_at_enrollment_and_listed(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory(suspect_margin=MARGIN, suspect_min_z=MIN_Z) as client:
        for name in ITEMS:
            r = client.post(f"/items/{name}/images", files=files(photo_views[name][:3]))
            assert r.status_code == 201, r.text
            assert r.json()["suspects"] == []  # genuine views
        for name in ITEMS:
            assert check_against_oracle(client, name) == []
        # A view of chelsea enrolled under astronaut, beside a genuine astronaut view, with a key.
        key = {"Idempotency-Key": uuid.uuid4().hex}
        sent = files([photo_views["astronaut"][3], photo_views["chelsea"][4]])
        r = client.post("/items/astronaut/images", files=sent, headers=key)
        assert r.status_code == 201, r.text
        body = r.json()
        stray = body["image_ids"][1]
        assert [s["image_id"] for s in body["suspects"]] == [stray]
        assert body["suspects"][0]["nearest_other_item"] == "chelsea"
        assert "closer_to_other_item" in body["suspects"][0]["reasons"]
        listed = check_against_oracle(client, "astronaut")
        assert [s["image_id"] for s in listed] == [stray]
        # The answer was recorded with its suspects: the replay is byte for byte the same.
        again = client.post("/items/astronaut/images", files=sent, headers=key)
        assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
        assert again.content == r.content
        # A one-image item has nothing to be compared with.
        r = client.post("/items/solo/images", files=files([photo_views["coffee"][5]]))
        assert r.json()["suspects"] == []
        assert client.get("/items/solo/suspects").json()["suspects"] == []
        assert client.get("/items/nobody/suspects").status_code == 404
