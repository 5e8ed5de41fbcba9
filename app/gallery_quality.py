"""How well the gallery finds itself: leave-one-image-out R@1 and MRR over a sample of the
stored embeddings (``index/leave_one_out.py``), and the service's cache of that figure.

``sample_gallery`` draws up to N images, uniformly and seeded, among the images of items that
hold two or more (a single-image item has no centroid without its image: counted, not
queried); the same store content gives the same sample. ``leave_one_out(reader, sample)`` reads
the sampled items' images and sums and ranks each sampled image; it needs only a
``GalleryReader`` (a ``Store`` is one), not the app, so a migration can call it on each model's
embeddings with one sample.

**Quarantined images are not in the gallery here.** An image held out of its item's sums
(``ImageRecord.quarantined``, ``store/write_plan.py``) is no query: "its item's centroid
without it" is ``normalize(sum - e)``, and a quarantined ``e`` is not in ``sum``, so that would
be a centroid that never held it minus it. Nor does it count towards its item's images: the
sample is drawn among counted images (an item's ``ItemSummary.image_count``, the items holding
two or more of them), ``gallery_images`` counts those, and an item with one counted image is a
single-image item whatever it keeps quarantined. So the figure is the one the searches see: a
quarantined image is in no centroid and no evidence either.

``QualityCache`` serves ``GET /quality``: an answer younger than the TTL is returned as is; an
older one is returned too (with its ``computed_at``) while a new one is computed in the
background; only the first request, or the first after a model change, waits. The computation
runs on a thread of its own (not a worker thread), its store reads in batches, each batch one
call on the store lane (deadlines, the breaker, the lane's bound on threads), the competing
centroids from the index when it can copy its rows out (flat) and else from the store's item
states.

Writes do not invalidate the cache: one write moves a sampled figure by about one query in the
sample, less than the sample's own noise, and recomputing on every write would make a busy
gallery recompute without end. A write shows within the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import islice
from typing import Any, Protocol, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import numpy as np

from app.metrics import ServiceMetrics
from app.store_lane import StoreLane
from index.centroid_index import CentroidIndex
from index.centroid_math import l2_normalize
from index.leave_one_out import BLOCK_ROWS, CentroidChunk, LeaveOneOutResult
from index.leave_one_out import leave_one_out as rank_left_out
from index.row_export import RowExport
from store.item_attributes import AttributeFilter
from store.records import ImageRecord, ItemState, ItemSummary, ModelIdentity

log = logging.getLogger(__name__)

T = TypeVar("T")

# The sample's seed: a fixed one, so the same gallery gives the same figure.
SAMPLE_SEED = 0
# Items per listing page, per images read, and item states per lane call.
LIST_PAGE = 1000
IMAGES_PER_READ = 256
STATES_PER_READ = 1024


class GalleryReader(Protocol):
    """What the evaluation reads of a store (``Store`` has these)."""

    def list_items(
        self, limit: int, cursor: str | None, where: AttributeFilter | None = None
    ) -> tuple[list[ItemSummary], str | None]: ...

    def item_images(self, item_ids: Sequence[str]) -> dict[str, list[ImageRecord]]: ...

    def get_item_state(self, item_id: str) -> ItemState | None: ...

    def iter_item_states(self) -> Iterator[ItemState]: ...


class StoreRunner(Protocol):
    """How a batch of store reads, ``reads()``, is run: here (``run_here``), or as one call on
    the service's store lane (``lane_runner``)."""

    def __call__(self, reads: Callable[[], T], /) -> T: ...


def run_here(reads: Callable[[], T]) -> T:
    return reads()


@dataclass(frozen=True)
class GallerySample:
    """Images to query, and the gallery they were drawn from."""

    images: tuple[tuple[str, str], ...]  # (item_id, image_id), by item id, enrollment order
    items: int  # items in the gallery
    gallery_images: int  # their counted images (quarantined ones are not in the gallery)
    single_image_items: int  # left out: no centroid without their one image
    eligible_images: int  # images of items with two or more: what was sampled from
    seed: int


@dataclass(frozen=True)
class GalleryQuality:
    """``result.ranks[n]`` is the rank of ``queried[n]``."""

    result: LeaveOneOutResult
    sample: GallerySample
    queried: tuple[tuple[str, str], ...]  # (item_id, image_id) queried, in ``ranks`` order
    # Sampled but not queried: deleted, or its item changed, between the reads.
    skipped_images: int


def sample_gallery(
    reader: GalleryReader,
    max_images: int,
    seed: int = SAMPLE_SEED,
    run: StoreRunner = run_here,
) -> GallerySample:
    """Up to ``max_images`` images drawn without replacement among the counted images of items
    counting two or more (all of them when there are fewer), by ``seed``; quarantined images
    are never drawn (module docstring). One pass over the item listing,
    then the drawn items' images (to name them); each page and each read is one ``run``."""
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    eligible: list[tuple[str, int]] = []
    items = images = singles = 0
    cursor: str | None = None
    while True:
        page, cursor = run(partial(reader.list_items, LIST_PAGE, cursor))
        for summary in page:
            items += 1
            images += summary.image_count
            if summary.image_count == 1:
                singles += 1
            elif summary.image_count > 1:
                eligible.append((summary.item_id, summary.image_count))
        if cursor is None:
            break
    counts = np.array([c for _, c in eligible], dtype=np.int64)
    total = int(counts.sum())
    rng = np.random.default_rng(seed)
    if total <= max_images:
        flat = np.arange(total, dtype=np.int64)
    else:
        flat = np.sort(rng.choice(total, size=max_images, replace=False))
    ends = np.cumsum(counts)  # (k,) one past each item's last flat position
    owner = np.searchsorted(ends, flat, side="right")  # (s,) index into eligible
    position = flat - (ends[owner] - counts[owner])  # (s,) within the item, enrollment order
    wanted: dict[str, list[int]] = {}
    for o, p in zip(owner.tolist(), position.tolist(), strict=True):
        wanted.setdefault(eligible[o][0], []).append(p)
    chosen: list[tuple[str, str]] = []
    ids = list(wanted)
    for start in range(0, len(ids), IMAGES_PER_READ):
        part = ids[start : start + IMAGES_PER_READ]
        read = run(partial(reader.item_images, part))
        for item_id in part:
            # The positions were drawn among the counted images (the listing's count).
            records = _counted(read.get(item_id, []))
            # An item that lost images since the listing: its later positions are gone.
            chosen.extend(
                (item_id, records[p].image_id) for p in wanted[item_id] if p < len(records)
            )
    return GallerySample(
        images=tuple(chosen),
        items=items,
        gallery_images=images,
        single_image_items=singles,
        eligible_images=total,
        seed=seed,
    )


def leave_one_out(
    reader: GalleryReader,
    sample: GallerySample,
    centroids: Iterable[CentroidChunk] | None = None,
    run: StoreRunner = run_here,
) -> GalleryQuality:
    """Each image of ``sample`` ranked against every item's centroid with its own item's
    formed without it (``index/leave_one_out.py``): its embedding from ``reader.item_images``,
    its item's running sum from ``reader.get_item_state``. A sampled image quarantined since
    the sample was drawn is skipped and counted (it is no longer in the sum to leave it out
    of). An image no longer there, or whose
    item's state and images disagree (written between the two reads, twice), is skipped and
    counted. ``centroids``: the gallery's centroids in chunks (an index's rows); None: every
    item state of ``reader``, ``normalize(sum)``. Reads are batched, each batch one ``run``:
    ``IMAGES_PER_READ`` sampled items' images and states, ``STATES_PER_READ`` item states."""
    by_item: dict[str, list[str]] = {}
    for item_id, image_id in sample.images:
        by_item.setdefault(item_id, []).append(image_id)
    item_ids: list[str] = []
    sums: list[np.ndarray[Any, np.dtype[np.float64]]] = []
    counts: list[int] = []
    rows: list[np.ndarray[Any, np.dtype[np.float32]]] = []
    owners: list[int] = []
    queried: list[tuple[str, str]] = []
    ids = list(by_item)
    for start in range(0, len(ids), IMAGES_PER_READ):
        part = ids[start : start + IMAGES_PER_READ]
        read, states = run(partial(_images_and_states, reader, part))
        for item_id in part:
            # Counted images only: the state's count and sum are theirs.
            records, state = _counted(read.get(item_id, [])), states[item_id]
            if state is None or state.count != len(records):
                # Written between the two reads: once more, both again.
                again, again_states = run(partial(_images_and_states, reader, [item_id]))
                records, state = _counted(again.get(item_id, [])), again_states[item_id]
            if state is None or state.count != len(records) or state.count < 2:
                continue
            embedding_of = {r.image_id: r.embedding for r in records}
            mine = [i for i in by_item[item_id] if i in embedding_of]
            if not mine:
                continue
            code = len(item_ids)
            item_ids.append(item_id)
            sums.append(state.embedding_sum)
            counts.append(state.count)
            for image_id in mine:
                rows.append(embedding_of[image_id])
                owners.append(code)
                queried.append((item_id, image_id))
    if centroids is None:
        centroids = centroid_chunks_from_states(_states_in_batches(reader, run))
    dim = rows[0].shape[0] if rows else 0
    result = rank_left_out(
        np.array(rows, dtype=np.float32).reshape(len(rows), dim),
        np.array(owners, dtype=np.int64),
        item_ids,
        np.array(sums, dtype=np.float64).reshape(len(sums), dim),
        np.array(counts, dtype=np.int64),
        centroids if rows else [],
        single_image_items=sample.single_image_items,
    )
    return GalleryQuality(
        result=result,
        sample=sample,
        queried=tuple(queried),
        skipped_images=len(sample.images) - len(queried),
    )


def centroid_chunks_from_states(
    states: Iterable[ItemState], rows_per_chunk: int = BLOCK_ROWS
) -> Iterator[CentroidChunk]:
    """Item states (streamed) → their centroids ``normalize(sum)`` as the index holds them,
    ``rows_per_chunk`` at a time; deleted items (count 0) are not competitors."""
    batch: list[ItemState] = []
    for state in states:
        if state.count > 0:
            batch.append(state)
        if len(batch) == rows_per_chunk:
            yield _centroids_of(batch)
            batch = []
    if batch:
        yield _centroids_of(batch)


def _centroids_of(states: Sequence[ItemState]) -> CentroidChunk:
    return [s.item_id for s in states], l2_normalize(np.array([s.embedding_sum for s in states]))


def _counted(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    """The images in their item's sums, in enrollment order (quarantined ones left out)."""
    return [r for r in records if not r.quarantined]


def _images_and_states(
    reader: GalleryReader, item_ids: Sequence[str]
) -> tuple[dict[str, list[ImageRecord]], dict[str, ItemState | None]]:
    return reader.item_images(item_ids), {i: reader.get_item_state(i) for i in item_ids}


def _states_in_batches(reader: GalleryReader, run: StoreRunner) -> Iterator[ItemState]:
    """``reader.iter_item_states()``, ``STATES_PER_READ`` at a time, each batch one ``run``
    (the store's generator reads a page at a time, on whichever thread resumes it)."""
    states = run(lambda: iter(reader.iter_item_states()))
    while batch := run(partial(_take, states, STATES_PER_READ)):
        yield from batch


def _take(it: Iterator[ItemState], n: int) -> list[ItemState]:
    return list(islice(it, n))


def lane_runner(lane: StoreLane) -> StoreRunner:
    """Runs each batch of reads as one call on ``lane`` (its deadline, breaker and threads),
    from a thread started by ``anyio.to_thread``: it hops to the event loop to enter the
    lane."""

    def run(reads: Callable[[], T]) -> T:
        return anyio.from_thread.run(lane.run, reads)

    return run


def index_centroids(index: CentroidIndex) -> Iterable[CentroidChunk] | None:
    """The index's own rows in chunks when it can copy them out (``RowExport``), else None."""
    if not isinstance(index, RowExport):
        return None
    return ((ids, rows) for ids, rows, _terms in index.iter_row_chunks(BLOCK_ROWS))


@dataclass(frozen=True)
class QualityReport:
    quality: GalleryQuality
    model: ModelIdentity
    computed_at: datetime  # UTC, when the computation finished
    seconds: float  # how long it took
    monotonic_at: float  # computed_at on the monotonic clock (its age)


class QualityCache:
    """One cached ``QualityReport`` per model, recomputed in the background past ``ttl_s``."""

    def __init__(
        self,
        *,
        sample_images: int,
        ttl_s: float,
        metrics: ServiceMetrics,
        seed: int = SAMPLE_SEED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sample_images = sample_images
        self.ttl_s = ttl_s
        self.seed = seed
        self._metrics = metrics
        self._clock = clock
        self._report: QualityReport | None = None
        self._task: asyncio.Future[QualityReport] | None = None
        # Its own thread, outside the worker threads' limiter: a long computation takes no
        # request's thread.
        self._limiter = anyio.CapacityLimiter(1)

    def age_of(self, report: QualityReport) -> float:
        """Seconds since ``report`` was computed."""
        return max(0.0, self._clock() - report.monotonic_at)

    async def report(
        self,
        store: GalleryReader,
        index: CentroidIndex,
        lane: StoreLane,
        model: ModelIdentity,
    ) -> QualityReport:
        """The cached report when fresh; a stale one of the same model while its successor is
        computed; else waits for the computation (its errors, e.g. the store unavailable,
        raised here)."""
        cached = self._report
        if cached is not None and cached.model == model:
            if self._clock() - cached.monotonic_at < self.ttl_s:
                return cached
            self._start(store, index, lane, model)
            return cached
        task = self._start(store, index, lane, model)
        report = await asyncio.shield(task)
        if report.model != model:  # a computation of the previous model was under way
            return await asyncio.shield(self._start(store, index, lane, model))
        return report

    def _start(
        self, store: GalleryReader, index: CentroidIndex, lane: StoreLane, model: ModelIdentity
    ) -> asyncio.Future[QualityReport]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._compute(store, index, lane, model))
            self._task.add_done_callback(self._finished)
        return self._task

    def _finished(self, task: asyncio.Future[QualityReport]) -> None:
        self._task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("gallery quality not computed: %s: %s", type(exc).__name__, exc)
            return
        report = task.result()
        self._report = report
        result = report.quality.result
        self._metrics.gallery_loo_recall_at_1.set(result.r_at_1)
        self._metrics.gallery_loo_mrr.set(result.mrr)
        self._metrics.gallery_loo_sample_images.set(result.queried_images)

    async def _compute(
        self, store: GalleryReader, index: CentroidIndex, lane: StoreLane, model: ModelIdentity
    ) -> QualityReport:
        started = self._clock()

        def work() -> GalleryQuality:
            run = lane_runner(lane)
            sample = sample_gallery(store, self.sample_images, self.seed, run)
            return leave_one_out(store, sample, index_centroids(index), run)

        quality = await anyio.to_thread.run_sync(
            work, limiter=self._limiter, abandon_on_cancel=True
        )
        done = self._clock()
        log.info(
            "gallery quality: R@1 %.4f, MRR %.4f over %d images in %.1f s",
            quality.result.r_at_1,
            quality.result.mrr,
            quality.result.queried_images,
            done - started,
        )
        return QualityReport(
            quality=quality,
            model=model,
            computed_at=datetime.now(UTC),
            seconds=done - started,
            monotonic_at=done,
        )


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a figure over no query is null."""
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class ModelComparison:
    """Two models' leave-one-out figures on one sample (the same images queried in both)."""

    current: GalleryQuality
    candidate: GalleryQuality

    @property
    def r_at_1_change(self) -> float:
        """candidate - current R@1 (NaN when either queried nothing)."""
        return self.candidate.result.r_at_1 - self.current.result.r_at_1

    @property
    def mrr_change(self) -> float:
        return self.candidate.result.mrr - self.current.result.mrr

    def worse_by_more_than(self, margin: float) -> bool:
        """True when the candidate's R@1 is below the current one's by more than ``margin``
        (a fraction: 0.01 is one point). A figure over no query is never worse."""
        change = self.r_at_1_change
        return not math.isnan(change) and change < -margin

    def lines(self, current_name: str, candidate_name: str) -> list[str]:
        """The two models' figures side by side, for a terminal."""
        a, b = self.current.result, self.candidate.result
        width = max(len(current_name), len(candidate_name), 9)
        return [
            f"leave-one-image-out on {a.queried_images} sampled images "
            f"({self.current.sample.single_image_items} single-image items left out)",
            f"{'':<6} {current_name:>{width}} {candidate_name:>{width}} {'change':>8}",
            f"{'R@1':<6} {a.r_at_1:>{width}.4f} {b.r_at_1:>{width}.4f} {self.r_at_1_change:>+8.4f}",
            f"{'MRR':<6} {a.mrr:>{width}.4f} {b.mrr:>{width}.4f} {self.mrr_change:>+8.4f}",
        ]


def compare_models(
    current: GalleryReader,
    candidate: GalleryReader,
    max_images: int,
    seed: int = SAMPLE_SEED,
    run: StoreRunner = run_here,
) -> ModelComparison:
    """One sample drawn from ``current`` (the serving model's store) ranked in both stores,
    which hold the same item and image ids (a migration's shadow holds the primary's); each
    store's own item states are its competitors. An image ``candidate`` lacks (not yet
    re-embedded) is skipped there and counted in its ``skipped_images``."""
    sample = sample_gallery(current, max_images, seed, run)
    return ModelComparison(
        current=leave_one_out(current, sample, run=run),
        candidate=leave_one_out(candidate, sample, run=run),
    )
