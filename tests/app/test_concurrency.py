"""Concurrent enrollments lose nothing; an answered enrollment is visible to the next search."""

from __future__ import annotations

import io
import random
from concurrent.futures import ThreadPoolExecutor

import httpx

from model.data.sample_photos import load_photo, random_view
from tests.app.conftest import ServiceFactory


def distinct_views(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    photo = load_photo("stereo_motorcycle")
    out = []
    for _ in range(n):
        view = random_view(photo, rng)
        view.thumbnail((160, 160))
        buf = io.BytesIO()
        view.save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    assert len(set(out)) == n
    return out


def test_concurrent_enrollments_to_one_item(service_factory: ServiceFactory) -> None:
    # Every one of the 8 senders admitted: this is about concurrent writes, not load shedding.
    with service_factory(admission_queue=8) as client:
        _enroll_concurrently_to_one_item(client)


def _enroll_concurrently_to_one_item(client: httpx.Client) -> None:
    views = distinct_views(24, seed=7)
    url = str(client.base_url)

    def send(blob: bytes) -> int:
        with httpx.Client(base_url=url, timeout=120) as c:
            r = c.post("/items/moto/images", files={"images": ("v.jpg", blob)})
            return r.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, views))
    assert statuses == [201] * len(views)
    item = client.get("/items/moto").json()
    assert item["image_count"] == len(views) and len(set(item["image_ids"])) == len(views)
    # The index holds exactly the centroid of all 24 (not a stale intermediate one).
    retriever = client.app.state.service.retriever  # type: ignore[attr-defined]
    from index.centroid_math import l2_normalize

    raw = retriever.embedder.embed(retriever._decode(views, ["v"] * len(views)))
    got = retriever.index.get("moto")
    assert float(got @ l2_normalize(raw.mean(axis=0))) > 1 - 1e-6


def test_enrollment_is_visible_to_the_next_search(client: httpx.Client) -> None:
    views = distinct_views(6, seed=11)
    for i, blob in enumerate(views):
        r = client.post(f"/items/v{i}/images", files={"images": ("v.jpg", blob)})
        assert r.status_code == 201
        hits = client.post("/search", params={"k": 1}, files={"image": ("q.jpg", blob)}).json()
        assert hits["results"][0]["item_id"] == f"v{i}"


def test_searches_run_in_parallel_with_writes(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    # All 6 senders admitted: this is about reads beside writes, not load shedding.
    with service_factory(admission_queue=6) as client:
        _search_while_writing(client, photo_views)


def _search_while_writing(client: httpx.Client, photo_views: dict[str, list[bytes]]) -> None:
    url = str(client.base_url)
    for name in ("astronaut", "coffee"):
        client.post(f"/items/{name}/images", files={"images": ("a.jpg", photo_views[name][0])})
    query = photo_views["coffee"][4]

    def search(_: int) -> str:
        with httpx.Client(base_url=url, timeout=120) as c:
            return str(
                c.post("/search", files={"image": ("q.jpg", query)}).json()["results"][0]["item_id"]
            )

    def write(i: int) -> int:
        with httpx.Client(base_url=url, timeout=120) as c:
            blob = photo_views["china"][i % 6]
            return c.post(f"/items/w{i}/images", files={"images": ("w.jpg", blob)}).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        searches = [pool.submit(search, i) for i in range(12)]
        writes = [pool.submit(write, i) for i in range(6)]
        assert all(f.result() == "coffee" for f in searches)
        assert all(f.result() == 201 for f in writes)
