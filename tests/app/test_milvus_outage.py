"""A Milvus outage over real HTTP through the real app: the service on a real Redis store and a
real Milvus Lite server process, which is killed (SIGKILL), paused (SIGSTOP: it accepts
connections and never answers), restarted on the same data directory mid-test, or started only
after the service.

While Milvus is down: searches answer 503 problem+json with Retry-After within Milvus's
request timeout; writes commit and answer 2xx saying ``index_pending`` (body and header) until
the index's breaker opens (searches' failures count too), then are refused 503 before anything
is committed, and searches are refused at once; ``/readyz`` stays 200 and reports the breaker.
When Milvus returns, the reconciler settles the pending items from the store, and the index's
versions equal the store's (``/admin/index-digest``). A service started while Milvus is down
serves ``/healthz``, says on ``/readyz`` that it waits for Milvus, and becomes ready with the
index rebuilt from the store once Milvus answers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import service_state
from app.main import create_app
from app.retriever import Retriever
from app.schemas import INDEX_PENDING_HEADER
from app.settings import Settings
from tests import redis_server
from tests.live_server import live_server, wait_until_ready
from tests.milvus_lite_server import MilvusLiteServer
from tests.store.conftest import _drop_namespace

pytestmark = pytest.mark.redis
pytest.importorskip("pymilvus")

MILVUS_TIMEOUT_S = 1.0
BREAKER_FAILURES = 3
# Shorter than the 2 s default so that recovery is quick, long enough that a loaded machine
# still sees the breaker open between two calls of a test.
BREAKER_COOLDOWN_S = 1.0


@contextmanager
def service(
    milvus_uri: str, namespace: str, data_dir: Path, model: Path, *, wait_ready: bool = True
) -> Iterator[httpx.Client]:
    settings = Settings(
        model_path=model,
        data_dir=data_dir,
        redis_url=redis_server.REDIS_URL,
        redis_namespace=namespace,
        index="milvus",
        milvus_uri=milvus_uri,
        milvus_timeout_s=MILVUS_TIMEOUT_S,
        milvus_breaker_failures=BREAKER_FAILURES,
        milvus_breaker_cooldown_s=BREAKER_COOLDOWN_S,
        reconcile_interval_s=0,
    )
    app = create_app(settings)
    with (
        live_server(app, wait_ready=wait_ready) as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        c.app = app  # type: ignore[attr-defined]
        yield c


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    _drop_namespace(name)


@pytest.fixture(scope="module")
def client(
    milvus: MilvusLiteServer,
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_path: Path,
) -> Iterator[httpx.Client]:
    data_dir = tmp_path_factory.mktemp("data")
    with service(milvus.uri, namespace, data_dir, tiny_model_path) as c:
        yield c


def retriever_of(client: httpx.Client) -> Retriever:
    retriever = client.app.state.service.retriever  # type: ignore[attr-defined]
    assert isinstance(retriever, Retriever)
    return retriever


def enroll(client: httpx.Client, item: str, view: bytes) -> httpx.Response:
    return client.post(f"/items/{item}/images", files={"images": ("v.jpg", view, "image/jpeg")})


def search(client: httpx.Client, view: bytes) -> httpx.Response:
    return client.post("/search", params={"k": 10}, files={"image": ("q.jpg", view, "image/jpeg")})


def top_items(client: httpx.Client, view: bytes) -> list[str]:
    r = search(client, view)
    assert r.status_code == 200, r.text
    return [h["item_id"] for h in r.json()["results"]]


def timed_search(client: httpx.Client, view: bytes) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = search(client, view)
    return r, time.monotonic() - started


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
    # Until the breaker opens, writes commit and say the index does not show them yet. Two
    # failures at most come before the delete: the enrollment's index update and the
    # reconciler's one retry of it; the delete's is the third.
    pending = [enroll(client, "coffee", views["coffee"]), client.delete("/items/chelsea")]
    assert pending[0].status_code == 201, pending[0].text
    assert pending[0].json()["index_pending"] is True
    assert pending[1].status_code == 204
    for r in pending:
        assert r.headers[INDEX_PENDING_HEADER] == "true" and r.headers["x-retrieval-position"]
    assert retriever_of(client).reconciler.pending() == {"coffee", "chelsea"}
    # A search fails (or, the breaker open by now, is refused) within Milvus's timeout.
    r, elapsed = timed_search(client, views["rocket"])
    assert_index_unavailable(r)
    assert elapsed < MILVUS_TIMEOUT_S + 0.5
    # The failures so far (writes, searches, the reconciler's retries) open the breaker, at
    # the latest once the third fails; from then on a write is refused before it commits.
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
    # The client retries its refused write until Milvus answers again; its commit also wakes
    # the reconciler for the pending items (rather than its next retry, up to 2 s later).
    deadline = time.monotonic() + 15
    while (r := enroll(client, "camera", views["camera"])).status_code == 503:
        assert_index_unavailable(r)
        assert time.monotonic() < deadline, "the refused write was never taken"
        time.sleep(0.1)
    assert r.status_code == 201, r.text
    wait_settled(client)
    digest = assert_index_agrees_with_the_store(client)
    assert client.get("/readyz").json()["index_breaker"] == "closed"
    found = top_items(client, views["coffee"])
    assert found[0] == "coffee" and "chelsea" not in found
    assert top_items(client, views["camera"])[0] == "camera"
    assert digest["store_items"] == digest["index_items"]


def test_a_milvus_that_stops_answering_bounds_searches_by_its_timeout_then_the_breaker(
    client: httpx.Client, milvus: MilvusLiteServer, photo_views: dict[str, list[bytes]]
) -> None:
    view = photo_views["coins"][0]
    assert enroll(client, "coins", view).status_code == 201
    assert retriever_of(client).applier.breaker_state == "closed"
    milvus.pause()
    try:
        # As many searches at once as open the breaker: each waits for Milvus's timeout.
        with ThreadPoolExecutor(BREAKER_FAILURES) as pool:
            answers = list(pool.map(lambda _: timed_search(client, view), range(BREAKER_FAILURES)))
        assert retriever_of(client).applier.breaker_state == "open"
        # Open: refused at once, where a search let through would wait for the timeout.
        refused, refused_in = timed_search(client, view)
    finally:
        milvus.resume()
    for r, elapsed in answers:
        assert_index_unavailable(r)
        assert MILVUS_TIMEOUT_S * 0.9 < elapsed < MILVUS_TIMEOUT_S + 1.0
    assert_index_unavailable(refused)
    assert refused_in < MILVUS_TIMEOUT_S * 0.5  # a search is ~10 ms here; slack for a busy CI
    # After the cooldown a search is the probe; Milvus answers it and the breaker closes.
    deadline = time.monotonic() + BREAKER_COOLDOWN_S + 5
    while (r := search(client, view)).status_code != 200:
        assert_index_unavailable(r)
        assert time.monotonic() < deadline, "searches never recovered"
        time.sleep(0.1)
    assert r.json()["results"][0]["item_id"] == "coins"
    assert retriever_of(client).applier.breaker_state == "closed"
    assert_index_agrees_with_the_store(client)


def test_a_service_started_before_milvus_waits_for_it_then_rebuilds_from_the_store(
    client: httpx.Client,
    namespace: str,
    tmp_path: Path,
    tiny_model_path: Path,
    photo_views: dict[str, list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Attempts 0.25 s apart, doubling to at most 1 s (not 0.5 s to 10 s): Milvus Lite takes
    # 2-5 s to start here, and the default doubling would wait up to 4 s more after it answers.
    # What is checked is the waiting, what /readyz says meanwhile and the rebuild after.
    monkeypatch.setattr(service_state, "STORE_RETRY_FIRST_S", 0.25)
    monkeypatch.setattr(service_state, "STORE_RETRY_MAX_S", 1.0)
    view = photo_views["astronaut"][0]
    assert enroll(client, "astronaut", view).status_code == 201
    # A second replica of the same store, on a Milvus of its own that is not running yet.
    late = MilvusLiteServer(tmp_path / "late-milvus")
    data_dir = tmp_path / "data"
    with (
        service(late.uri, namespace, data_dir, tiny_model_path, wait_ready=False) as replica,
        ThreadPoolExecutor(1) as pool,
    ):
        try:
            deadline = time.monotonic() + 10
            while "waiting for Milvus" not in (r := replica.get("/readyz")).text:
                assert time.monotonic() < deadline, r.text
                time.sleep(0.02)
            # Milvus starts (about a second) while the replica keeps retrying.
            starting = pool.submit(late.start)
            # Not ready, not failed: backing off and saying what it waits for.
            assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
            detail = r.json()["detail"]
            assert "IndexUnavailableError" in detail and "next attempt in" in detail, detail
            assert "127.0.0.1" not in r.text
            assert replica.get("/healthz").status_code == 200
            assert search(replica, view).status_code == 503
            starting.result()
            # The first attempt after Milvus answers succeeds.
            wait_until_ready(str(replica.base_url), time.monotonic() + 20)
            digest = assert_index_agrees_with_the_store(replica)
            assert digest["index_items"] == digest["store_items"] > 0
            assert top_items(replica, view)[0] == "astronaut"
        finally:
            late.kill()
