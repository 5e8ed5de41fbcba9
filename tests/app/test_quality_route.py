"""``GET /quality`` over real HTTP on real photos (tiny real model): its figures equal the
from-scratch leave-one-out oracle over the store's embeddings, its worst items the oracle's,
its gauges in /metrics; a planted mislabel lowers R@1 (once an answer computed after it is
served); a sample smaller than the gallery is the seeded one; the Redis
store with the IVF index (competitors read from the store through the lane) agrees too; a
stalled store is a 503 problem within the store deadline, and the service computes once it is
back."""

from __future__ import annotations

import math
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import httpx
import numpy as np
import pytest

from app.gallery_quality import index_centroids, sample_gallery
from store.store import Store
from tests import redis_server
from tests.app.conftest import ServiceFactory
from tests.app.metrics_text import metric_value
from tests.index.leave_one_out_oracle import Gallery, oracle_rank
from tests.store.conftest import _drop_namespace

MULTI = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "china", "flower")
SINGLE = ("stereo_motorcycle", "immunohistochemistry")


def files(views: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"v{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]


def enroll(client: httpx.Client, item_id: str, views: list[bytes]) -> None:
    r = client.post(f"/items/{item_id}/images", files=files(views))
    assert r.status_code in (200, 201), r.text


def enroll_gallery(client: httpx.Client, photo_views: dict[str, list[bytes]]) -> None:
    for name in MULTI:
        enroll(client, name, photo_views[name][:3])
    for name in SINGLE:
        enroll(client, name, photo_views[name][:1])


def store_of(client: httpx.Client) -> Store:
    store: Store = client.app.state.service.retriever.store  # type: ignore[attr-defined]
    return store


def stored_gallery(store: Store) -> tuple[Gallery, dict[tuple[str, str], int]]:
    """Every item's embeddings as the store holds them (enrollment order), and each image's
    position in its item."""
    ids = [s.item_id for s in store.iter_item_states()]
    records = store.item_images(ids)
    gallery = {i: [r.embedding for r in records[i]] for i in ids}
    position = {(i, r.image_id): n for i in ids for n, r in enumerate(records[i])}
    return gallery, position


def oracle(store: Store, images: list[tuple[str, str]]) -> dict[str, Any]:
    gallery, position = stored_gallery(store)
    ranks = [oracle_rank(gallery, i, position[(i, im)]) for i, im in images]
    per_item: dict[str, list[int]] = {}
    for (item_id, _), rank in zip(images, ranks, strict=True):
        per_item.setdefault(item_id, []).append(rank)
    # Exact fractions: items whose figures are equal tie, and are ordered by id.
    worst = sorted(
        (
            Fraction(sum(Fraction(1, r) for r in rs), len(rs)),
            Fraction(sum(r == 1 for r in rs), len(rs)),
            item_id,
        )
        for item_id, rs in per_item.items()
    )
    return {
        "r_at_1": float(np.mean([r == 1 for r in ranks])),
        "mrr": float(np.mean([1 / r for r in ranks])),
        "ranks": ranks,
        "worst": [item_id for _, _, item_id in worst],
    }


def every_image(store: Store) -> list[tuple[str, str]]:
    gallery, position = stored_gallery(store)
    return sorted(key for key in position if len(gallery[key[0]]) > 1)


def quality(client: httpx.Client, **params: Any) -> dict[str, Any]:
    r = client.get("/quality", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_quality_is_the_oracle_over_the_stored_embeddings(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory(quality_cache_seconds=0) as client:
        enroll_gallery(client, photo_views)
        store = store_of(client)
        body = quality(client, items="true", limit=3)
        expected = oracle(store, every_image(store))
        assert body["sample_size"] == 3 * len(MULTI) == body["eligible_images"]
        assert body["items_left_out"] == len(SINGLE)
        assert (body["items"], body["images"]) == (10, 3 * len(MULTI) + len(SINGLE))
        assert body["skipped_images"] == 0
        assert body["r_at_1"] == pytest.approx(expected["r_at_1"], abs=1e-12)
        assert body["mrr"] == pytest.approx(expected["mrr"], abs=1e-12)
        assert 0 < body["r_at_1"] < 1  # some views miss: the figure has room to fall and rise
        assert [w["item_id"] for w in body["worst_items"]] == expected["worst"][:3]
        assert body["model"]["name"] == client.get("/info").json()["model"]["model_name"]
        assert metric_value(client, "retrieval_gallery_loo_recall_at_1") == body["r_at_1"]
        assert metric_value(client, "retrieval_gallery_loo_mrr") == body["mrr"]
        assert metric_value(client, "retrieval_gallery_loo_sample_images") == body["sample_size"]
        assert quality(client)["worst_items"] is None

        # A view of one photo enrolled under another item: a miss. No write invalidates the
        # answer; with a TTL of 0 each request starts the next computation.
        stray, into = MULTI[0], MULTI[1]
        enroll(client, into, [photo_views[stray][4]])
        fresh = wait_for(client, lambda b: b["sample_size"] == body["sample_size"] + 1)
        after = oracle(store, every_image(store))
        assert fresh["sample_size"] == body["sample_size"] + 1
        assert fresh["r_at_1"] == pytest.approx(after["r_at_1"], abs=1e-12)
        assert fresh["mrr"] == pytest.approx(after["mrr"], abs=1e-12)
        assert fresh["r_at_1"] < body["r_at_1"]
        gallery, _ = stored_gallery(store)
        assert oracle_rank(gallery, into, 3) > 1  # the stray view, enrolled fourth, misses
        assert metric_value(client, "retrieval_gallery_loo_recall_at_1") == fresh["r_at_1"]


def wait_for(
    client: httpx.Client, done: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = quality(client)
        if done(body):
            return body
        assert time.monotonic() < deadline, "no new answer"
        time.sleep(0.05)


def test_a_cached_answer_is_served_until_its_ttl(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory(quality_cache_seconds=600) as client:
        empty = quality(client)
        assert empty["sample_size"] == 0 and empty["r_at_1"] is None and empty["mrr"] is None
        assert math.isnan(metric_value(client, "retrieval_gallery_loo_recall_at_1"))
        enroll_gallery(client, photo_views)
        time.sleep(0.2)
        assert quality(client)["computed_at"] == empty["computed_at"]


def test_a_smaller_sample_is_the_seeded_one(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory(quality_sample_images=7) as client:
        enroll_gallery(client, photo_views)
        store = store_of(client)
        body = quality(client)
        sample = sample_gallery(store, 7, body["seed"])
        expected = oracle(store, list(sample.images))
        assert body["sample_size"] == 7 and body["eligible_images"] == 3 * len(MULTI)
        assert body["r_at_1"] == pytest.approx(expected["r_at_1"], abs=1e-12)
        assert body["mrr"] == pytest.approx(expected["mrr"], abs=1e-12)


@pytest.mark.redis
def test_redis_and_ivf_agree_with_the_oracle(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    try:
        with service_factory(
            redis_url=redis_server.REDIS_URL, redis_namespace=namespace, index="ivf"
        ) as client:
            enroll_gallery(client, photo_views)
            store = store_of(client)
            # Not a flat index: the competing centroids are the store's, read through the lane.
            retriever = client.app.state.service.retriever  # type: ignore[attr-defined]
            assert index_centroids(retriever.index) is None
            body = quality(client)
            expected = oracle(store, every_image(store))
            assert body["sample_size"] == 3 * len(MULTI)
            assert body["r_at_1"] == pytest.approx(expected["r_at_1"], abs=1e-12)
            assert body["mrr"] == pytest.approx(expected["mrr"], abs=1e-12)
    finally:
        _drop_namespace(namespace)


@pytest.mark.redis
def test_a_stalled_store_is_a_503_and_the_next_request_computes(
    service_factory: ServiceFactory,
    photo_views: dict[str, list[bytes]],
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, proc = own_redis
    with service_factory(redis_url=url, redis_namespace="quality", store_deadline_ms=500) as client:
        enroll_gallery(client, photo_views)
        proc.send_signal(signal.SIGSTOP)  # there, accepting connections, answering nothing
        try:
            started = time.monotonic()
            r = client.get("/quality")
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert time.monotonic() - started < 5
        finally:
            proc.send_signal(signal.SIGCONT)
        # Back: a later request computes (503s meanwhile while the breaker, if open, cools).
        deadline = time.monotonic() + 30
        while (r := client.get("/quality")).status_code != 200:
            assert r.status_code == 503 and time.monotonic() < deadline, r.text
            time.sleep(0.1)
        assert r.json()["sample_size"] == 3 * len(MULTI)
