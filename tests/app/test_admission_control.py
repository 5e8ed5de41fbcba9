"""The admission queue: slots and tickets on their own, then over real HTTP (tiny artifact) a full
queue answers 503 + Retry-After at once, as a complete response even to a client still uploading
a large body, stores nothing, and leaves the admitted requests to finish."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from app.admission_control import AdmissionControl
from app.metrics import ServiceMetrics
from app.retriever_errors import ClientGoneError, QueueFullError, QueueTimeoutError
from tests.app.conftest import ServiceFactory
from tests.app.gated_session import GatedSession, gate
from tests.app.metrics_text import metric_value, wait_for_metric

PROBLEM = "application/problem+json"
SEARCH = {"method": "POST", "route": "/search"}


def rejections(metrics: ServiceMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "retrieval_admission_rejections_total", {"reason": reason}
    )
    return 0.0 if value is None else value


def test_slots_up_to_capacity_then_queue_full() -> None:
    metrics = ServiceMetrics()
    admission = AdmissionControl(capacity=2, timeout_s=60, metrics=metrics)
    length = metrics.registry.get_sample_value
    with admission.admit(), admission.admit():
        assert admission.is_full() and length("retrieval_admission_queue_length") == 2
        with pytest.raises(QueueFullError, match="capacity"), admission.admit():
            pass  # pragma: no cover - never admitted
        assert rejections(metrics, "queue_full") == 1
    assert not admission.is_full() and length("retrieval_admission_queue_length") == 0
    with admission.admit():
        assert admission.length == 1


def test_a_ticket_says_why_its_request_is_dropped() -> None:
    metrics = ServiceMetrics()
    admission = AdmissionControl(capacity=4, timeout_s=0.5, metrics=metrics)
    with admission.admit() as ticket:
        ticket.check()  # in time, client there: nothing to drop
        ticket.check(ticket.admitted_at + 0.5)
        with pytest.raises(QueueTimeoutError, match="waited 600 ms"):
            ticket.check(ticket.admitted_at + 0.6)
        ticket.client_gone.set()
        with pytest.raises(ClientGoneError):
            ticket.check(ticket.admitted_at)
    assert rejections(metrics, "queue_timeout") == 1
    assert rejections(metrics, "client_gone") == 1
    assert rejections(metrics, "queue_full") == 0


def test_decoding_its_own_images_is_not_waiting() -> None:
    admission = AdmissionControl(capacity=4, timeout_s=0.1, metrics=ServiceMetrics())
    with admission.admit() as ticket:
        with ticket.working():
            time.sleep(0.2)  # a large enrollment being decoded
        ticket.check()
        assert ticket.waited_s() < 0.1
        time.sleep(0.15)  # then waiting for inference
        with pytest.raises(QueueTimeoutError):
            ticket.check()


@pytest.fixture(params=[True, False], ids=["batching", "unbatched"])
def held_service(
    request: pytest.FixtureRequest,
    service_factory: ServiceFactory,
    photo_views: dict[str, list[bytes]],
) -> Iterator[tuple[httpx.Client, GatedSession, threading.Event, list[Future[httpx.Response]]]]:
    """A service with an admission queue of 2, both slots held by searches whose model calls
    wait for the event; yields (client, session, release, the two searches' futures)."""
    with service_factory(admission_queue=2, batching=request.param) as client:
        for name in ("coffee", "rocket"):
            files = {"images": ("a.jpg", photo_views[name][0])}
            assert client.post(f"/items/{name}/images", files=files).status_code == 201
        session = gate(client.app.state.service.retriever.embedder)  # type: ignore[attr-defined]
        release = threading.Event()
        # Batching: the first search's call is held, the second waits in the executor queue.
        # Unbatched: each worker thread's call is held.
        session.hold(0, release)
        session.hold(1, release)
        url = str(client.base_url)

        def search(name: str) -> httpx.Response:
            with httpx.Client(base_url=url, timeout=60) as c:
                return c.post("/search", files={"image": ("q.jpg", photo_views[name][4])})

        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(search, name) for name in ("coffee", "rocket")]
            try:
                assert wait_for_metric(client, "retrieval_admission_queue_length", 2, 30) == 2
                yield client, session, release, held
            finally:
                release.set()


def queue_full(client: httpx.Client) -> float:
    return metric_value(client, "retrieval_admission_rejections_total", reason="queue_full")


def assert_overloaded(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == 503 and "capacity" in body["detail"]


def test_a_full_queue_answers_503_at_once_and_stores_nothing(
    held_service: tuple[httpx.Client, GatedSession, threading.Event, list[Future[httpx.Response]]],
    photo_views: dict[str, list[bytes]],
) -> None:
    client, session, release, held = held_service
    # A large upload, still being sent when its headers were judged, and not even multipart
    # (parsing it would be a 4xx): it is read and discarded unparsed, then the client reads a
    # complete 503.
    chunk = b"x" * (1 << 20)

    def body() -> Iterator[bytes]:
        for _ in range(8):
            time.sleep(0.05)
            yield chunk

    r = client.post(
        "/search", content=body(), headers={"content-type": "multipart/form-data; boundary=zz"}
    )
    assert_overloaded(r)
    # An enrollment is turned away the same way, and nothing of it is stored.
    r = client.post("/items/new/images", files={"images": ("a.jpg", photo_views["china"][0])})
    assert_overloaded(r)
    # The connection is still usable after a drained 503.
    assert client.get("/items/new").status_code == 404
    assert queue_full(client) == 2
    assert wait_for_metric(client, "http_requests_total", 1, **SEARCH, status="503") == 1
    assert len(session.batches) in (1, 2)  # the held searches only
    release.set()
    for future, name in zip(held, ("coffee", "rocket"), strict=True):
        r = future.result(timeout=60)
        assert r.status_code == 200 and r.json()["results"][0]["item_id"] == name
    assert wait_for_metric(client, "retrieval_admission_queue_length", 0) == 0
    r = client.post("/search", files={"image": ("q.jpg", photo_views["coffee"][5])})
    assert r.status_code == 200


def test_a_client_waiting_for_100_continue_gets_the_503_before_uploading(
    held_service: tuple[httpx.Client, GatedSession, threading.Event, list[Future[httpx.Response]]],
) -> None:
    client = held_service[0]
    host, port = client.base_url.host, client.base_url.port
    head = (
        f"POST /search HTTP/1.1\r\nHost: {host}\r\nContent-Length: {16 << 20}\r\n"
        "Expect: 100-continue\r\nContent-Type: multipart/form-data; boundary=zz\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head)  # and never a byte of body
        answer = b""
        while chunk := sock.recv(65536):  # socket.timeout here: the server waits for the body
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 503 Service Unavailable", answer[:200]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"retry-after: 1" in headers.lower() and b"capacity" in body


def test_a_queue_that_filled_during_the_upload_refuses_it_once_received(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory(admission_queue=1) as client:
        session = gate(client.app.state.service.retriever.embedder)  # type: ignore[attr-defined]
        release = session.hold(0)
        url = str(client.base_url)
        finish_upload = threading.Event()
        query = photo_views["coffee"][4]

        def slow_body() -> Iterator[bytes]:
            yield b'--zz\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n\r\n'
            assert finish_upload.wait(30)
            yield query + b"\r\n--zz--\r\n"

        def post(content: object) -> httpx.Response:
            with httpx.Client(base_url=url, timeout=60) as c:
                if content is None:
                    return c.post("/search", files={"image": ("q.jpg", query)})
                return c.post(
                    "/search",
                    content=content,  # type: ignore[arg-type]
                    headers={"content-type": "multipart/form-data; boundary=zz"},
                )

        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(post, slow_body())  # headers in while the queue is empty
            time.sleep(0.3)
            held = pool.submit(post, None)  # takes the only slot, its model call held
            session.wait_for_calls(1)
            finish_upload.set()
            assert_overloaded(slow.result(timeout=60))
            release.set()
            assert held.result(timeout=60).status_code == 200
        assert queue_full(client) == 1
