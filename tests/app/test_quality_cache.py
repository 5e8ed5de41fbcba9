"""``QualityCache`` on a real SQLite store, a real store lane and a flat index, with a hand-moved
clock: fresh answers are served as they are, a stale one is served while its successor is
computed in the background, a model change waits for its own; every store read runs on the
lane's threads; a store that fails surfaces in the waiting request and sets no gauge."""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from app.gallery_quality import QualityCache, QualityReport
from app.metrics import ServiceMetrics
from app.store_lane import StoreLane
from index.centroid_math import centroid_from_sum
from index.flat_centroid_index import FlatCentroidIndex
from store.errors import StoreUnavailableError
from store.item_attributes import AttributeFilter
from store.records import ImageRecord, ItemState, ItemSummary, ModelIdentity, NewImage
from store.sqlite_store import SqliteStore

DIM = 8
MODEL = ModelIdentity("gaussian", "1", DIM)


class WatchedStore:
    """A ``GalleryReader`` over a real store noting the thread of every call (and failing while
    ``down``)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.threads: list[str] = []
        self.down = False

    def _enter(self) -> None:
        self.threads.append(threading.current_thread().name)
        if self.down:
            raise StoreUnavailableError("store down (test)")

    def list_items(
        self, limit: int, cursor: str | None, where: AttributeFilter | None = None
    ) -> tuple[list[ItemSummary], str | None]:
        self._enter()
        return self.store.list_items(limit, cursor, where)

    def item_images(self, item_ids: Sequence[str]) -> dict[str, list[ImageRecord]]:
        self._enter()
        return self.store.item_images(item_ids)

    def get_item_state(self, item_id: str) -> ItemState | None:
        self._enter()
        return self.store.get_item_state(item_id)

    def iter_item_states(self) -> Iterator[ItemState]:
        self._enter()
        return self.store.iter_item_states()


def gauge(metrics: ServiceMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None
    return value


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def add_item(store: SqliteStore, index: FlatCentroidIndex, item_id: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(3, DIM)).astype(np.float32)
    state = store.enroll(
        item_id, [NewImage(hashlib.sha256(r.tobytes()).hexdigest(), r) for r in rows]
    ).item
    index.upsert(item_id, centroid_from_sum(state.embedding_sum))


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[WatchedStore, FlatCentroidIndex]]:
    store = SqliteStore(tmp_path / "store.sqlite3")
    store.claim_model_identity(MODEL)
    index = FlatCentroidIndex(DIM)
    for n in range(6):
        add_item(store, index, f"item-{n}", n)
    yield WatchedStore(store), index
    store.close()


async def until_replaced(
    old: QualityReport, ask: Callable[[], Awaitable[QualityReport]]
) -> QualityReport:
    for _ in range(500):
        report = await ask()
        if report is not old:
            return report
        await asyncio.sleep(0.01)
    raise AssertionError("the stale report was never replaced")


def test_fresh_stale_and_model_change(parts: tuple[WatchedStore, FlatCentroidIndex]) -> None:
    watched, index = parts
    metrics = ServiceMetrics()
    clock = Clock()
    cache = QualityCache(sample_images=100, ttl_s=10, metrics=metrics, clock=clock)

    async def scenario() -> None:
        lane = StoreLane(2, 4, 5.0, metrics)

        async def ask(model: ModelIdentity = MODEL) -> QualityReport:
            return await cache.report(watched, index, lane, model)

        try:
            first = await ask()
            assert first.quality.result.queried_images == 18
            calls = len(watched.threads)
            clock.now += 9
            assert await ask() is first  # fresh: no store call
            assert len(watched.threads) == calls
            add_item(watched.store, index, "item-new", 99)
            clock.now += 2
            assert await ask() is first  # stale, served at once; its successor started
            second = await until_replaced(first, ask)
            assert second.quality.result.queried_images == 21
            assert gauge(metrics, "retrieval_gallery_loo_sample_images") == 21
            other = ModelIdentity("other", "2", DIM)
            third = await ask(other)  # another model's answer is never served
            assert third.model == other
        finally:
            lane.close()

    asyncio.run(scenario())
    assert watched.threads and all(t.startswith("store-lane") for t in watched.threads)


def test_a_store_that_fails_reaches_the_waiting_request(
    parts: tuple[WatchedStore, FlatCentroidIndex],
) -> None:
    watched, index = parts
    metrics = ServiceMetrics()
    cache = QualityCache(sample_images=100, ttl_s=10, metrics=metrics)
    watched.down = True

    async def scenario() -> None:
        lane = StoreLane(2, 4, 5.0, metrics)
        try:
            with pytest.raises(StoreUnavailableError):
                await cache.report(watched, index, lane, MODEL)
            assert math.isnan(gauge(metrics, "retrieval_gallery_loo_recall_at_1"))
            watched.down = False  # the next request computes again
            report = await cache.report(watched, index, lane, MODEL)
            assert report.quality.result.queried_images == 18
        finally:
            lane.close()

    asyncio.run(scenario())
    assert not math.isnan(gauge(metrics, "retrieval_gallery_loo_recall_at_1"))
