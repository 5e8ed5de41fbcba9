"""What the app holds between requests: settings, metrics and a retriever once it is ready.

Loading the model and rebuilding the index can take a while on a large store, so it runs in a
background thread started by the lifespan: ``/healthz`` answers at once, ``/readyz`` stays 503
(with the reason) until the retriever is ready, and forever if start-up failed for good (a bad
model file, or a store holding embeddings of another model). An unreachable store is not for
good: it is usually one that has not started yet, so the loader keeps retrying it with capped
exponential backoff, and ``/readyz`` says what it is waiting for. So is a Milvus index that does
not answer (``IndexUnavailableError`` while connecting, attaching to its collection or bringing
it in step with the store): the process keeps serving ``/healthz``, ``/readyz`` names Milvus,
and each attempt builds everything afresh (the store opened by a failed attempt is closed), so
the one that succeeds rebuilds the index from the store as any start does.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from app.admission_control import AdmissionControl
from app.blob_backend_choice import build_blob_backend
from app.change_follower import ChangeFollower
from app.circuit_breaker import CircuitBreaker
from app.error_redaction import Redactor
from app.index_choice import build_centroid_index, describe_index
from app.index_snapshots import IndexSnapshots, LoadedSnapshot, replay_change_log
from app.inference_executor import InferenceExecutor
from app.metrics import ServiceMetrics
from app.migration_follower import MigrationFollower
from app.model_migration import every_reference, migrate_command, read_record
from app.recall_sampler import recall_sampler_for
from app.request_pipeline import RequestPipeline
from app.retriever import Retriever
from app.retriever_errors import NotReadyError
from app.serving_session import load_embedder
from app.settings import Settings
from app.store_choice import open_store
from app.store_lane import StoreLane
from artifact.onnx_embedder import OnnxEmbedder
from index.flat_centroid_index import FlatCentroidIndex
from index.gpu_search_mirror import GpuSearchMirror, gpu_available
from index.index_errors import IndexUnavailableError
from index.suspect_images import SuspectRule
from index.two_stage_fusion import RankMode
from store.blob_sweep import log_sweep
from store.change_feed import FeedCursor, RedisChangeFeed
from store.change_log import ChangeLog, ChangeLogGapError
from store.errors import ModelMismatchError, StoreUnavailableError
from store.migration_record import MigrationRecord
from store.store import Store
from store.store_meta import MIGRATION_KEY

log = logging.getLogger(__name__)

# Waits between attempts to reach the store (or a Milvus index) at start-up: 0.5 s, doubling,
# at most 10 s.
STORE_RETRY_FIRST_S = 0.5
STORE_RETRY_MAX_S = 10.0


def open_change_feed(settings: Settings, dim: int) -> RedisChangeFeed | None:
    """The feed of other replicas' writes: Redis only (an SQLite store has one process)."""
    if not settings.redis_url:
        return None
    return RedisChangeFeed(settings.redis_url, settings.redis_namespace, dim)


def build_retriever(
    settings: Settings,
    metrics: ServiceMetrics,
    embedder: OnnxEmbedder | None = None,
    *,
    store: Store | None = None,
    locks_of: Retriever | None = None,
) -> Retriever:
    """The retriever of ``embedder`` on the configured store, or on ``store`` with the locks
    of ``locks_of`` (a model migration's second retriever: app/migration_follower.py)."""
    embedder = embedder if embedder is not None else load_embedder(settings)
    store = store if store is not None else open_store(settings)
    try:
        blobs = build_blob_backend(settings)
        index = build_centroid_index(settings, embedder.embedding_dim)
    except BaseException:
        # Milvus not answering yet is retried by the loader: each attempt opens the store
        # again, so this one's connections are closed rather than left behind.
        store.close()
        raise
    # faiss-gpu (requirements/serve-gpu.txt) on a GPU machine: the CPU index takes the writes,
    # a GPU copy kept in step serves searches. Never the case with faiss-cpu. The mirror copies
    # a FlatCentroidIndex only: ivf and milvus search on their own (CPU, Milvus).
    mirror = (
        GpuSearchMirror(index)
        if isinstance(index, FlatCentroidIndex) and settings.allow_gpu and gpu_available()
        else None
    )
    # Batching on: this thread is the model's only caller, so ORT's intra-op threads (all cores
    # unless inference_threads says otherwise) serve one batch at a time instead of
    # worker_threads concurrent calls contending for the cores.
    executor = (
        InferenceExecutor(
            embedder,
            max_batch=settings.inference_batch,
            max_delay_s=settings.batch_max_delay_us / 1e6,
            metrics=metrics,
            background_share=settings.reembed_share,
        )
        if settings.batching
        else None
    )
    retriever = Retriever(
        embedder=embedder,
        store=store,
        index=index,
        gpu_mirror=mirror,
        blobs=blobs,
        metrics=metrics,
        max_image_pixels=settings.max_image_pixels,
        max_images_per_request=settings.max_images_per_request,
        executor=executor,
        reconcile_interval_s=settings.reconcile_interval_s,
        recall_sampler=recall_sampler_for(
            index,
            metrics,
            rate=settings.recall_sample_rate,
            queue_size=settings.recall_sample_queue,
        ),
        index_info=describe_index(settings),
        ranking=RankMode(settings.ranking),
        rerank_candidates=settings.rerank_candidates,
        image_embeddings_budget_bytes=int(settings.image_embeddings_budget_mb * 2**20),
        locks_of=locks_of,
        suspect_rule=SuspectRule(margin=settings.suspect_margin, min_z=settings.suspect_min_z),
        quarantine_suspects=settings.quarantine_suspects,
        quarantine_min_images=settings.quarantine_min_images,
    )
    retriever.applier.configure_breaker(
        settings.milvus_breaker_failures, settings.milvus_breaker_cooldown_s
    )
    return retriever


@dataclass
class ServiceState:
    settings: Settings
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    retriever: Retriever | None = None
    follower: ChangeFollower | None = None  # with the Redis store
    snapshots: IndexSnapshots | None = None  # index snapshots on
    migration: MigrationFollower | None = None  # not with the Milvus index
    # The store holds another model's embeddings than the configured one's (start-up failed):
    # both identities and the command that migrates it, for /info.
    mismatch: dict[str, Any] | None = None
    failure: str | None = None
    phase: str = "starting"
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    admission: AdmissionControl = field(init=False)
    store_lane: StoreLane = field(init=False)
    pipeline: RequestPipeline = field(init=False)
    _redact: Redactor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._redact = Redactor(self.settings)
        # Independent of the model: the queue in front of whichever executor is loaded.
        self.admission = AdmissionControl(
            self.settings.admission_queue, self.settings.queue_timeout_ms / 1000, self.metrics
        )
        self.store_lane = StoreLane(
            self.settings.store_threads,
            self.settings.store_queue,
            self.settings.store_deadline_ms / 1000,
            self.metrics,
            write_deadline_s=self.settings.store_write_deadline_ms / 1000,
            breaker=(
                CircuitBreaker(
                    self.settings.store_breaker_failures, self.settings.store_breaker_cooldown_s
                )
                if self.settings.store_breaker_failures > 0
                else None
            ),
        )
        self.pipeline = RequestPipeline(self.admission, self.store_lane)

    def start_loading(self) -> None:
        self._thread = threading.Thread(target=self._load, name="retriever-loader", daemon=True)
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _load(self) -> None:
        start = time.perf_counter()
        try:
            self.phase = "loading model"
            embedder = load_embedder(self.settings)
        except Exception as exc:
            self._fail(exc)
            return
        delay = STORE_RETRY_FIRST_S
        attempt = 1
        self.phase = (
            "opening the store and Milvus"
            if self.settings.index == "milvus"
            else "opening the store"
        )
        while True:
            try:
                retriever, items = self._open_and_rebuild(embedder)
                break
            # The failures worth retrying: the store or the Milvus index did not answer (the
            # stores wrap their clients' connection errors in StoreUnavailableError, the Milvus
            # index its client's and gRPC's in IndexUnavailableError).
            except (StoreUnavailableError, IndexUnavailableError) as exc:
                what = "Milvus" if isinstance(exc, IndexUnavailableError) else "the store"
                reason = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "%s unreachable (attempt %d), next in %g s: %s", what, attempt, delay, reason
                )
                # Kept while the next attempt connects, so /readyz keeps saying why (without
                # the store's or Milvus's address, which the log line above has).
                self.phase = (
                    f"waiting for {what} (attempt {attempt}: {self._redact(reason)}; "
                    f"next attempt in {delay:g} s)"
                )
                if self._stop.wait(delay):
                    return
                delay = min(2 * delay, STORE_RETRY_MAX_S)
                attempt += 1
            except ModelMismatchError as exc:
                self._fail_mismatch(exc)
                return
            except Exception as exc:
                self._fail(exc)
                return
        if self._stop.is_set():  # closed meanwhile: nobody else would close this retriever
            retriever.close()
            return
        self.retriever = retriever
        if self.settings.index != "milvus":
            # A migration's shadow needs an index of its own; one Milvus collection cannot
            # hold both models' centroids.
            migration = MigrationFollower(
                settings=self.settings,
                metrics=self.metrics,
                original=retriever,
                serve=self._serve,
                build=self._build_for_migration,
            )
            self.migration = migration
            migration.start()
            if self.follower is not None:
                # A record another replica or the command changed: stepped on as it arrives.
                def on_meta(key: str) -> None:
                    if key == MIGRATION_KEY:
                        migration.poke()

                self.follower.on_meta = on_meta
        self.phase = "ready"
        log.info(
            "ready: model %s v%s on %s, %d items, in %.1f s",
            retriever.identity.name,
            retriever.identity.version,
            retriever.embedder.device,
            items,
            time.perf_counter() - start,
        )
        if retriever.blobs is not None:
            # After ready, in this thread: requests are served meanwhile, and the sweep's grace
            # period keeps the blobs of enrollments in flight.
            try:
                with every_reference(self.settings, retriever.store) as references:
                    log_sweep(retriever.blobs, references)
            except Exception as exc:  # start-up goes on, as log_sweep's own failures do
                log.warning("blob sweep failed: %s: %s", type(exc).__name__, exc)

    def _open_and_rebuild(self, embedder: OnnxEmbedder) -> tuple[Retriever, int]:
        retriever = build_retriever(self.settings, self.metrics, embedder)
        feed = None
        started = time.monotonic()
        try:
            retriever.store.ping()
            feed = open_change_feed(self.settings, embedder.embedding_dim)
            # Noted before the index reads the store: every write after it is in the feed.
            cursor = feed.cursor() if feed is not None else None
            snapshots = self._snapshots_for(retriever)
            restored: list[FeedCursor | None] = []

            def restore() -> bool:
                assert snapshots is not None
                resumed = self._restore(snapshots, retriever, feed)
                if resumed is not None:
                    restored.append(resumed.position.feed)
                return resumed is not None

            self.phase = "rebuilding index"
            items = retriever.rebuild_index(restore if snapshots is not None else None)
        except BaseException:
            if feed is not None:
                feed.close()
            retriever.close()
            raise
        how = "snapshot" if restored else "rebuild"
        self.metrics.index_startup_seconds.labels(how=how).set(time.monotonic() - started)
        if restored and restored[0] is not None:
            cursor = restored[0]  # the follower replays what came after the snapshot
        if feed is not None and cursor is not None:
            self.follower = ChangeFollower.of(retriever, feed, self.metrics)
            self.follower.start(cursor)
        if snapshots is not None:
            follower = self.follower
            if follower is not None:
                snapshots.feed_cursor = lambda: follower.cursor
            # A rebuild read every item: keep its work for the next start at once.
            snapshots.start(take_now=not restored)
            self.snapshots = snapshots
        return retriever, items

    def _snapshots_for(self, retriever: Retriever) -> IndexSnapshots | None:
        settings = self.settings
        if not settings.index_snapshot or settings.index == "milvus":
            return None  # Milvus keeps its own data
        return IndexSnapshots(
            path=settings.snapshot_path,
            store=retriever.store,
            applier=retriever.applier,
            item_locks=retriever.item_locks,
            identity=retriever.identity,
            metrics=self.metrics,
            interval_s=settings.index_snapshot_interval_s,
            min_changes=settings.index_snapshot_min_changes,
        )

    def _restore(
        self, snapshots: IndexSnapshots, retriever: Retriever, feed: RedisChangeFeed | None
    ) -> LoadedSnapshot | None:
        """Load the snapshot and replay the SQLite change log after it, or check the Redis feed
        still holds every record after it (the follower replays them); None: rebuild."""
        self.phase = "loading the index snapshot"
        loaded = snapshots.load()
        if loaded is None:
            return None
        position = loaded.position
        if feed is None:
            store = retriever.store
            if not isinstance(store, ChangeLog):
                return None
            self.phase = "replaying the writes after the index snapshot"
            try:
                replayed = replay_change_log(
                    store, retriever.applier, retriever.item_locks, position.version
                )
            except ChangeLogGapError as exc:
                log.info("index snapshot not used: %s", exc)
                return None
            log.info("replayed %d items changed after the index snapshot", replayed)
            return loaded
        if position.feed is None or feed.status().trimmed_past(position.feed):
            log.info("index snapshot not used: the change feed no longer holds what followed it")
            return None
        return loaded

    def redact(self, text: str) -> str:
        """``text`` without the server's paths and addresses (``app/error_redaction.py``)."""
        return self._redact(text)

    def _serve(self, retriever: Retriever) -> None:
        """From the next request on, ``retriever`` answers (a migration's switch)."""
        self.retriever = retriever

    def _build_for_migration(
        self, embedder: OnnxEmbedder, store: Store, original: Retriever
    ) -> Retriever:
        return build_retriever(
            self.settings, self.metrics, embedder, store=store, locks_of=original
        )

    def _recorded_migration(self) -> MigrationRecord | None:
        try:
            store = open_store(self.settings)
            try:
                return read_record(store)
            finally:
                store.close()
        except Exception:
            return None  # the plain advice then

    def _fail_mismatch(self, exc: ModelMismatchError) -> None:
        """Start-up refused: the store holds another model's embeddings. The error (and
        /info, which answers meanwhile) names the command that migrates the store."""
        command = migrate_command(self.settings.model_path)
        advice = (
            f"migrate it with `{command}` while the service serves {exc.stored.describe()}, "
            "then `centroid-retrieval migrate --switch`"
        )
        recorded = self._recorded_migration()
        if recorded is not None and recorded.target == exc.configured:
            # The new model is configured while its migration runs: the service must load the
            # old one's file; the record makes it serve the new one once switched.
            command = "centroid-retrieval migrate --switch"
            advice = (
                f"a migration to it is recorded ({recorded.state}): start the service with the "
                f"{exc.stored.describe()} file as RETRIEVAL_MODEL_PATH; it serves the new model "
                f"once `{command}` ran"
            )
        self.mismatch = {
            "stored_model": exc.stored.__dict__,
            "configured_model": exc.configured.__dict__,
            "migrate_command": self._redact(command),
        }
        log.error(
            "start-up failed: %s; %s (with this service's RETRIEVAL_* settings)",
            exc.stored_text,
            advice,
        )
        self.failure = self._redact(f"ModelMismatchError: {exc.stored_text}; {advice}")
        self.phase = "failed"

    def _fail(self, exc: Exception) -> None:
        log.error("start-up failed", exc_info=exc)
        # Shown by /readyz and the 503s: no model or store path (the log line has them).
        self.failure = self._redact(f"{type(exc).__name__}: {exc}")
        self.phase = "failed"

    def require_retriever(self) -> Retriever:
        if self.retriever is None:
            reason = self.failure or f"still {self.phase}"
            raise NotReadyError(f"service not ready: {reason}")
        return self.retriever

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # Wakes a loader waiting to retry the store at once; one mid-attempt takes at most
            # the store's connect timeout.
            self._thread.join(timeout=5)
        self.store_lane.close()
        if self.follower is not None:
            self.follower.close()
        if self.snapshots is not None:
            # After the follower stopped (its cursor final), before the store closes.
            self.snapshots.close(final=True)
        if self.migration is not None:
            # Closes the migration's second retriever, whichever of the two serves.
            self.migration.close()
            self.migration.original.close()
        elif self.retriever is not None:
            self.retriever.close()
