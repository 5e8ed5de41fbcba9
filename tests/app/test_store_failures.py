"""Redis store: durable writes, 503 for writes while Redis is down, searches keep working."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import redis

from tests.app.conftest import ServiceFactory
from tests.live_server import free_port
from tests.redis_server import REDIS_URL, start_redis_server


def test_writes_fail_with_503_and_searches_continue_while_redis_is_down(
    service_factory: ServiceFactory,
    own_redis: tuple[str, subprocess.Popen[bytes]],
    photo_views: dict[str, list[bytes]],
) -> None:
    url, proc = own_redis
    with service_factory(redis_url=url, redis_namespace=f"t{uuid.uuid4().hex[:8]}") as client:
        assert client.get("/info").json()["store_backend"] == "redis"
        r = client.post("/items/cat/images", files={"images": ("a.jpg", photo_views["chelsea"][0])})
        assert r.status_code == 201
        proc.kill()
        proc.wait()
        r = client.post("/items/cat/images", files={"images": ("b.jpg", photo_views["chelsea"][1])})
        assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem")
        assert client.delete("/items/cat").status_code == 503
        r = client.post("/search", files={"image": ("q.jpg", photo_views["chelsea"][4])})
        assert r.status_code == 200 and r.json()["results"][0]["item_id"] == "cat"
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200


def test_index_is_rebuilt_from_the_store_on_restart(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    namespace = f"t{uuid.uuid4().hex[:8]}"
    for backend in ({}, {"redis_url": REDIS_URL, "redis_namespace": namespace}):
        with service_factory(**backend) as client:
            for name in ("coins", "rocket"):
                files = [("images", (f"{i}.jpg", v)) for i, v in enumerate(photo_views[name][:3])]
                assert client.post(f"/items/{name}-x/images", files=files).status_code == 201
            before = client.post(
                "/search", files={"image": ("q.jpg", photo_views["rocket"][5])}
            ).json()
        with service_factory(**backend) as client:
            after = client.post(
                "/search", files={"image": ("q.jpg", photo_views["rocket"][5])}
            ).json()
            assert after["results"][0]["item_id"] == "rocket-x"
            for a, b in zip(before["results"], after["results"], strict=True):
                assert a["item_id"] == b["item_id"] and abs(a["score"] - b["score"]) < 1e-6
            assert client.get("/info").json()["images"] == 6
    redis.Redis.from_url(REDIS_URL).delete(
        *redis.Redis.from_url(REDIS_URL).keys(f"{namespace}*") or ["_"]
    )


def test_a_store_of_another_model_is_refused(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    from store.records import ModelIdentity
    from store.sqlite_store import SqliteStore

    store = SqliteStore(tmp_path / "data" / "store.sqlite3")
    store.claim_model_identity(ModelIdentity(name="someone-elses-model", version="7", dim=512))
    store.close()
    with service_factory(wait_ready=False) as client:
        deadline = time.monotonic() + 60
        while True:
            r = client.get("/readyz")
            if "failed" in r.text or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status_code == 503
        assert "someone-elses-model" in r.json()["detail"]
        r = client.post("/search", files={"image": ("q.jpg", b"x")})
        assert r.status_code == 503 and "someone-elses-model" in r.json()["detail"]
        assert client.get("/healthz").status_code == 200


def test_start_up_waits_for_a_store_that_comes_up_later(
    service_factory: ServiceFactory, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    port = free_port()  # nothing listens there yet
    url = f"redis://127.0.0.1:{port}/0"
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    proc: subprocess.Popen[bytes] | None = None
    try:
        with service_factory(wait_ready=False, redis_url=url) as client:
            deadline = time.monotonic() + 60  # the model loads first
            while "waiting for the store" not in (r := client.get("/readyz")).text:
                assert time.monotonic() < deadline, r.text
                time.sleep(0.05)
            assert r.status_code == 503 and r.headers["retry-after"]
            detail = r.json()["detail"]
            # Says why, but not where the store is (the log does).
            assert "StoreUnavailableError" in detail and "<redis>" in detail, detail
            assert str(port) not in detail, detail
            # Still retrying, not given up: a wait later, it says the same.
            time.sleep(1.0)
            r = client.get("/readyz")
            assert r.status_code == 503 and "waiting for the store" in r.text, r.text
            assert client.app.state.service.failure is None  # type: ignore[attr-defined]

            proc = start_redis_server(port, redis_dir)
            up = time.monotonic()
            while (r := client.get("/readyz")).status_code != 200:
                # Backoff is capped and short so far (0.5, 1, 2 s...): well within 10 s.
                assert time.monotonic() - up < 10, r.text
                time.sleep(0.05)
            r = client.post(
                "/items/late/images", files={"images": ("a.jpg", photo_views["flower"][0])}
            )
            assert r.status_code == 201
            assert client.get("/info").json()["store_backend"] == "redis"
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def test_a_bad_model_file_is_not_retried(service_factory: ServiceFactory, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with service_factory(wait_ready=False, model_path=bad) as client:
        state = client.app.state.service  # type: ignore[attr-defined]
        state.wait_loaded(timeout=30)
        assert state.phase == "failed"  # the loader has stopped: nothing more to wait for
        r = client.get("/readyz")
        assert r.status_code == 503 and "ContractError" in r.json()["detail"], r.text
