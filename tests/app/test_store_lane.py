"""The store's own lane: bounded (slots + queue, then 503 at once), apart from the worker threads,
so a stalled store cannot stop searches — tested on its own and over HTTP with a Redis stalled
by SIGSTOP and more writers than worker threads."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio.to_thread
import httpx
import pytest

from app.metrics import ServiceMetrics
from app.store_lane import StoreBusyError, StoreLane
from tests.app.conftest import ServiceFactory
from tests.app.metrics_text import metric_value
from tests.live_server import free_port
from tests.redis_server import start_redis_server


def test_the_lane_runs_at_most_its_slots_and_refuses_past_its_queue() -> None:
    async def scenario() -> None:
        lane = StoreLane(slots=2, queue=1, metrics=ServiceMetrics())
        release = threading.Event()
        running, most = 0, 0
        lock = threading.Lock()

        def blocked() -> None:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            release.wait(10)
            with lock:
                running -= 1

        calls = [asyncio.ensure_future(lane.run(blocked)) for _ in range(3)]
        while lane.in_lane < 3 or running < 2:
            await asyncio.sleep(0.01)
        # Two running, one waiting: the next one is refused at once.
        start = time.monotonic()
        with pytest.raises(StoreBusyError):
            await lane.run(lambda: None)
        assert time.monotonic() - start < 0.1
        release.set()
        await asyncio.gather(*calls)
        assert most == 2 and lane.in_lane == 0
        assert await lane.run(lambda: 7) == 7

    asyncio.run(scenario())


def test_the_lane_does_not_take_the_worker_threads() -> None:
    async def scenario() -> None:
        # One worker thread, held by a call that waits: the lane's work still runs.
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1
        release = threading.Event()
        held = asyncio.ensure_future(anyio.to_thread.run_sync(release.wait, 10))
        await asyncio.sleep(0.05)
        lane = StoreLane(slots=1, queue=0, metrics=ServiceMetrics())
        assert await asyncio.wait_for(lane.run(lambda: "done"), timeout=5) == "done"
        release.set()
        await held

    asyncio.run(scenario())


@pytest.fixture
def stallable_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = start_redis_server(port, tmp_path, durable=False)
    yield f"redis://127.0.0.1:{port}/0", proc
    os.kill(proc.pid, signal.SIGCONT)
    proc.kill()
    proc.wait()


def test_searches_keep_answering_while_writers_wait_on_a_stalled_store(
    service_factory: ServiceFactory,
    stallable_redis: tuple[str, subprocess.Popen[bytes]],
    photo_views: dict[str, list[bytes]],
) -> None:
    url, proc = stallable_redis
    writers = 10  # more than the worker threads below, as in the measurement
    settings = {
        "redis_url": url,
        "redis_namespace": f"t{uuid.uuid4().hex[:8]}",
        "worker_threads": 4,
        "store_threads": 2,
        "store_queue": 2,
        "admission_queue": writers + 4,
    }
    with service_factory(**settings) as client:
        base = str(client.base_url)
        enrolled = client.post(
            "/items/cat/images", files={"images": ("a.jpg", photo_views["chelsea"][0])}
        )
        assert enrolled.status_code == 201
        os.kill(proc.pid, signal.SIGSTOP)

        def write(i: int) -> tuple[int, float]:
            start = time.monotonic()
            with httpx.Client(base_url=base, timeout=60) as c:
                blob = photo_views["coffee"][i % 4]
                r = c.post(f"/items/w{i}/images", files={"images": ("w.jpg", blob)})
            return r.status_code, time.monotonic() - start

        with ThreadPoolExecutor(max_workers=writers) as pool:
            pending = [pool.submit(write, i) for i in range(writers)]
            time.sleep(0.5)  # the writers are in: store slots taken, the queue full
            search_s = []
            for _ in range(5):
                start = time.monotonic()
                r = client.post("/search", files={"image": ("q.jpg", photo_views["chelsea"][4])})
                search_s.append(time.monotonic() - start)
                assert r.status_code == 200 and r.json()["results"][0]["item_id"] == "cat"
            # Searches never waited for the store (without the lane they wait seconds, behind
            # the writers holding every worker thread).
            assert max(search_s) < 2.0, search_s
            start = time.monotonic()
            metrics = client.get("/metrics")
            metrics_s = time.monotonic() - start
            assert metric_value(client, "retrieval_store_lane_requests") == 4  # 2 + 2 queued
            os.kill(proc.pid, signal.SIGCONT)
            answers = [f.result() for f in pending]
        # /metrics did not wait on the stalled store either; the writers past the lane were
        # told at once.
        assert metrics.status_code == 200 and metrics_s < 1.5, metrics_s
        assert "retrieval_store_items" not in metrics.text  # no stale count of a stalled store
        refused = [(s, t) for s, t in answers if s == 503]
        assert len(refused) >= writers - 4, answers
        assert all(t < 1.0 for s, t in refused if s == 503), answers
        assert all(s in (201, 503) for s, _ in answers), answers
        assert metric_value(client, "retrieval_store_lane_rejections_total") == len(refused)
