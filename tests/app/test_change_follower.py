"""Replicas that converge: real app instances on one real Redis, each following the store's
change feed. A write through one is seen through another with ``after=``, deletions propagate,
a replica started mid-load catches up, and a feed trimmed past a replica forces a rebuild.

Replicas A and B serve the module (one namespace, one blob directory, as a compose
deployment's replicas share them); each test checks every index against the whole store."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.change_follower import ChangeFollower
from app.index_applier import IndexApplier
from app.main import create_app
from app.metrics import ServiceMetrics
from app.retriever import Retriever
from app.settings import Settings
from app.striped_lock import StripedLock
from index.centroid_math import centroid_from_sum
from index.flat_centroid_index import FlatCentroidIndex
from store.change_feed import RedisChangeFeed
from store.records import ModelIdentity, NewImage
from store.redis_store import RedisStore
from tests import redis_server
from tests.live_server import live_server
from tests.store.conftest import _drop_namespace

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    _drop_namespace(name)


@pytest.fixture(scope="module")
def shared(
    namespace: str, tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path
) -> dict[str, Any]:
    """The settings every replica of the module has: one Redis namespace, one data directory."""
    return {
        "model_path": tiny_model_path,
        "data_dir": tmp_path_factory.mktemp("data"),
        "redis_url": redis_server.REDIS_URL,
        "redis_namespace": namespace,
    }


@contextmanager
def replica(shared: dict[str, Any]) -> Iterator[httpx.Client]:
    """The real app under a real uvicorn, ready (its index rebuilt from the store)."""
    app = create_app(Settings(**shared))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.app = app  # type: ignore[attr-defined]  # lets tests reach the state
        yield client


@pytest.fixture(scope="module")
def replicas(shared: dict[str, Any]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with replica(shared) as a, replica(shared) as b:
        yield a, b


def retriever_of(client: httpx.Client) -> Retriever:
    retriever = client.app.state.service.retriever  # type: ignore[attr-defined]
    assert isinstance(retriever, Retriever)
    return retriever


def files(*views: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"v{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]


def search(client: httpx.Client, view: bytes, after: str | None = None) -> httpx.Response:
    params = {"k": 5} if after is None else {"k": 5, "after": after}
    return client.post("/search", params=params, files={"image": ("q.jpg", view, "image/jpeg")})


def assert_index_equals_a_rebuild(client: httpx.Client, namespace: str) -> None:
    index = retriever_of(client).index
    store = RedisStore(redis_server.REDIS_URL, namespace)
    expected = {s.item_id: centroid_from_sum(s.embedding_sum) for s in store.iter_item_states()}
    store.close()
    assert sorted(index.item_ids()) == sorted(expected)
    for item_id, centroid in expected.items():
        row = index.get(item_id)
        assert row is not None
        np.testing.assert_allclose(row, centroid, atol=1e-6)


def assert_converged(clients: tuple[httpx.Client, ...], namespace: str) -> None:
    """Until each replica's follower has read the feed to its end (lag 0) and its index equals
    a rebuild from the store; that within 10 s, or the assertion of the last look fails."""
    deadline = time.monotonic() + 10
    for client in clients:
        follower = client.app.state.service.follower  # type: ignore[attr-defined]
        while not (follower.caught_up and follower.lag_records == 0):
            assert time.monotonic() < deadline, "a replica never caught up"
            time.sleep(0.02)
        # Lag 0 is read before the records of the last writes are applied: look again until
        # they are (not a fixed wait for the follower's 0.5 s blocking read).
        while True:
            try:
                assert_index_equals_a_rebuild(client, namespace)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def test_a_write_through_one_replica_is_seen_through_another_with_after(
    replicas: tuple[httpx.Client, httpx.Client],
    namespace: str,
    photo_views: dict[str, list[bytes]],
) -> None:
    cat, rocket = photo_views["chelsea"], photo_views["rocket"]
    a, b = replicas
    for _ in range(5):  # each time: written on A, read on B at once
        r = a.post(f"/items/rocket-{_}/images", files=files(rocket[_ % 6]))
        assert r.status_code == 201
        position = r.headers["x-retrieval-position"]
        assert r.json()["position"] == position
        hits = search(b, rocket[_ % 6], after=position)
        assert hits.status_code == 200, hits.text
        top = hits.json()["results"][0]
        assert top["item_id"] == f"rocket-{_}" and top["score"] == pytest.approx(1, abs=1e-4)
    enrolled = b.post("/items/cat/images", files=files(*cat[:2]))
    gone = b.delete(f"/items/cat/images/{enrolled.json()['image_ids'][0]}")
    assert gone.status_code == 204
    # The item's latest state (one image left) is what A shows after that position.
    assert search(a, cat[1], after=gone.headers["x-retrieval-position"]).status_code == 200
    assert retriever_of(a).applier.version_of("cat") >= int(
        gone.headers["x-retrieval-position"].split(".")[0]
    )
    deleted = a.delete("/items/cat")
    hits = search(b, cat[1], after=deleted.headers["x-retrieval-position"]).json()["results"]
    assert "cat" not in [h["item_id"] for h in hits]
    # A position no write has is refused at once, not waited for.
    bogus = search(b, cat[1], after=f"{10**12}.cat")
    assert bogus.status_code == 422
    assert bogus.headers["content-type"] == "application/problem+json"
    assert_converged((a, b), namespace)
    metrics = b.get("/metrics").text
    assert "retrieval_replication_lag_records 0.0" in metrics
    assert 'retrieval_changes_applied_total{outcome="applied"}' in metrics


def test_concurrent_writers_on_three_replicas_and_one_started_mid_load_converge(
    replicas: tuple[httpx.Client, httpx.Client],
    shared: dict[str, Any],
    namespace: str,
    photo_views: dict[str, list[bytes]],
) -> None:
    views = [v for name in sorted(photo_views) for v in photo_views[name][:3]]
    a, b = replicas
    stop = threading.Event()
    failures: list[str] = []

    def writer(client: httpx.Client, tag: str) -> None:
        i = 0
        while not stop.is_set():
            item = f"shared-{i % 4}"  # both replicas write the same few items
            view = views[(i * 7 + len(tag)) % len(views)]
            if i % 5 == 4:
                r = client.delete(f"/items/{item}")
                ok = r.status_code in (204, 404)
            else:
                r = client.post(f"/items/{item}/images", files=files(view))
                ok = r.status_code in (200, 201)  # 200: the item held the view already
            if not ok:
                failures.append(f"{tag}: {r.status_code} {r.text}")
            i += 1

    threads = [threading.Thread(target=writer, args=(c, t)) for c, t in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    time.sleep(0.5)
    with replica(shared) as c:  # starts while both write
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        assert failures == []
        assert_converged((a, b, c), namespace)


@pytest.fixture
def own_namespace() -> Iterator[str]:
    """Not the module's: this test trims its feed to nothing."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    _drop_namespace(name)


def test_a_feed_trimmed_past_a_replica_makes_it_rebuild_from_the_store(
    own_namespace: str,
) -> None:
    namespace = own_namespace
    dim = 8
    store = RedisStore(redis_server.REDIS_URL, namespace, change_feed_retention_s=0)
    store.claim_model_identity(ModelIdentity("m", "1", dim))
    rng = np.random.default_rng(3)

    def vec() -> np.ndarray:
        return rng.standard_normal(dim).astype(np.float32)

    store.enroll("kept", [NewImage("a" * 64, vec())])
    feed = RedisChangeFeed(redis_server.REDIS_URL, namespace, dim)
    behind = feed.cursor()  # a replica that stopped reading here
    store.enroll("later", [NewImage("b" * 64, vec())])
    store.delete_item("kept")
    store.compact()  # retention 0: every record is gone
    index = FlatCentroidIndex(dim)
    metrics = ServiceMetrics()
    applier = IndexApplier(index, metrics)
    follower = ChangeFollower(
        feed=feed,
        applier=applier,
        item_locks=StripedLock(),
        rebuild=lambda: applier.rebuild(store.iter_item_states()),
        metrics=metrics,
        block_ms=50,
    )
    follower.start(behind)
    try:
        deadline = time.monotonic() + 5
        while not follower.caught_up:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert metrics.registry.get_sample_value("retrieval_index_rebuilds_total") == 1
        assert index.item_ids() == ["later"]
        store.enroll("after-rebuild", [NewImage("c" * 64, vec())])  # followed again
        while "after-rebuild" not in index:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        follower.close()
        store.close()
