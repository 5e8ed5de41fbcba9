"""/metrics tells the truth: every answered request with the status the client got, and the
store gauges equal to what the store holds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.app.conftest import ServiceFactory
from tests.app.metrics_text import metric_value, wait_for_metric
from tests.redis_server import REDIS_URL

SHARED_REDIS = REDIS_URL
ENROLL = {"method": "POST", "route": "/items/{item_id}/images"}


def test_413s_are_counted_with_the_status_the_client_got(service_factory: ServiceFactory) -> None:
    limit = 1 << 20
    big = b"\xff\xd8" + bytes(2 * limit)
    with service_factory(max_request_bytes=limit) as client:
        # Declared length over the limit: answered before the router runs.
        r = client.post("/items/x/images", files={"images": ("big.jpg", big)})
        assert r.status_code == 413
        assert wait_for_metric(client, "http_requests_total", 1, **ENROLL, status="413") == 1

        # Chunked, no declared length: caught while the form parser reads it.
        def body() -> Iterator[bytes]:
            yield b'--zz\r\nContent-Disposition: form-data; name="images"; filename="b.jpg"\r\n\r\n'
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]
            yield b"\r\n--zz--\r\n"

        r = client.post(
            "/items/x/images",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=zz"},
        )
        assert r.status_code == 413 and "content-length" not in r.request.headers
        assert wait_for_metric(client, "http_requests_total", 2, **ENROLL, status="413") == 2
        assert metric_value(client, "http_requests_total", **ENROLL, status="500") == 0
        assert metric_value(client, "http_request_duration_seconds_count", **ENROLL) == 2


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if request.param == "sqlite":
        yield {}
        return
    namespace = f"t{uuid.uuid4().hex[:8]}"
    yield {"redis_url": SHARED_REDIS, "redis_namespace": namespace}
    r = redis.Redis.from_url(SHARED_REDIS)
    keys = list(r.scan_iter(f"{namespace}:*"))
    if keys:
        r.delete(*keys)


def store_gauges(client: httpx.Client) -> tuple[float, float]:
    return (
        metric_value(client, "retrieval_store_items"),
        metric_value(client, "retrieval_store_images"),
    )


def enroll(client: httpx.Client, item: str, blobs: list[bytes]) -> list[str]:
    files = [("images", (f"{i}.jpg", b)) for i, b in enumerate(blobs)]
    r = client.post(f"/items/{item}/images", files=files)
    assert r.status_code == 201, r.text
    ids: list[str] = r.json()["image_ids"]
    return ids


def test_store_gauges_follow_enrollments_and_deletions(
    service_factory: ServiceFactory,
    backend: dict[str, Any],
    photo_views: dict[str, list[bytes]],
) -> None:
    a, b, c, d = photo_views["coins"][:4]
    with service_factory(**backend) as client:
        assert store_gauges(client) == (0, 0)
        mug = enroll(client, "mug", [a, b, a])  # a twice in one request: one image
        assert store_gauges(client) == (1, 2)
        enroll(client, "mug", [b, c])  # b is already there
        assert store_gauges(client) == (1, 3)
        enroll(client, "cup", [a, d])  # the same bytes in another item are its own image
        assert store_gauges(client) == (2, 5)
        assert client.post("/items/bad/images", files={"images": ("x", b"no")}).status_code == 422
        assert store_gauges(client) == (2, 5)
        assert client.delete(f"/items/mug/images/{mug[0]}").status_code == 204
        assert store_gauges(client) == (2, 4)
        assert client.delete("/items/cup").status_code == 204
        assert store_gauges(client) == (1, 2)
        assert client.delete("/items/cup").status_code == 404
        assert store_gauges(client) == (1, 2)
        info = client.get("/info").json()
        assert store_gauges(client) == (info["items"], info["images"]) == (1, 2)
    # A restart takes the gauges from the store while rebuilding the index.
    with service_factory(**backend) as client:
        assert store_gauges(client) == (1, 2)
        ids = client.get("/items/mug").json()["image_ids"]
        for image_id in ids:  # the last one deletes the item
            assert client.delete(f"/items/mug/images/{image_id}").status_code == 204
        assert store_gauges(client) == (0, 0)


def test_redis_gauges_include_other_replicas_writes(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    """Two replicas share one Redis: each one's gauges count the other's writes too."""
    namespace = f"t{uuid.uuid4().hex[:8]}"
    shared = {"redis_url": SHARED_REDIS, "redis_namespace": namespace}
    views = photo_views["china"]
    try:
        with service_factory(**shared) as one, service_factory(**shared) as two:
            enroll(one, "a", views[:2])
            enroll(two, "b", views[2:5])
            assert store_gauges(two) == (2, 5)
            assert one.delete("/items/b").status_code == 204
            assert store_gauges(one) == (1, 2)
    finally:
        r = redis.Redis.from_url(SHARED_REDIS)
        keys = list(r.scan_iter(f"{namespace}:*"))
        if keys:
            r.delete(*keys)
