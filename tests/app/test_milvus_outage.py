"""A Milvus outage over real HTTP through the real app: the service on a real Redis store and a
real Milvus Lite server process, which is killed (SIGKILL), paused (SIGSTOP: it accepts
connections and never answers) and restarted on the same data directory mid-test.

While Milvus is down: searches answer 503 problem+json with Retry-After within Milvus's
timeout; writes commit and answer 2xx saying ``index_pending`` (body and header) until the
index's breaker opens, then are refused 503 before anything is committed; ``/readyz`` stays
200 and reports the breaker. When Milvus returns, the reconciler settles the pending items from
the store, and the index's versions equal the store's (``/admin/index-digest``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.retriever import Retriever
from app.schemas import INDEX_PENDING_HEADER
from app.settings import Settings
from tests import redis_server
from tests.live_server import live_server
from tests.milvus_lite_server import MilvusLiteServer
from tests.store.conftest import _drop_namespace

pytestmark = pytest.mark.redis
pytest.importorskip("pymilvus")

MILVUS_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def client(
    milvus: MilvusLiteServer, tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path
) -> Iterator[httpx.Client]:
    namespace = f"t{uuid.uuid4().hex[:12]}"
    settings = Settings(
        model_path=tiny_model_path,
        data_dir=tmp_path_factory.mktemp("data"),
        redis_url=redis_server.REDIS_URL,
        redis_namespace=namespace,
        index="milvus",
        milvus_uri=milvus.uri,
        milvus_timeout_s=MILVUS_TIMEOUT_S,
        reconcile_interval_s=0,
    )
    app = create_app(settings)
    try:
        with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
            c.app = app  # type: ignore[attr-defined]
            yield c
    finally:
        _drop_namespace(namespace)


def retriever_of(client: httpx.Client) -> Retriever:
    retriever = client.app.state.service.retriever  # type: ignore[attr-defined]
    assert isinstance(retriever, Retriever)
    return retriever


def enroll(client: httpx.Client, item: str, view: bytes) -> httpx.Response:
    return client.post(f"/items/{item}/images", files={"images": ("v.jpg", view, "image/jpeg")})


def top_items(client: httpx.Client, view: bytes) -> list[str]:
    r = client.post("/search", params={"k": 10}, files={"image": ("q.jpg", view, "image/jpeg")})
    assert r.status_code == 200, r.text
    return [h["item_id"] for h in r.json()["results"]]


def assert_index_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1
    assert "Milvus" in r.json()["detail"] and "127.0.0.1" not in r.text


def assert_index_agrees_with_the_store(client: httpx.Client) -> dict[str, Any]:
    digest = client.get("/admin/index-digest").json()
    assert digest["agrees"], digest
    return digest


def wait_settled(client: httpx.Client, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while retriever_of(client).reconciler.pending():
        assert time.monotonic() < deadline, "pending items were never applied"
        time.sleep(0.05)


def test_an_outage_then_recovery_never_leaves_the_index_apart_from_the_store(
    client: httpx.Client, milvus: MilvusLiteServer, photo_views: dict[str, list[bytes]]
) -> None:
    views = {name: photo_views[name][0] for name in ("chelsea", "rocket", "coffee", "camera")}
    for name in ("chelsea", "rocket"):
        r = enroll(client, name, views[name])
        assert r.status_code == 201 and "index_pending" not in r.json()
        assert INDEX_PENDING_HEADER.lower() not in r.headers
    assert top_items(client, views["rocket"])[0] == "rocket"
    assert_index_agrees_with_the_store(client)

    milvus.kill()
    started = time.monotonic()
    assert_index_unavailable(
        client.post("/search", files={"image": ("q.jpg", views["rocket"], "image/jpeg")})
    )
    assert time.monotonic() - started < MILVUS_TIMEOUT_S + 0.5
    # Until the breaker opens, writes commit and say the index does not show them yet.
    pending = [enroll(client, "coffee", views["coffee"]), client.delete("/items/chelsea")]
    assert pending[0].status_code == 201, pending[0].text
    assert pending[0].json()["index_pending"] is True
    assert pending[1].status_code == 204
    for r in pending:
        assert r.headers[INDEX_PENDING_HEADER] == "true" and r.headers["x-retrieval-position"]
    assert retriever_of(client).reconciler.pending() == {"coffee", "chelsea"}
    # The failures so far (writes, the reconciler's retries) open the breaker, at the latest
    # once the third fails; from then on a write is refused before it commits.
    deadline = time.monotonic() + 10
    while retriever_of(client).applier.breaker_state != "open":
        assert time.monotonic() < deadline, "the index breaker never opened"
        r = enroll(client, f"extra-{time.monotonic_ns()}", views["camera"])
        assert r.status_code in (201, 503)
        time.sleep(0.05)
    refused = enroll(client, "camera", views["camera"])
    assert_index_unavailable(refused)
    assert client.get("/items/camera").status_code == 404  # nothing was committed
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["index_breaker"] == "open"
    assert ready.json()["items"] is None

    milvus.start()  # the same data directory, the same port
    wait_settled(client)
    digest = assert_index_agrees_with_the_store(client)
    assert client.get("/readyz").json()["index_breaker"] == "closed"
    found = top_items(client, views["coffee"])
    assert found[0] == "coffee" and "chelsea" not in found
    assert "camera" not in found
    assert digest["store_items"] == digest["index_items"]


def test_a_milvus_that_stops_answering_bounds_searches_by_its_timeout(
    client: httpx.Client, milvus: MilvusLiteServer, photo_views: dict[str, list[bytes]]
) -> None:
    view = photo_views["coins"][0]
    assert enroll(client, "coins", view).status_code == 201
    milvus.pause()
    try:
        started = time.monotonic()
        r = client.post("/search", files={"image": ("q.jpg", view, "image/jpeg")})
        elapsed = time.monotonic() - started
    finally:
        milvus.resume()
    assert_index_unavailable(r)
    assert MILVUS_TIMEOUT_S * 0.9 < elapsed < MILVUS_TIMEOUT_S + 1.0
    assert top_items(client, view)[0] == "coins"
    assert_index_agrees_with_the_store(client)
