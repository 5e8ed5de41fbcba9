"""The store's own lane: bounded (slots + queue, then 503 at once), apart from the worker threads,
each operation within a deadline, so a stalled store cannot stop searches nor hold a request
past the deadline — tested on its own and over HTTP with a Redis stalled by SIGSTOP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import anyio.to_thread
import httpx
import numpy as np
import pytest

from app.metrics import ServiceMetrics
from app.store_lane import StoreBusyError, StoreDeadlineError, StoreLane
from index.centroid_math import centroid_from_sum
from store.errors import StoreOutcomeUnknownError
from store.redis_store import RedisStore
from tests.app.conftest import ServiceFactory
from tests.app.metrics_text import metric_value


def test_the_lane_runs_at_most_its_slots_and_refuses_past_its_queue() -> None:
    async def scenario() -> None:
        lane = StoreLane(slots=2, queue=1, deadline_s=30, metrics=ServiceMetrics())
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
        lane = StoreLane(slots=1, queue=0, deadline_s=30, metrics=ServiceMetrics())
        assert await asyncio.wait_for(lane.run(lambda: "done"), timeout=5) == "done"
        release.set()
        await held

    asyncio.run(scenario())


def test_past_the_deadline_a_read_is_unavailable_and_a_started_write_unknown() -> None:
    async def scenario() -> None:
        lane = StoreLane(slots=1, queue=2, deadline_s=0.2, metrics=ServiceMetrics())
        release = threading.Event()
        marked: list[str] = []
        ran: list[str] = []

        def slow(name: str) -> str:
            ran.append(name)
            release.wait(10)
            return name

        # The bounds are far from the 10 s the operation would take: the suite shares two
        # cores with other work, and a loaded run was seen answering 1.6 s late.
        start = time.monotonic()
        with pytest.raises(StoreDeadlineError):
            await lane.run(slow, "read")
        assert 0.2 <= time.monotonic() - start < 5
        # The read still holds the one thread: a write queued behind it never starts, so
        # nothing was applied and nothing is marked.
        with pytest.raises(StoreDeadlineError):
            await lane.run_write("a", marked.append, slow, "queued write")
        assert marked == []
        release.set()
        await asyncio.sleep(0.1)
        release.clear()
        # A write that started and outlives the deadline: outcome unknown, the item marked,
        # and the operation left to finish on its thread.
        start = time.monotonic()
        with pytest.raises(StoreOutcomeUnknownError):
            await lane.run_write("b", marked.append, slow, "started write")
        assert time.monotonic() - start < 5 and marked == ["b"]
        release.set()
        await asyncio.sleep(0.1)
        assert ran == ["read", "started write"]  # the queued write never ran
        assert lane.in_lane == 0
        assert await lane.run(lambda: 3) == 3
        lane.close()

    asyncio.run(scenario())


def test_searches_keep_answering_while_writers_wait_on_a_stalled_store(
    service_factory: ServiceFactory,
    own_redis: tuple[str, subprocess.Popen[bytes]],
    photo_views: dict[str, list[bytes]],
) -> None:
    url, proc = own_redis
    writers = 10  # more than the worker threads below, as in the measurement
    settings = {
        "redis_url": url,
        "redis_namespace": f"t{uuid.uuid4().hex[:8]}",
        "worker_threads": 4,
        "store_threads": 2,
        "store_queue": 2,
        # The lane's bound is what this test is about: no deadline cuts the stalled writes
        # short meanwhile (the next test is the deadline's).
        "store_deadline_ms": 60_000,
        "store_write_deadline_ms": 60_000,
        "admission_queue": writers + 4,
    }
    with service_factory(**settings) as client:
        base = str(client.base_url)
        enrolled = client.post(
            "/items/cat/images", files={"images": ("a.jpg", photo_views["chelsea"][0])}
        )
        assert enrolled.status_code == 201
        os.kill(proc.pid, signal.SIGSTOP)

        def write(i: int) -> tuple[int, float, str]:
            start = time.monotonic()
            with httpx.Client(base_url=base, timeout=60) as c:
                blob = photo_views["coffee"][i % 4]
                r = c.post(f"/items/w{i}/images", files={"images": ("w.jpg", blob)})
            detail = r.json().get("detail", "") if r.status_code != 201 else ""
            return r.status_code, time.monotonic() - start, detail

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
        # The 4 in the lane ran into the stall (201 once it ended, or 503); the other 6 were
        # turned away by the lane, at once.
        busy = [(s, t) for s, t, detail in answers if "store is busy" in detail]
        assert len(busy) == writers - 4, answers
        assert all(s == 503 and t < 1.0 for s, t in busy), answers
        assert all(s in (201, 503) for s, _, _ in answers), answers
        assert metric_value(client, "retrieval_store_lane_rejections_total") == len(busy)


def test_a_stalled_store_answers_503_within_the_deadline_on_every_route_that_needs_it(
    service_factory: ServiceFactory,
    own_redis: tuple[str, subprocess.Popen[bytes]],
    photo_views: dict[str, list[bytes]],
) -> None:
    url, proc = own_redis
    namespace = f"t{uuid.uuid4().hex[:8]}"
    deadline_s = 1.0
    settings = {
        "redis_url": url,
        "redis_namespace": namespace,
        "store_deadline_ms": 1000,
        "store_write_deadline_ms": 1000,
        # Every route must meet the deadline itself: no breaker refusing the later ones at once
        # (tests/app/test_circuit_breaker.py is the breaker's).
        "store_breaker_failures": 0,
    }
    with service_factory(**settings) as client:
        for item, photo in (("cat", "chelsea"), ("dog", "coffee")):
            files = {"images": ("a.jpg", photo_views[photo][0])}
            assert client.post(f"/items/{item}/images", files=files).status_code == 201
        image_id = client.get("/items/dog").json()["image_ids"][0]
        os.kill(proc.pid, signal.SIGSTOP)
        calls = {
            "enroll": lambda: client.post(
                "/items/cat/images", files={"images": ("b.jpg", photo_views["chelsea"][1])}
            ),
            "get": lambda: client.get("/items/cat"),
            "list": lambda: client.get("/items"),
            "info": lambda: client.get("/info"),
            "delete image": lambda: client.delete(f"/items/dog/images/{image_id}"),
            "readyz": lambda: client.get("/readyz"),
        }
        took = {}
        for name, call in calls.items():
            start = time.monotonic()
            r = call()
            took[name] = time.monotonic() - start
            assert r.status_code == 503, (name, r.text)
            assert r.headers["content-type"].startswith("application/problem+json"), name
            assert int(r.headers["retry-after"]) > 0, name
        search = client.post("/search", files={"image": ("q.jpg", photo_views["chelsea"][4])})
        assert search.status_code == 200
        os.kill(proc.pid, signal.SIGCONT)
        # The deadline (+ 0.2 s) bounds every answer (the enrollment also decodes and embeds its
        # image first); readiness answers within a second. Slack for a loaded machine.
        slack = 0.3
        assert took["readyz"] < 1.0 + slack, took
        assert all(t < deadline_s + 0.2 + slack for t in took.values()), took
        # The two writes had started: once the store answers again, the index agrees with it.
        retriever = client.app.state.service.retriever  # type: ignore[attr-defined]
        store = RedisStore(url, namespace)
        try:
            give_up = time.monotonic() + 15
            while True:
                states = {s.item_id: s for s in store.iter_item_states()}
                if sorted(retriever.index.item_ids()) == sorted(states) and all(
                    np.allclose(retriever.index.get(i), centroid_from_sum(s.embedding_sum))
                    for i, s in states.items()
                ):
                    break
                assert time.monotonic() < give_up, "the index never agreed with the store"
                time.sleep(0.2)
        finally:
            store.close()
        # Whatever the stalled writes did, they did it once: cat has 1 or 2 images.
        assert states["cat"].count in (1, 2)


def test_a_write_has_its_own_longer_deadline() -> None:
    async def scenario() -> None:
        lane = StoreLane(
            slots=2, queue=0, deadline_s=0.2, write_deadline_s=30, metrics=ServiceMetrics()
        )

        def takes(seconds: float) -> str:
            time.sleep(seconds)
            return "done"

        # 0.6 s: past the read deadline, well within the write's.
        with pytest.raises(StoreDeadlineError):
            await lane.run(takes, 0.6)
        marked: list[str] = []
        assert await lane.run_write("a", marked.append, takes, 0.6) == "done"
        assert marked == []
        lane.close()

    asyncio.run(scenario())
