"""Over real HTTP: a write whose commit answer is lost is a 503 "outcome unknown" (never 500),
and the index is brought back in line with the store, committed or not; the periodic pass
corrects what another writer changed behind the service's back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest

from app.index_applier import IndexApplier
from app.index_reconciler import IndexReconciler
from app.metrics import ServiceMetrics
from app.retriever import Retriever
from app.striped_lock import StripedLock
from index.centroid_math import centroid_from_sum
from index.flat_centroid_index import FlatCentroidIndex
from store.records import NewImage
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from tests import redis_server
from tests.app.conftest import ServiceFactory
from tests.app.metrics_text import metric_value, wait_for_metric
from tests.live_server import free_port
from tests.redis_server import start_redis_server
from tests.store.conftest import _drop_namespace
from tests.store.resp_cutting_proxy import RespCuttingProxy


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    _drop_namespace(name)


@pytest.fixture
def proxy() -> Iterator[RespCuttingProxy]:
    shared = urlparse(redis_server.REDIS_URL)
    with RespCuttingProxy(shared.hostname or "127.0.0.1", shared.port or 6379) as p:
        yield p


def _retriever(client: httpx.Client) -> Retriever:
    retriever = client.app.state.service.retriever  # type: ignore[attr-defined]
    assert isinstance(retriever, Retriever)
    return retriever


def _assert_index_equals_a_rebuild(client: httpx.Client, namespace: str) -> None:
    """The service's index holds exactly what a fresh index built from the store holds."""
    index = _retriever(client).index
    store = RedisStore(redis_server.REDIS_URL, namespace)
    fresh = FlatCentroidIndex(index.dim)  # type: ignore[attr-defined]
    fresh.rebuild((s.item_id, centroid_from_sum(s.embedding_sum)) for s in store.iter_item_states())
    store.close()
    assert sorted(index.item_ids()) == sorted(fresh.item_ids())
    for item_id in fresh.item_ids():
        row, expected = index.get(item_id), fresh.get(item_id)
        assert row is not None and expected is not None
        np.testing.assert_allclose(row, expected, atol=1e-6)


def _without_change_feed(client: httpx.Client) -> None:
    """Stop the service following the store's change feed, which would otherwise apply the
    writes these tests leave to the reconciler (a committed write's record, another writer's)."""
    follower = client.app.state.service.follower  # type: ignore[attr-defined]
    assert follower is not None
    follower.close()


def _wait_reconciled(client: httpx.Client) -> None:
    deadline = time.monotonic() + 5
    while _retriever(client).reconciler.pending():
        assert time.monotonic() < deadline, "pending items were never reconciled"
        time.sleep(0.02)


def _assert_outcome_unknown(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) > 0
    detail = r.json()["detail"]
    assert "outcome is unknown" in detail and "Retrying the same request is safe" in detail
    assert "127.0.0.1" not in detail  # where the store is goes to the log only


@pytest.mark.redis
def test_a_committed_write_whose_answer_is_lost_is_503_and_then_in_the_index(
    service_factory: ServiceFactory,
    proxy: RespCuttingProxy,
    namespace: str,
    photo_views: dict[str, list[bytes]],
) -> None:
    with service_factory(
        redis_url=proxy.url, redis_namespace=namespace, reconcile_interval_s=0
    ) as client:
        _without_change_feed(client)
        cat = photo_views["chelsea"][0]
        assert client.post("/items/cat/images", files={"images": ("a.jpg", cat)}).status_code == 201
        rocket = photo_views["rocket"][0]

        proxy.cut_next_exec(deliver=True)
        _assert_outcome_unknown(
            client.post("/items/rocket/images", files={"images": ("r.jpg", rocket)})
        )
        assert proxy.cuts == 1
        _wait_reconciled(client)
        # The store holds it (the EXEC went through), so now the index does too: the
        # reconciler had something to correct, which only the re-read could have done.
        assert metric_value(client, "retrieval_reconciled_items_total", source="pending") == 1
        assert metric_value(client, "retrieval_reconcile_pending") == 0
        _assert_index_equals_a_rebuild(client, namespace)
        hits = client.post("/search", files={"image": ("q.jpg", rocket)}).json()["results"]
        assert hits[0]["item_id"] == "rocket" and hits[0]["score"] > 0.999
        # Retrying the same request is what the answer said: safe, nothing added twice (200:
        # the first try had committed, so this one adds nothing new).
        r = client.post("/items/rocket/images", files={"images": ("r.jpg", rocket)})
        assert r.status_code == 200 and r.json()["image_count"] == 1
        assert r.json()["created"] == [False]

        proxy.cut_next_exec(deliver=True)
        _assert_outcome_unknown(client.delete("/items/cat"))
        _wait_reconciled(client)
        assert metric_value(client, "retrieval_reconciled_items_total", source="pending") == 2
        _assert_index_equals_a_rebuild(client, namespace)
        assert "cat" not in _retriever(client).index
        assert client.delete("/items/cat").status_code == 404


@pytest.mark.redis
def test_a_write_whose_exec_never_arrived_is_503_and_stays_out_of_the_index(
    service_factory: ServiceFactory,
    proxy: RespCuttingProxy,
    namespace: str,
    photo_views: dict[str, list[bytes]],
) -> None:
    with service_factory(
        redis_url=proxy.url, redis_namespace=namespace, reconcile_interval_s=0
    ) as client:
        views = photo_views["coffee"]
        assert (
            client.post("/items/mug/images", files={"images": ("a.jpg", views[0])}).status_code
            == 201
        )
        before = _retriever(client).index.get("mug")

        proxy.cut_next_exec(deliver=False)
        _assert_outcome_unknown(
            client.post("/items/mug/images", files={"images": ("b.jpg", views[1])})
        )
        assert proxy.cuts == 1
        _wait_reconciled(client)
        assert metric_value(client, "retrieval_reconciled_items_total", source="pending") == 0
        _assert_index_equals_a_rebuild(client, namespace)
        row = _retriever(client).index.get("mug")
        assert before is not None and row is not None and np.array_equal(row, before)
        assert client.get("/items/mug").json()["image_count"] == 1
        # The retry the answer invites then adds the image once.
        r = client.post("/items/mug/images", files={"images": ("b.jpg", views[1])})
        assert r.status_code == 201 and r.json()["image_count"] == 2
        _assert_index_equals_a_rebuild(client, namespace)


@pytest.mark.redis
def test_the_periodic_pass_corrects_what_another_writer_changed(
    service_factory: ServiceFactory, namespace: str, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory(
        redis_url=redis_server.REDIS_URL, redis_namespace=namespace, reconcile_interval_s=0.2
    ) as client:
        _without_change_feed(client)
        for name in ("astronaut", "coffee"):
            files = {"images": ("a.jpg", photo_views[name][0])}
            assert client.post(f"/items/{name}/images", files=files).status_code == 201
        # Another replica on the same Redis, unheard of without the feed.
        other = RedisStore(redis_server.REDIS_URL, namespace)
        dim = client.get("/info").json()["embedding_dim"]
        vec = np.random.default_rng(7).standard_normal(dim).astype(np.float32)
        other.enroll("elsewhere", [NewImage("e" * 64, vec)])
        other.delete_item("coffee")
        other.close()
        assert (
            wait_for_metric(
                client, "retrieval_reconciled_items_total", 2, timeout=5, source="periodic"
            )
            == 2
        )
        _assert_index_equals_a_rebuild(client, namespace)
        assert "elsewhere" in _retriever(client).index and "coffee" not in _retriever(client).index


def test_the_periodic_pass_works_on_sqlite_too(
    service_factory: ServiceFactory, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory(reconcile_interval_s=0.2) as client:
        files = {"images": ("a.jpg", photo_views["astronaut"][0])}
        assert client.post("/items/astronaut/images", files=files).status_code == 201
        # Another process on the same file (a maintenance script, say).
        other = SqliteStore(tmp_path / "data" / "store.sqlite3")
        other.delete_item("astronaut")
        other.close()
        assert (
            wait_for_metric(
                client, "retrieval_reconciled_items_total", 1, timeout=5, source="periodic"
            )
            == 1
        )
        assert len(_retriever(client).index) == 0


@pytest.mark.redis
def test_a_pending_item_is_retried_until_the_store_is_back(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = start_redis_server(port, tmp_path)
    store = RedisStore(url)
    metrics = ServiceMetrics()
    index = FlatCentroidIndex(4)
    reconciler = IndexReconciler(
        store=store,
        applier=IndexApplier(index, metrics),
        item_locks=StripedLock(),
        metrics=metrics,
        interval_s=0,
        pending_retry_s=0.1,
    )
    try:
        vec = np.array([1, 2, 3, 4], dtype=np.float32)
        store.enroll("a", [NewImage("a" * 64, vec)])  # the index has not heard of it
        reconciler.start()
        proc.kill()
        proc.wait()
        reconciler.mark("a")
        time.sleep(0.5)  # several failed attempts
        assert reconciler.pending() == {"a"} and "a" not in index
        assert metrics.registry.get_sample_value("retrieval_reconcile_pending") == 1
        proc = start_redis_server(port, tmp_path)  # the AOF brings "a" back
        deadline = time.monotonic() + 5
        while reconciler.pending():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        row = index.get("a")
        assert row is not None
        np.testing.assert_allclose(row, centroid_from_sum(vec.astype(np.float64)), atol=1e-6)
        assert metrics.registry.get_sample_value("retrieval_reconcile_pending") == 0
    finally:
        reconciler.close()
        store.close()
        proc.kill()
        proc.wait()
