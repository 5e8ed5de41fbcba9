"""Requests through the real app over real HTTP, batched by the inference executor: concurrent
searches share batches and each gets its own answer (the unbatched answer, on the real model),
a corrupt upload fails alone, an injected model failure fails exactly its batch, and requests
that waited too long or whose client left are dropped before inference and counted."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.admission_control import AdmissionControl
from app.metrics import ServiceMetrics
from app.retriever import Retriever
from app.retriever_errors import QueueTimeoutError
from artifact.onnx_embedder import OnnxEmbedder
from index.flat_centroid_index import FlatCentroidIndex
from store.sqlite_store import SqliteStore
from tests.app.conftest import ServiceFactory
from tests.app.gated_session import INJECTED_MESSAGE, GatedSession, gate
from tests.app.metrics_text import metric_value, wait_for_metric

PROBLEM = "application/problem+json"
SEARCH = {"method": "POST", "route": "/search"}
ITEMS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "china", "flower")
# ONNX Runtime is not bit-identical across batch sizes.
SCORE_ATOL = 1e-5

Ranking = list[tuple[str, float]]


def enroll_gallery(client: httpx.Client, photo_views: dict[str, list[bytes]]) -> None:
    for item in ITEMS:
        files = [("images", (f"{i}.jpg", v)) for i, v in enumerate(photo_views[item][:2])]
        # 200: a service started again on the same data directory already holds these images.
        assert client.post(f"/items/{item}/images", files=files).status_code in (200, 201)


def ranking(r: httpx.Response) -> Ranking:
    assert r.status_code == 200, r.text
    return [(hit["item_id"], hit["score"]) for hit in r.json()["results"]]


def search_batches(client: httpx.Client) -> tuple[float, float]:
    """(executed batches, batches of one image) so far."""
    return (
        metric_value(client, "retrieval_batch_size_count"),
        metric_value(client, "retrieval_batch_size_bucket", le="1.0"),
    )


def burst(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    """Send every search at once, one connection each (opened before the start signal)."""
    start = threading.Barrier(len(bodies))

    def send(body: bytes) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=120) as c:
            assert c.get("/healthz").status_code == 200
            start.wait()
            return c.post("/search", params={"k": len(ITEMS)}, files={"image": ("q.jpg", body)})

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def test_concurrent_searches_share_batches_and_each_gets_its_own_answer(
    service_factory: ServiceFactory,
    default_model_path: Path,
    photo_views: dict[str, list[bytes]],
) -> None:
    queries = [photo_views[item][4] for item in ITEMS]
    corrupt = [queries[0][: len(queries[0]) // 3], b"not an image at all"]
    model = {"model_path": default_model_path}
    with service_factory(**model, batching=False) as unbatched:
        enroll_gallery(unbatched, photo_views)
        expected = [
            ranking(unbatched.post("/search", params={"k": 8}, files={"image": ("q.jpg", q)}))
            for q in queries
        ]
    # A long enough delay that searches still decoding on a busy machine join the batch.
    # Every search of a burst admitted at once, so that they can share batches.
    burst_size = len(queries) + len(corrupt)
    with service_factory(
        **model, batching=True, batch_max_delay_us=50_000, admission_queue=burst_size
    ) as client:
        enroll_gallery(client, photo_views)
        before = search_batches(client)
        batched = 0.0
        for _ in range(3):
            answers = burst(str(client.base_url), queries + corrupt)
            # Each good search got the unbatched answer for its own image ...
            for item, want, r in zip(ITEMS, expected, answers, strict=False):
                got = ranking(r)
                assert got[0][0] == item
                assert [i for i, _ in got] == [i for i, _ in want], (got, want)
                gaps = [abs(g - w) for (_, g), (_, w) in zip(got, want, strict=True)]
                assert max(gaps) <= SCORE_ATOL, (got, want)
            # ... and the corrupt uploads failed alone, with their own 422.
            for r in answers[len(queries) :]:
                assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
            after = search_batches(client)
            batched = (after[0] - before[0]) - (after[1] - before[1])
            if batched > 0:
                break
        assert batched > 0, "no batch of more than one search in three bursts"
        assert metric_value(client, "retrieval_batch_size_sum") > metric_value(
            client, "retrieval_batch_size_count"
        )


def post_search(url: str, body: bytes) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as c:
        return c.post("/search", files={"image": ("q.jpg", body)})


@dataclass
class BusyService:
    """A batching service holding the gallery, its first model call (a search for "coffee")
    held until ``release`` is set: what comes next waits in the executor's queue."""

    client: httpx.Client
    session: GatedSession
    release: threading.Event
    first: Future[httpx.Response]
    pool: ThreadPoolExecutor

    def search(self, body: bytes) -> Future[httpx.Response]:
        return self.pool.submit(post_search, str(self.client.base_url), body)


@contextmanager
def busy_service(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]], **settings: Any
) -> Iterator[BusyService]:
    with service_factory(batching=True, **settings) as client:
        enroll_gallery(client, photo_views)
        session = gate(client.app.state.service.retriever.embedder)  # type: ignore[attr-defined]
        release = session.hold(0)
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(post_search, str(client.base_url), photo_views["coffee"][4])
            session.wait_for_calls(1)
            try:
                yield BusyService(client, session, release, first, pool)
            finally:
                release.set()


def test_an_injected_model_failure_fails_exactly_its_batch(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    query = {item: photo_views[item][4] for item in ITEMS}
    with busy_service(service_factory, photo_views) as busy:
        client, session = busy.client, busy.session
        second = session.hold(1)
        session.fail(1)
        b, c = busy.search(query["chelsea"]), busy.search(query["rocket"])
        assert wait_for_metric(client, "retrieval_inference_pending", 2, 30) == 2
        busy.release.set()
        session.wait_for_calls(2)  # B and C's batch is running, and will fail
        d, e = busy.search(query["camera"]), busy.search(query["coins"])
        assert wait_for_metric(client, "retrieval_inference_pending", 2, 30) == 2
        second.set()
        assert ranking(busy.first.result())[0][0] == "coffee"
        for failed in (b.result(), c.result()):
            assert failed.status_code == 500
            assert failed.headers["content-type"].startswith(PROBLEM)
            detail = failed.json()["detail"]
            assert "inference failed" in detail and "RuntimeError" in detail
            assert INJECTED_MESSAGE not in failed.text and "/srv" not in failed.text
        # The executor kept serving: the next batch answers.
        assert ranking(d.result())[0][0] == "camera"
        assert ranking(e.result())[0][0] == "coins"
        assert [len(batch) for batch in session.batches] == [1, 2, 2]
        assert wait_for_metric(client, "http_requests_total", 2, **SEARCH, status="500") == 2
        r = client.post("/search", files={"image": ("q.jpg", query["flower"])})
        assert ranking(r)[0][0] == "flower"


def test_an_unbatched_model_failure_fails_its_request_only(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory(batching=False) as client:
        enroll_gallery(client, photo_views)
        session = gate(client.app.state.service.retriever.embedder)  # type: ignore[attr-defined]
        session.fail(0)
        r = client.post("/search", files={"image": ("q.jpg", photo_views["coins"][4])})
        assert r.status_code == 500 and "inference failed" in r.json()["detail"]
        assert INJECTED_MESSAGE not in r.text
        r = client.post("/search", files={"image": ("q.jpg", photo_views["coins"][4])})
        assert ranking(r)[0][0] == "coins"


def test_a_search_that_waited_past_the_queue_timeout_is_dropped_with_503(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    with busy_service(service_factory, photo_views, queue_timeout_ms=200) as busy:
        client = busy.client
        late = busy.search(photo_views["china"][4])
        assert wait_for_metric(client, "retrieval_inference_pending", 1, 30) == 1
        time.sleep(0.3)  # past its queue timeout, still queued behind the first search
        busy.release.set()
        r = late.result()
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.headers["content-type"].startswith(PROBLEM)
        assert "queue timeout" in r.json()["detail"]
        assert ranking(busy.first.result())[0][0] == "coffee"
        assert len(busy.session.batches) == 1  # the late search never reached the model
        reason = {"reason": "queue_timeout"}
        assert metric_value(client, "retrieval_admission_rejections_total", **reason) == 1
        r = client.post("/search", files={"image": ("q.jpg", photo_views["china"][4])})
        assert ranking(r)[0][0] == "china"


def test_a_search_whose_client_left_while_queued_is_dropped_and_counted(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    with busy_service(service_factory, photo_views) as busy:
        client = busy.client
        request = httpx.Request(
            "POST", "/search", files={"image": ("q.jpg", photo_views["china"][4])}
        )
        body = request.read()
        head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
        host, port = client.base_url.host, client.base_url.port
        with socket.create_connection((host, port)) as sock:
            sock.sendall(f"POST /search HTTP/1.1\r\nhost: {host}\r\n{head}\r\n".encode() + body)
            assert wait_for_metric(client, "retrieval_inference_pending", 1, 30) == 1
        time.sleep(0.3)  # the server notices the closed connection
        busy.release.set()
        assert ranking(busy.first.result())[0][0] == "coffee"
        reason = {"reason": "client_gone"}
        assert wait_for_metric(client, "retrieval_admission_rejections_total", 1, **reason) == 1
        assert len(busy.session.batches) == 1  # the abandoned search never reached the model
        assert wait_for_metric(client, "http_requests_total", 1, **SEARCH, status="499") == 1
        assert metric_value(client, "retrieval_admission_queue_length") == 0


def test_unbatched_requests_are_dropped_past_the_queue_timeout_too(
    tiny_model_path: Path, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    """Batching off: the worker thread checks the ticket before calling the model itself."""
    embedder = OnnxEmbedder(tiny_model_path, allow_gpu=False)
    session = gate(embedder)
    metrics = ServiceMetrics()
    retriever = Retriever(
        embedder=embedder,
        store=SqliteStore(tmp_path / "store.sqlite3"),
        index=FlatCentroidIndex(embedder.embedding_dim),
        blobs=None,
        metrics=metrics,
        max_image_pixels=40_000_000,
        max_images_per_request=4,
    )
    try:
        retriever.rebuild_index()
        admission = AdmissionControl(capacity=4, timeout_s=0.05, metrics=metrics)
        with admission.admit() as ticket:
            assert retriever.search(photo_views["coffee"][4], 3, ticket=ticket) == []
            time.sleep(0.1)
            with pytest.raises(QueueTimeoutError):
                retriever.search(photo_views["coffee"][4], 3, ticket=ticket)
        assert len(session.batches) == 1
    finally:
        retriever.close()
