"""The bytes-in-flight budget: on its own (reserve, wait, refuse, release), and through the real
server: with the budget held by an upload in progress, another request waits, then gets 503 with
Retry-After and leaves nothing stored; once the budget is free it is served."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.bytes_in_flight import BytesInFlight, BytesInFlightFullError
from app.metrics import ServiceMetrics
from tests.app.launched_server import launched

MiB = 1024 * 1024


def test_reserve_waits_for_room_then_refuses() -> None:
    metrics = ServiceMetrics()
    budget = BytesInFlight(100, metrics=metrics, wait_s=0.2)

    async def scenario() -> None:
        assert await budget.reserve(60) == 60
        start = time.monotonic()
        with pytest.raises(BytesInFlightFullError):
            await budget.reserve(50)
        assert 0.2 <= time.monotonic() - start < 0.5
        # Freed while it waits: it gets in.
        asyncio.get_running_loop().call_later(0.05, budget.release, 60)
        assert await budget.reserve(50) == 50
        assert budget.used == 50

    asyncio.run(scenario())
    assert metrics.bytes_in_flight_rejections._value.get() == 1
    assert metrics.bytes_in_flight._value.get() == 50


def test_a_request_larger_than_the_budget_takes_all_of_it_alone() -> None:
    budget = BytesInFlight(100, wait_s=0.1)

    async def scenario() -> None:
        assert await budget.reserve(1000) == 100
        with pytest.raises(BytesInFlightFullError):
            await budget.reserve(1)
        budget.release(100)
        assert budget.used == 0

    asyncio.run(scenario())


def test_a_full_budget_is_a_503_with_retry_after_and_nothing_stored(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    env = {"RETRIEVAL_MAX_BYTES_IN_FLIGHT": str(MiB), "RETRIEVAL_BODY_TIMEOUT_S": "30"}
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 90)).save(out, "JPEG")
    files = {"images": ("a.jpg", out.getvalue(), "image/jpeg")}
    with launched(tiny_model_path, tmp_path, env) as server:
        # An upload that sent more than the spool threshold and stalls holds the whole budget.
        hog = server.connect()
        hog.sendall(
            b"POST /items/hog/images HTTP/1.1\r\nHost: t\r\nContent-Length: 3145728\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
            b'--b\r\nContent-Disposition: form-data; name="images"; filename="h.jpg"\r\n\r\n'
        )
        hog.sendall(bytes(MiB + 64 * 1024))
        deadline = time.monotonic() + 10
        while (
            "retrieval_bytes_in_flight 1.048576e+06" not in httpx.get(server.url + "/metrics").text
        ):
            assert time.monotonic() < deadline, "the upload never held the budget"
            time.sleep(0.05)
        start = time.monotonic()
        refused = httpx.post(server.url + "/items/cup/images", files=files, timeout=10)
        assert refused.status_code == 503, refused.text
        assert 1.0 <= time.monotonic() - start < 3.0  # it waited, briefly
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        assert "retry later" in refused.json()["detail"]
        assert httpx.get(server.url + "/items/cup").status_code == 404
        metrics = httpx.get(server.url + "/metrics").text
        assert "retrieval_bytes_in_flight_rejections_total 1.0" in metrics
        hog.close()
        deadline = time.monotonic() + 10
        while "retrieval_bytes_in_flight 0.0" not in httpx.get(server.url + "/metrics").text:
            assert time.monotonic() < deadline, "the budget was never given back"
            time.sleep(0.05)
        served = httpx.post(server.url + "/items/cup/images", files=files, timeout=10)
        assert served.status_code == 201, served.text
