"""Slow and numerous clients against the real server, started as in production (``python -m
app.server``): raw sockets that stall in their headers, their body, or between requests are
closed on time, and healthy searches are answered while hundreds of slow bodies are open."""

from __future__ import annotations

import io
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.app.launched_server import Launched, launched, read_until_closed

DEADLINE_S = 1.0
SLACK_S = 1.5
BOUNDARY = b"slowclienttest"


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(out, "JPEG")
    return out.getvalue()


def search_request(payload: bytes) -> tuple[bytes, bytes]:
    """Head and body of a POST /search of one file."""
    body = (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"'
        b"\r\nContent-Type: image/jpeg\r\n\r\n" + payload + b"\r\n--" + BOUNDARY + b"--\r\n"
    )
    head = (
        b"POST /search HTTP/1.1\r\nHost: t\r\n"
        b"Content-Type: multipart/form-data; boundary=" + BOUNDARY + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head, body


@pytest.fixture(scope="module")
def quick(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    env = {
        "RETRIEVAL_HEADER_TIMEOUT_S": str(DEADLINE_S),
        "RETRIEVAL_BODY_TIMEOUT_S": str(DEADLINE_S),
        "RETRIEVAL_IDLE_TIMEOUT_S": str(DEADLINE_S),
    }
    with launched(tiny_model_path, tmp_path_factory.mktemp("quick"), env) as server:
        yield server


@pytest.fixture(scope="module")
def patient(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    env = {
        "RETRIEVAL_HEADER_TIMEOUT_S": "30",
        "RETRIEVAL_BODY_TIMEOUT_S": "30",
        "RETRIEVAL_MAX_CONNECTIONS": "300",
        "RETRIEVAL_ADMISSION_QUEUE": "64",
    }
    with launched(tiny_model_path, tmp_path_factory.mktemp("patient"), env) as server:
        yield server


def test_a_request_line_that_stalls_is_closed_without_an_answer(quick: Launched) -> None:
    sock = quick.connect()
    sock.sendall(b"GET /healthz HTT")
    took, data = read_until_closed(sock)
    assert data == b""
    assert DEADLINE_S - 0.2 <= took <= DEADLINE_S + SLACK_S, took
    # A connection that sends nothing at all is closed the same way.
    took, data = read_until_closed(quick.connect())
    assert data == b"" and took <= DEADLINE_S + SLACK_S, took


def test_a_body_that_stalls_gets_408_problem_json(quick: Launched) -> None:
    head, body = search_request(jpeg())
    sock = quick.connect()
    sock.sendall(head + body[:20])
    took, data = read_until_closed(sock)
    assert DEADLINE_S - 0.2 <= took <= DEADLINE_S + SLACK_S, took
    status, _, rest = data.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout", data
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in headers.lower()
    assert json.loads(payload)["status"] == 408


def test_a_body_sent_a_byte_at_a_time_is_cut_off(quick: Launched) -> None:
    # Never silent for long, but 1 KiB per deadline is the least progress that counts.
    head, body = search_request(jpeg())
    sock = quick.connect()
    sock.sendall(head)
    start = time.monotonic()
    for byte in body:
        if select.select([sock], [], [], 0.1)[0]:  # answered, or closed
            break
        sock.sendall(bytes([byte]))
    else:
        pytest.fail("the whole body went through at 10 bytes a second")
    took = time.monotonic() - start
    _, data = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 Request Timeout"), data
    assert DEADLINE_S - 0.2 <= took <= DEADLINE_S + SLACK_S, took


def test_a_slow_but_steady_body_is_served(quick: Launched) -> None:
    # 2 KiB every 0.4 s: longer in all than the deadline, but advancing within each.
    head, body = search_request(jpeg() + bytes(8 * 1024))
    sock = quick.connect()
    sock.sendall(head)
    for start in range(0, len(body), 2048):
        sock.sendall(body[start : start + 2048])
        time.sleep(0.4)
    assert len(body) > 4 * 2048  # it took more than 1.6 s
    status = sock.recv(65536).split(b"\r\n", 1)[0]
    assert status == b"HTTP/1.1 200 OK", status


def test_an_idle_keep_alive_connection_is_closed(quick: Launched) -> None:
    sock = quick.connect()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    first = b""
    while b'"alive"}' not in first:  # the head and the body may come in separate segments
        chunk = sock.recv(65536)
        assert chunk, first
        first += chunk
    assert first.startswith(b"HTTP/1.1 200"), first
    took, data = read_until_closed(sock)
    assert data == b"" and took <= DEADLINE_S + SLACK_S, took


def test_closes_are_counted_and_logged_once_per_interval(quick: Launched) -> None:
    socks = [quick.connect() for _ in range(30)]
    for sock in socks:
        sock.sendall(b"GET /hea")
    for sock in socks:
        read_until_closed(sock)
    metrics = httpx.get(quick.url + "/metrics").text
    closed = [
        line
        for line in metrics.splitlines()
        if line.startswith('retrieval_connections_closed_total{reason="header_timeout"}')
    ]
    assert float(closed[0].split()[-1]) >= 30, closed
    lines = [ln for ln in quick.log().splitlines() if "closed connections (header timeout)" in ln]
    assert 1 <= len(lines) <= 3, lines  # not one per connection


def test_searches_are_answered_while_200_slow_bodies_are_open(patient: Launched) -> None:
    head, body = search_request(jpeg())
    slow = []
    for _ in range(200):
        sock = patient.connect()
        sock.sendall(head + body[:10])
        slow.append(sock)
    try:
        files = {"image": ("q.jpg", jpeg(), "image/jpeg")}
        with httpx.Client(base_url=patient.url, timeout=10) as client:
            statuses = [client.post("/search", files=files).status_code for _ in range(20)]
        assert statuses == [200] * 20
        metrics = httpx.get(patient.url + "/metrics").text
        (open_now,) = [ln for ln in metrics.splitlines() if ln.startswith("retrieval_open_conn")]
        assert float(open_now.split()[-1]) >= 200, open_now
    finally:
        for sock in slow:
            sock.close()
    # Clients that left mid-body are nobody to answer, not errors to log.
    time.sleep(0.5)
    assert "Traceback" not in patient.log() and "Exception in ASGI" not in patient.log()


def test_connections_past_the_cap_are_closed_at_once(patient: Launched) -> None:
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 10
        while len(held) < 300:  # the cap; earlier tests' sockets may still be closing
            held.append(patient.connect())
            assert time.monotonic() < deadline
        time.sleep(0.3)
        refused = patient.connect()
        took, data = read_until_closed(refused)
        assert data == b"" and took < 1.0, took
        for sock in held[:10]:
            sock.close()
        time.sleep(0.3)
        assert httpx.get(patient.url + "/healthz", timeout=5).status_code == 200
        metrics = httpx.get(patient.url + "/metrics").text
        assert 'retrieval_connections_closed_total{reason="over_connection_cap"}' in metrics
        assert 'retrieval_connections_closed_total{reason="over_connection_cap"} 0.0' not in metrics
    finally:
        for sock in held:
            sock.close()
