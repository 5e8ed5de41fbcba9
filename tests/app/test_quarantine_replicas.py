"""Quarantine across replicas (tiny artifact, real Redis, real HTTP): an image the quality gate
holds out through one replica is out of the other's centroid and evidence once it has applied
the write (``after=``), and a release through the other comes back the same way. Each
replica's centroid is checked against the store's counted embeddings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests import redis_server
from tests.app.conftest import ServiceFactory
from tests.app.test_image_evidence_in_step import answers, assert_same, retriever_of, wait_filled
from tests.app.test_suspect_images_route import ITEMS, MARGIN, files, unit
from tests.store.conftest import _drop_namespace

pytestmark = pytest.mark.redis


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    _drop_namespace(name)


def assert_counted_only(client: httpx.Client, item_id: str, out: set[str]) -> None:
    """This replica's centroid and held evidence of ``item_id`` are its counted images'."""
    retriever = retriever_of(client)
    images = retriever.store.item_images([item_id])[item_id]
    assert {r.image_id for r in images if r.quarantined} == out
    counted = [r for r in images if not r.quarantined]
    expected = unit(np.sum([r.embedding.astype(np.float64) for r in counted], axis=0))
    np.testing.assert_allclose(retriever.index.get(item_id), expected, atol=1e-6)
    held = retriever.evidence.held(item_id)
    assert held is not None and held.image_ids == tuple(r.image_id for r in counted)


def test_a_quarantine_and_its_release_reach_the_other_replica(
    service_factory: ServiceFactory, namespace: str, photo_views: dict[str, list[bytes]]
) -> None:
    shared = {
        "redis_url": redis_server.REDIS_URL,
        "redis_namespace": namespace,
        "suspect_margin": MARGIN,
        "quarantine_suspects": True,
    }
    with service_factory(**shared) as a, service_factory(**shared) as b:
        wait_filled(a)
        wait_filled(b)
        for name in ITEMS:
            r = a.post(f"/items/{name}/images", files=files(photo_views[name][:3]))
            assert r.status_code == 201, r.text
        stray_bytes = photo_views["chelsea"][4]
        r = a.post("/items/astronaut/images", files=files([stray_bytes]))
        assert r.status_code == 201, r.text
        stray = r.json()["image_ids"][0]
        assert [s["quarantined"] for s in r.json()["suspects"]] == [True]
        position = r.headers["x-retrieval-position"]
        on_b = answers(b, stray_bytes, after=position)
        assert_same(on_b, answers(a, stray_bytes))
        hit = next(h for h in on_b if h["item_id"] == "astronaut")
        assert hit["best_image_id"] != stray and hit["image_count"] == 3
        for client in (a, b):
            assert_counted_only(client, "astronaut", {stray})
        assert b.get("/items/astronaut").json()["quarantined_image_ids"] == [stray]

        # Released through the other replica.
        r = b.patch(f"/items/astronaut/images/{stray}", json={"quarantined": False})
        assert r.status_code == 200, r.text
        on_a = answers(a, stray_bytes, after=r.headers["x-retrieval-position"])
        assert_same(on_a, answers(b, stray_bytes))
        hit = next(h for h in on_a if h["item_id"] == "astronaut")
        assert hit["best_image_id"] == stray and hit["image_count"] == 4
        for client in (a, b):
            assert_counted_only(client, "astronaut", set())
