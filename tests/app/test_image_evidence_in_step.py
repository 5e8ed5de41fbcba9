"""The per-image embeddings a search's second stage reads stay what the store holds, on every
path that changes the index (tiny artifact, real Redis, real SQLite, real HTTP):

* two replicas on one Redis: writes through either (enroll, a re-sent file, delete an image,
  delete an item) reach the other's memory by the change feed (re-read from the store), the
  writer's by its own write's image change; both then answer every search alike;
* a store that outgrows the budget switches to reading from the store and answers as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.image_evidence import MEMORY, STORE
from app.metrics import ServiceMetrics
from app.retriever import DEFAULT_IMAGE_EMBEDDINGS_BUDGET_BYTES, Retriever, Upload
from artifact.onnx_embedder import OnnxEmbedder
from index.flat_centroid_index import FlatCentroidIndex
from index.image_embeddings import ImageEmbeddings, unit_rows
from index.two_stage_fusion import RankMode
from store.item_spread import item_spread
from store.sqlite_store import SqliteStore
from store.store import Store
from tests import redis_server
from tests.app.conftest import ServiceFactory
from tests.store.conftest import _drop_namespace

# Evidence read from float16 rows either way; the spread from the sums or from the rows.
ATOL = 1e-5


def retriever_of(client: httpx.Client) -> Retriever:
    retriever = client.app.state.service.retriever  # type: ignore[attr-defined]
    assert isinstance(retriever, Retriever)
    return retriever


def files(*views: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"v{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]


def assert_memory_is_the_store(retriever: Retriever, store: Store) -> None:
    """Every held item's ids and rows are the store's images, and every stored item is held."""
    evidence = retriever.evidence
    assert evidence.mode == MEMORY
    held = sorted(evidence.held_item_ids())
    stored = store.item_images(retriever.index.item_ids())
    assert held == sorted(i for i, records in stored.items() if records)
    for item_id in held:
        images = evidence.held(item_id)
        assert images is not None
        records = stored[item_id]
        assert images.image_ids == tuple(r.image_id for r in records)
        expected = unit_rows(np.stack([r.embedding for r in records]))
        np.testing.assert_array_equal(images.rows, expected)


def answers(client: httpx.Client, view: bytes, after: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"k": 10} if after is None else {"k": 10, "after": after}
    r = client.post("/search", params=params, files=files(view))
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


def assert_same(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    key = ("item_id", "best_image_id", "image_count", "match")
    assert [tuple(h[f] for f in key) for h in got] == [tuple(h[f] for f in key) for h in expected]
    for f in ("score", "image_score", "centroid_score", "confidence"):
        np.testing.assert_allclose([h[f] for h in got], [h[f] for h in expected], atol=ATOL)


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    _drop_namespace(name)


def wait_filled(client: httpx.Client) -> None:
    assert retriever_of(client).evidence.wait_filled(timeout=30)


@pytest.mark.redis
def test_replicas_keep_the_stores_images_through_every_write(
    service_factory: ServiceFactory, namespace: str, photo_views: dict[str, list[bytes]]
) -> None:
    from store.redis_store import RedisStore

    shared = {
        "redis_url": redis_server.REDIS_URL,
        "redis_namespace": namespace,
        "ranking": "two_stage",
    }
    names = ("astronaut", "chelsea", "coffee", "rocket")
    store = RedisStore(redis_server.REDIS_URL, namespace)
    try:
        with service_factory(**shared) as a, service_factory(**shared) as b:
            wait_filled(a)
            wait_filled(b)
            positions = []
            for n, name in enumerate(names):  # alternate writers
                writer = a if n % 2 == 0 else b
                r = writer.post(f"/items/{name}/images", files=files(*photo_views[name][:3]))
                assert r.status_code == 201, r.text
                positions.append(r.headers["x-retrieval-position"])
            # A re-sent file with a new one, a deleted image, a deleted item.
            r = b.post("/items/astronaut/images", files=files(*photo_views["astronaut"][2:4]))
            assert r.json()["created"] == [False, True]
            first_cat = a.get("/items/chelsea").json()["image_ids"][0]
            assert a.delete(f"/items/chelsea/images/{first_cat}").status_code == 204
            gone = b.delete("/items/coffee")
            assert gone.status_code == 204
            last = gone.headers["x-retrieval-position"]
            for view_of in ("astronaut", "chelsea", "rocket", "camera"):
                view = photo_views[view_of][5]
                on_a, on_b = answers(a, view, after=last), answers(b, view, after=last)
                assert {h["item_id"] for h in on_a} == {"astronaut", "chelsea", "rocket"}
                assert_same(on_b, on_a)
            counts = {h["item_id"]: h["image_count"] for h in answers(a, photo_views["rocket"][5])}
            assert counts == {"astronaut": 4, "chelsea": 2, "rocket": 3}
            for client in (a, b):
                assert_memory_is_the_store(retriever_of(client), store)
                info = client.get("/info").json()["image_embeddings"]
                assert (info["mode"], info["items"], info["images"]) == ("memory", 3, 9)
    finally:
        store.close()


def test_outgrowing_the_budget_switches_to_store_reads_with_the_same_answers(
    tiny_model_path: Path, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    embedder = OnnxEmbedder(tiny_model_path, allow_gpu=False)
    # Room for two items of three images (and their ids' strings, < 150 B), not a third.
    budget = ImageEmbeddings.estimate_bytes(embedder.embedding_dim, items=2, images=6) + 300

    def make(name: str, budget_bytes: int) -> Retriever:
        return Retriever(
            embedder=embedder,
            store=SqliteStore(tmp_path / f"{name}.sqlite3"),
            index=FlatCentroidIndex(embedder.embedding_dim),
            blobs=None,
            metrics=ServiceMetrics(),
            max_image_pixels=40_000_000,
            max_images_per_request=4,
            ranking=RankMode.TWO_STAGE,
            image_embeddings_budget_bytes=budget_bytes,
        )

    retriever = make("store", budget)
    # The same writes with no budget: held in memory throughout, the answers to match.
    reference = make("reference", DEFAULT_IMAGE_EMBEDDINGS_BUDGET_BYTES)
    try:
        for r in (retriever, reference):
            r.rebuild_index()
            assert r.evidence.wait_filled(timeout=30)
        names = ("astronaut", "chelsea", "coffee", "rocket")
        for name in names[:2]:
            for r in (retriever, reference):
                r.enroll(name, [Upload("v.jpg", v) for v in photo_views[name][:3]])
        assert retriever.evidence.mode == MEMORY
        assert_memory_is_the_store(retriever, retriever.store)
        for name in names[2:]:
            for r in (retriever, reference):
                r.enroll(name, [Upload("v.jpg", v) for v in photo_views[name][:3]])
        assert retriever.evidence.mode == STORE
        assert reference.evidence.mode == MEMORY
        assert retriever.info()["image_embeddings"]["bytes"] == 0
        for query in (photo_views["coffee"][5], photo_views["astronaut"][4]):
            got = retriever.search(query, 10)
            expected = reference.search(query, 10)
            assert len(got) == len(names)

            def key(r: Retriever, hits: list[Any]) -> list[tuple[Any, ...]]:
                # Image ids are drawn at random per store: the best image by its place.
                images = r.store.item_images([h.item_id for h in hits])
                places = [[i.image_id for i in images[h.item_id]] for h in hits]
                return [
                    (h.item_id, place.index(h.best_image_id), h.image_count, h.match)
                    for h, place in zip(hits, places, strict=True)
                ]

            assert key(retriever, got) == key(reference, expected)
            for g, e in zip(got, expected, strict=True):
                assert g.image_score == pytest.approx(e.image_score, abs=ATOL)
                assert g.centroid_score == pytest.approx(e.centroid_score, abs=ATOL)
                assert g.confidence == pytest.approx(e.confidence, abs=ATOL)
        # A restart over the budget does not fill: straight to store reads.
        retriever.rebuild_from_store()
        assert retriever.evidence.wait_filled(timeout=30)
        assert retriever.evidence.mode == STORE
    finally:
        retriever.close()
        reference.close()


def test_a_snapshot_load_refills_from_the_store_with_spreads_from_the_rows(
    tiny_model_path: Path, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    """A snapshot holds centroids, not spreads or images: after a load the rows are read from
    the store in the background (searches read the store meanwhile) and each spread is the
    mean cosine of the held float16 rows to the centroid, close to the sums' exact value."""
    embedder = OnnxEmbedder(tiny_model_path, allow_gpu=False)
    retriever = Retriever(
        embedder=embedder,
        store=SqliteStore(tmp_path / "store.sqlite3"),
        index=FlatCentroidIndex(embedder.embedding_dim),
        blobs=None,
        metrics=ServiceMetrics(),
        max_image_pixels=40_000_000,
        max_images_per_request=4,
        ranking=RankMode.TWO_STAGE,
    )
    try:
        retriever.rebuild_index()
        for name in ("astronaut", "chelsea", "coffee", "coins"):
            retriever.enroll(name, [Upload("v.jpg", v) for v in photo_views[name][:3]])
        retriever.enroll("rocket", [Upload("v.jpg", photo_views["rocket"][0])])
        query = photo_views["chelsea"][5]
        before = retriever.search(query, 10)
        # What IndexSnapshots.load does: every row, version and term set at once.
        index = retriever.index
        assert isinstance(index, FlatCentroidIndex)
        ((ids, rows, terms),) = list(index.iter_row_chunks(100))
        versions = np.array([retriever.applier.version_of(i) for i in ids], dtype=np.int64)
        retriever.applier.load(ids, versions, rows, terms)
        assert retriever.evidence.wait_filled(timeout=30)
        assert_memory_is_the_store(retriever, retriever.store)
        after = retriever.search(query, 10)
        assert [(h.item_id, h.best_image_id, h.image_count, h.match) for h in after] == [
            (h.item_id, h.best_image_id, h.image_count, h.match) for h in before
        ]
        for got, expected in zip(after, before, strict=True):
            assert got.image_score == pytest.approx(expected.image_score, abs=ATOL)
            # float16 rows: each cosine within ~1e-3, scaled by the item's 1 / (1 - mu).
            assert got.confidence == pytest.approx(expected.confidence, abs=0.02)
        # Each spread from the rows and the centroid, against the sums' exact one.
        for item_id in ids:
            (evidence,) = retriever.evidence.candidates([item_id])
            state = retriever.store.get_item_state(item_id)
            assert evidence is not None and state is not None
            exact = item_spread(state)
            assert exact is not None and evidence.spread is not None
            assert evidence.spread == pytest.approx(exact, abs=2e-3), item_id
            assert (exact < 0.999) == (state.count > 1)  # the check can tell them apart
    finally:
        retriever.close()


def test_the_reconciler_re_reads_images_a_failed_re_read_left_out(
    tiny_model_path: Path, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    embedder = OnnxEmbedder(tiny_model_path, allow_gpu=False)
    retriever = Retriever(
        embedder=embedder,
        store=SqliteStore(tmp_path / "store.sqlite3"),
        index=FlatCentroidIndex(embedder.embedding_dim),
        blobs=None,
        metrics=ServiceMetrics(),
        max_image_pixels=40_000_000,
        max_images_per_request=4,
    )
    try:
        retriever.rebuild_index()
        assert retriever.evidence.wait_filled(timeout=30)
        for name in ("astronaut", "chelsea"):
            retriever.enroll(name, [Upload("v.jpg", v) for v in photo_views[name][:3]])
        # What a re-read against an unreachable store leaves: the item's rows not held (its
        # searches read the store meanwhile) while the index is right.
        with retriever.item_locks.hold(["chelsea"]):
            retriever.evidence._stale.add("chelsea")
            retriever.evidence._images.remove_item("chelsea")
        assert retriever.evidence.held("chelsea") is None
        assert retriever.reconciler.reconcile_all() == 0  # the index needed nothing
        assert_memory_is_the_store(retriever, retriever.store)
    finally:
        retriever.close()
