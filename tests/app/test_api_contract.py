"""The HTTP contract: paths, fields, response keys, idempotency, paging, deletes, ops endpoints."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from app.metrics import STAGES
from index.centroid_math import l2_normalize
from tests.app.metrics_text import metric_value
from tests.tiny_artifact import TINY_SPEC


def enroll(client: httpx.Client, item: str, blobs: list[bytes]) -> httpx.Response:
    files = [("images", (f"{i}.jpg", b, "image/jpeg")) for i, b in enumerate(blobs)]
    return client.post(f"/items/{item}/images", files=files)


def test_enroll_response_and_item_views(
    client: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    views = photo_views["chelsea"]
    r = enroll(client, "cat:1", views[:2])
    assert r.status_code == 201
    body = r.json()
    assert body["item_id"] == "cat:1" and body["image_count"] == 2 and len(body["image_ids"]) == 2
    r = client.get("/items/cat:1")
    assert r.status_code == 200
    assert r.json() == {
        "item_id": "cat:1",
        "image_count": 2,
        "image_ids": body["image_ids"],
        "attributes": {},
        "quarantined_image_ids": [],
    }


def test_enrollment_is_idempotent_by_content(
    client: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    a, b = photo_views["coffee"][:2]
    first = enroll(client, "mug", [a, a, b])  # the same bytes twice in one request
    assert first.status_code == 201
    ids = first.json()["image_ids"]
    assert first.json()["image_count"] == 2 and ids[0] == ids[1] != ids[2]
    assert first.json()["created"] == [True, False, True]
    again = enroll(client, "mug", [b, a])  # and again in a later request: nothing new, 200
    assert again.status_code == 200
    # Nothing written: the position is the first request's (the state it left).
    assert again.json() == {
        "item_id": "mug",
        "image_ids": [ids[2], ids[0]],
        "created": [False, False],
        "image_count": 2,
        "suspects": [],  # only images the request added are judged
        "position": first.json()["position"],
    }
    assert again.headers["x-retrieval-position"] == first.json()["position"]
    # One new file among duplicates: 201, and only that file created.
    c = photo_views["coffee"][2]
    mixed = enroll(client, "mug", [a, c])
    assert mixed.status_code == 201
    assert mixed.json()["created"] == [False, True] and mixed.json()["image_count"] == 3
    assert mixed.json()["image_ids"][0] == ids[0]
    # The same bytes in another item are that item's own image.
    other = enroll(client, "mug-2", [a])
    assert other.json()["image_count"] == 1 and other.json()["image_ids"][0] != ids[0]


def test_centroid_is_the_normalised_mean_of_raw_embeddings(
    client: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    views = photo_views["rocket"][:3]
    assert enroll(client, "rocket", views).status_code == 201
    retriever = client.app.state.service.retriever  # type: ignore[attr-defined]
    raw = retriever.embedder.embed(retriever._decode(views, ["a", "b", "c"]))
    expected = l2_normalize(raw.mean(axis=0))
    np.testing.assert_allclose(retriever.index.get("rocket"), expected, atol=1e-6)
    # A query equal to a gallery image scores exactly its cosine with the centroid.
    r = client.post("/search", params={"k": 1}, files={"image": ("q.jpg", views[0])})
    score = r.json()["results"][0]["score"]
    assert score == pytest.approx(float(l2_normalize(raw[0]) @ expected), abs=1e-5)


def test_search_k_min_score_and_empty_index(
    client: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    query = photo_views["astronaut"][5]
    r = client.post("/search", files={"image": ("q.jpg", query)})
    assert r.status_code == 200 and r.json() == {"results": []}
    for name in ("astronaut", "coins", "china"):
        assert enroll(client, name, photo_views[name][:2]).status_code == 201
    r = client.post("/search", files={"image": ("q.jpg", query)})
    results = r.json()["results"]
    assert results[0]["item_id"] == "astronaut" and len(results) == 3
    top = client.post("/search", params={"k": 1}, files={"image": ("q.jpg", query)})
    assert len(top.json()["results"]) == 1
    cut = results[1]["score"]
    r = client.post("/search", params={"min_score": cut}, files={"image": ("q.jpg", query)})
    assert [h["item_id"] for h in r.json()["results"]] == [h["item_id"] for h in results[:2]]


def test_listing_pages_through_items_in_id_order(
    client: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    blob = photo_views["camera"][0]
    names = [f"item-{i:02d}" for i in range(7)]
    for name in names:
        assert enroll(client, name, [blob]).status_code == 201
    seen, cursor = [], None
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/items", params=params).json()
        assert set(page) == {"items", "next_cursor"}
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [s["item_id"] for s in seen] == names
    assert all(s["image_count"] == 1 for s in seen)
    assert client.get("/items", params={"cursor": "%%%"}).status_code == 422


def test_deletes(client: httpx.Client, photo_views: dict[str, list[bytes]]) -> None:
    views = photo_views["flower"][:2]
    ids = enroll(client, "flower", views).json()["image_ids"]
    assert enroll(client, "other", photo_views["coins"][:1]).status_code == 201
    assert client.delete(f"/items/flower/images/{ids[0]}").status_code == 204
    assert client.get("/items/flower").json()["image_ids"] == [ids[1]]
    assert client.delete(f"/items/flower/images/{ids[0]}").status_code == 404
    # Deleting the last image deletes the item, and search no longer returns it.
    assert client.delete(f"/items/flower/images/{ids[1]}").status_code == 204
    assert client.get("/items/flower").status_code == 404
    r = client.post("/search", files={"image": ("q.jpg", views[0])})
    assert [h["item_id"] for h in r.json()["results"]] == ["other"]
    assert client.delete("/items/other").status_code == 204
    assert client.delete("/items/other").status_code == 404
    assert client.post("/search", files={"image": ("q.jpg", views[0])}).json() == {"results": []}


def test_operations_endpoints(client: httpx.Client, photo_views: dict[str, list[bytes]]) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").status_code == 200
    stages = ("decode", "inference", "index_search", "rerank", "index_update", "store_write")
    stages += ("blob_write",)
    assert set(stages) == set(STAGES)
    # The series exist at zero from the start, so only a rise shows a stage was timed.
    before = {s: metric_value(client, "retrieval_stage_seconds_count", stage=s) for s in stages}
    assert enroll(client, "x", photo_views["coins"][:2]).status_code == 201
    r = client.post("/search", files={"image": ("q.jpg", photo_views["coins"][3])})
    assert r.status_code == 200
    after = {s: metric_value(client, "retrieval_stage_seconds_count", stage=s) for s in stages}
    # One enrollment and one search: decode and inference twice, every other stage once.
    assert {s: after[s] - before[s] for s in stages} == {
        "decode": 2,
        "inference": 2,
        "index_search": 1,
        "rerank": 1,
        "index_update": 1,
        "store_write": 1,
        "blob_write": 1,
    }
    info = client.get("/info").json()
    assert info["embedding_dim"] == info["model"]["embedding_dim"] == TINY_SPEC.embedding_dim
    assert info["model"] == TINY_SPEC.to_dict()
    assert info["items"] == 1 and info["images"] == 2 and info["store_backend"] == "sqlite"
    assert info["execution_providers"][0] == "CPUExecutionProvider"
    assert info["limits"]["max_k"] == 100 and info["limits"]["max_request_bytes"] == 32 * 2**20
    metrics = client.get("/metrics").text
    assert 'http_requests_total{method="POST",route="/search",status="200"} 1.0' in metrics
    assert "retrieval_index_items 1.0" in metrics
    docs = client.get("/openapi.json").json()
    assert "/items/{item_id}/images" in docs["paths"]
    assert str(32 * 2**20) in docs["info"]["description"]
    assert client.get("/docs").status_code == 200
