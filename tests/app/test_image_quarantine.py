"""Quarantine over real HTTP on real photos (tiny real model): with
``RETRIEVAL_QUARANTINE_SUSPECTS`` a photo of one item enrolled under another is kept but held
out of its item's centroid and evidence; ``PATCH /items/{item_id}/images/{image_id}`` releases
it and holds it out again. Every centroid is checked against a brute force over the store's
embeddings of the counted images."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import numpy as np

from tests.app.conftest import ServiceFactory
from tests.app.test_suspect_images_route import ITEMS, MARGIN, files, store_of, unit


def assert_centroid_is_of_counted_images(client: httpx.Client, item_id: str) -> list[str]:
    """The index's centroid of ``item_id`` equals the normalised sum of its counted images'
    stored embeddings; returns the quarantined image ids the store lists."""
    images = store_of(client).item_images([item_id])[item_id]
    counted = [r.embedding.astype(np.float64) for r in images if not r.quarantined]
    index = client.app.state.service.retriever.index  # type: ignore[attr-defined]
    np.testing.assert_allclose(index.get(item_id), unit(np.sum(counted, axis=0)), atol=1e-6)
    return [r.image_id for r in images if r.quarantined]


def search_hit(client: httpx.Client, query: bytes, item_id: str) -> dict[str, object]:
    r = client.post("/search", files=files([query]), params={"k": len(ITEMS)})
    assert r.status_code == 200, r.text
    return next(h for h in r.json()["results"] if h["item_id"] == item_id)


def test_a_flagged_photo_is_kept_out_of_its_item_until_released(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory(suspect_margin=MARGIN, quarantine_suspects=True) as client:
        for name in ITEMS:
            r = client.post(f"/items/{name}/images", files=files(photo_views[name][:3]))
            assert r.status_code == 201 and r.json()["suspects"] == [], r.text
        stray_bytes = photo_views["chelsea"][4]
        before = search_hit(client, stray_bytes, "astronaut")
        sent = files([photo_views["astronaut"][3], stray_bytes])
        r = client.post("/items/astronaut/images", files=sent)
        assert r.status_code == 201, r.text
        body = r.json()
        stray = body["image_ids"][1]
        assert [(s["image_id"], s["quarantined"]) for s in body["suspects"]] == [(stray, True)]
        assert body["image_count"] == 4  # counted: 3 + the genuine view
        item = client.get("/items/astronaut").json()
        # Every image listed; counted as everywhere else: those in the centroid.
        assert len(item["image_ids"]) == 5 and item["quarantined_image_ids"] == [stray]
        assert item["image_count"] == 4
        listed = client.get("/items").json()["items"]
        assert {i["item_id"]: i["image_count"] for i in listed}["astronaut"] == 4
        assert assert_centroid_is_of_counted_images(client, "astronaut") == [stray]
        # Out of the evidence: the stray photo itself as the query never names it.
        hit = search_hit(client, stray_bytes, "astronaut")
        assert hit["best_image_id"] != stray and hit["image_count"] == 4
        assert hit["centroid_score"] != before["centroid_score"]  # the genuine view counted
        listed = client.get("/items/astronaut/suspects").json()["suspects"]
        assert [(s["image_id"], s["quarantined"]) for s in listed] == [(stray, True)]
        # Its bytes are kept.
        assert client.get(f"/items/astronaut/images/{stray}").content == stray_bytes

        # Released: counted again, the centroid and the evidence follow.
        key = {"Idempotency-Key": uuid.uuid4().hex}
        r = client.patch(
            f"/items/astronaut/images/{stray}", json={"quarantined": False}, headers=key
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "item_id": "astronaut",
            "image_id": stray,
            "quarantined": False,
            "image_count": 5,
            "position": r.headers["X-Retrieval-Position"],
        }
        replay = client.patch(
            f"/items/astronaut/images/{stray}", json={"quarantined": False}, headers=key
        )
        assert replay.headers["Idempotent-Replayed"] == "true" and replay.content == r.content
        assert assert_centroid_is_of_counted_images(client, "astronaut") == []
        assert client.get("/items/astronaut").json()["quarantined_image_ids"] == []
        assert search_hit(client, stray_bytes, "astronaut")["best_image_id"] == stray

        # Held out again by hand; a second identical request writes nothing.
        r = client.patch(f"/items/astronaut/images/{stray}", json={"quarantined": True})
        assert r.status_code == 200 and r.json()["image_count"] == 4
        same = client.patch(f"/items/astronaut/images/{stray}", json={"quarantined": True})
        assert same.json()["position"] == r.json()["position"]
        assert assert_centroid_is_of_counted_images(client, "astronaut") == [stray]

        # Deleting the quarantined image leaves the counted ones' centroid as it was.
        assert client.delete(f"/items/astronaut/images/{stray}").status_code == 204
        assert assert_centroid_is_of_counted_images(client, "astronaut") == []
        assert client.get("/items/astronaut").json()["image_count"] == 4


def test_bad_quarantine_requests_are_problems_and_write_nothing(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory() as client:
        r = client.post("/items/solo/images", files=files([photo_views["coffee"][0]]))
        only = r.json()["image_ids"][0]
        version = store_of(client).last_version()
        # The last counted image: 409, nothing written.
        r = client.patch(f"/items/solo/images/{only}", json={"quarantined": True})
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "last image counted" in r.json()["detail"]
        for path, body in (
            (f"/items/solo/images/{'0' * 32}", {"quarantined": True}),
            (f"/items/nobody/images/{only}", {"quarantined": True}),
        ):
            r = client.patch(path, json=body)
            assert r.status_code == 404, r.text
        for bad in ({"quarantined": "maybe"}, {}, [True]):
            r = client.patch(f"/items/solo/images/{only}", json=bad)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
        item = client.get("/items/solo").json()
        assert item["quarantined_image_ids"] == [] and item["image_count"] == 1
        assert store_of(client).last_version() == version  # nothing was written


def test_an_item_of_one_image_only_flags_unless_told_otherwise(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]], tmp_path: Path
) -> None:
    for min_images, held in ((2, False), (1, True)):
        settings = {
            "data_dir": tmp_path / f"min-{min_images}",
            "suspect_margin": MARGIN,
            "quarantine_suspects": True,
            "quarantine_min_images": min_images,
        }
        with service_factory(**settings) as client:
            for name in ITEMS:
                count = 1 if name == "rocket" else 3
                r = client.post(f"/items/{name}/images", files=files(photo_views[name][:count]))
                assert r.status_code == 201, r.text
            # A view of chelsea enrolled under rocket, which holds one image so far.
            r = client.post("/items/rocket/images", files=files([photo_views["chelsea"][4]]))
            suspects = r.json()["suspects"]
            assert [s["quarantined"] for s in suspects] == [held], (min_images, suspects)
            assert r.json()["image_count"] == (1 if held else 2)
