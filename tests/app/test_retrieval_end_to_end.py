"""Enroll several views of real photos per item; a different view must find its item first.

On the default model: retrieval quality is what this test is about.
"""

from __future__ import annotations

from pathlib import Path

from tests.app.conftest import ServiceFactory


def test_views_of_real_photos_find_their_item(
    service_factory: ServiceFactory,
    default_model_path: Path,
    photo_views: dict[str, list[bytes]],
) -> None:
    with service_factory(model_path=default_model_path) as client:
        for item, views in photo_views.items():
            files = [
                ("images", (f"{item}-{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views[:4])
            ]
            r = client.post(f"/items/{item}/images", files=files)
            assert r.status_code == 201, r.text
            assert r.json()["image_count"] == 4
        misses = []
        for item, views in photo_views.items():
            for view in views[4:]:
                r = client.post("/search", params={"k": 3}, files={"image": ("q.jpg", view)})
                assert r.status_code == 200, r.text
                results = r.json()["results"]
                assert len(results) == 3
                scores = [hit["score"] for hit in results]
                assert scores == sorted(scores, reverse=True)
                if results[0]["item_id"] != item:
                    misses.append((item, results))
        assert not misses, misses
