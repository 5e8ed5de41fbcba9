"""The running service's side of a model migration: it follows the original store's record.

Every ``migration_poll_s`` (and at once on ``POST /admin/migration``, and with Redis at once
when the change feed says the record changed: ``poke``) the record is read from the store the
settings name (``store/migration_record.py``):

* a migration appears: the target model is loaded from its installed file and a second
  retriever built on the shadow store (its own executor and index, rebuilt from the shadow),
  sharing the first one's item locks; each is the other's ``mirror``, so from now on every
  write committed to either store is copied to the other with the same ids, and a blob is
  released only once neither references it. The re-embedding itself is the command's
  (``centroid-retrieval migrate``) or, on ``POST /admin/migration``, this process's at a
  share of the model's time;
* the record's active model changes (switched, rolled back): a catch-up pass re-embeds into the
  store about to serve whatever differs from the one serving (writes made before the mirror was
  attached, copies that failed), its index is rebuilt from its store, and requests go to it from
  the next one on. The old retriever keeps taking the copies of every write;
* the record disappears (abandoned): the copies stop and the target's retriever is closed.

A process started on a store whose record says ``switched`` serves the original (which has
every write) until the first poll, then switches the same way.

With Redis, the record is written in one transaction with a ``meta`` record on the change
feed, so every replica steps as soon as its follower reads it (within the feed's latency, the
poll only a fallback); each also tails the shadow namespace's change feed as well as the
original's, so its index of each store takes the other replicas' writes. A switch is still not
simultaneous across replicas: for the feed's latency plus each one's catch-up pass some answer
with the old model and some with the new. With SQLite (one process) the poll is what notices a
record the ``migrate`` command wrote.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from app.background_share import BackgroundShare
from app.change_follower import ChangeFollower
from app.metrics import ServiceMetrics
from app.model_migration import (
    load_target,
    open_shadow_store,
    read_record,
    shadow_namespace,
    write_record,
)
from app.reembed_job import (
    Progress,
    ReembedJob,
    ReembedReport,
)
from app.retriever import Retriever
from app.settings import Settings
from artifact.onnx_embedder import OnnxEmbedder
from store.change_feed import RedisChangeFeed
from store.migration_record import MigrationRecord
from store.store import Store

log = logging.getLogger(__name__)

# Builds a retriever for (model, store) sharing the locks of the given one.
BuildRetriever = Callable[[OnnxEmbedder, Store, Retriever], Retriever]


class MigrationStateError(Exception):
    """The migration cannot do what was asked in its present state (HTTP 409)."""


@dataclass(frozen=True)
class RunStatus:
    """The last re-embedding pass this process ran."""

    kind: str  # "catch-up before switch", ...
    progress: Progress | None
    report: ReembedReport | None
    running: bool


class MigrationFollower:
    def __init__(
        self,
        *,
        settings: Settings,
        metrics: ServiceMetrics,
        original: Retriever,
        serve: Callable[[Retriever], None],
        build: BuildRetriever,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.original = original  # built at start-up on the store the settings name
        self.active = original
        self.target: Retriever | None = None
        self.record: MigrationRecord | None = None
        self._serve = serve
        self._build = build
        self._lock = threading.Lock()  # one step at a time: the poll and the admin route
        self._stop = threading.Event()
        self._wake = threading.Event()  # poke(): step now
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.run: RunStatus | None = None
        self._feed_follower: ChangeFollower | None = None  # Redis: the shadow's feed

    # -- the poll -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="migration-follower", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Step now rather than at the next poll (the change feed says the record changed)."""
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.settings.migration_poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.step()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("migration: following the store's record failed", exc_info=exc)

    def step(self) -> None:
        with self._lock:
            self._follow(read_record(self.original.store))

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            self._detach()

    # -- the admin route ----------------------------------------------------------------------

    def reembed(self) -> ReembedReport:
        """Re-embed into the shadow now, in this process, at ``reembed_share`` of the target
        model's time; marks the record ready when the shadow holds every item."""
        with self._lock:
            record = self._current()
            target = self._attached(record)
            report = self._pass("re-embedding", self.original, target)
            if report.in_step and record.state == "re-embedding":
                write_record(self.original.store, record.with_state("ready"))
            self._follow(read_record(self.original.store))
            return report

    def change(self, action: Literal["switch", "rollback"]) -> MigrationRecord:
        """Switch to the target (after a catch-up pass that must leave nothing out) or roll
        back to the source; the record is rewritten in one transaction and this process serves
        the new active model when this returns."""
        with self._lock:
            record = self._current()
            target = self._attached(record)
            if action == "switch" and record.state != "switched":
                report = self._pass("catch-up before switch", self.original, target)
                if not report.in_step:
                    raise MigrationStateError(
                        f"not switched: {len(report.left_out)} images have no original to "
                        f"re-embed and {len(report.items_given_up)} items kept changing; "
                        "GET /admin/migration lists them"
                    )
                record = record.with_state("switched")
                write_record(self.original.store, record)
            elif action == "rollback" and record.state == "switched":
                record = record.with_state("ready")
                write_record(self.original.store, record)
            self._follow(record)
            return record

    def status(self) -> dict[str, Any]:
        record = self.record
        out: dict[str, Any] = {
            "state": None if record is None else record.state,
            "active": "source" if self.active is self.original else "target",
            "serving": _identity(self.active),
            "copy_failures": self.original.mirror_failures
            + (0 if self.target is None else self.target.mirror_failures),
            "last_error": self.last_error,
        }
        if record is not None:
            out["record"] = {
                "source": record.source.__dict__,
                "target": record.target.__dict__,
                "target_sha256": record.target_sha256,
                "shadow": record.shadow_tag,
                "writes": list(record.writes),
                "started_at": record.started_at,
            }
        run = self.run
        if run is not None:
            out["run"] = {
                "kind": run.kind,
                "running": run.running,
                "progress": None if run.progress is None else run.progress.line(),
                "report": None if run.report is None else _report(run.report),
            }
        return out

    # -- internals ----------------------------------------------------------------------------

    def _current(self) -> MigrationRecord:
        record = read_record(self.original.store)
        if record is None:
            raise MigrationStateError(
                "no migration is recorded: start one with `centroid-retrieval migrate --model "
                "NEW.onnx`"
            )
        return record

    def _attached(self, record: MigrationRecord) -> Retriever:
        self._follow(record)
        assert self.target is not None
        return self.target

    def _follow(self, record: MigrationRecord | None) -> None:
        if record is None:
            if self.active is not self.original:
                # Only a hand-edited store gets here (abandon refuses a switched migration).
                self._switch_to(self.original)
            self._detach()
            self.record = None
            return
        if self.record is not None and record.target_sha256 != self.record.target_sha256:
            self._detach()
        if self.target is None:
            self._attach(record)
        self.record = record
        assert self.target is not None
        want = self.target if record.active == "target" else self.original
        if want is not self.active:
            self._switch_to(want)

    def _attach(self, record: MigrationRecord) -> None:
        embedder = load_target(record, self.settings)
        store = open_shadow_store(self.settings, record)
        try:
            target = self._build(embedder, store, self.original)
        except BaseException:
            store.close()
            raise
        feed = None
        try:
            if self.settings.redis_url:
                # Other replicas' writes to the shadow (their copies, and once switched their
                # own) reach this replica's index of it through the shadow namespace's feed.
                feed = RedisChangeFeed(
                    self.settings.redis_url,
                    shadow_namespace(self.settings, record),
                    embedder.embedding_dim,
                )
                cursor = feed.cursor()  # before the index reads the store, as at start-up
            target.rebuild_index()  # claims the shadow for the target model, loads its items
            if feed is not None:
                self._feed_follower = ChangeFollower.of(target, feed, self.metrics)
                self._feed_follower.start(cursor)
        except BaseException:
            if feed is not None:
                feed.close()
            target.close()
            raise
        self.original.mirror, target.mirror = target, self.original
        _yield_to_each_other(self.original, target)
        self.target = target
        self.metrics.read_store_counts_from(self.active.store.counts)
        log.info("migration to %s attached: writes go to both stores", record.target.describe())

    def _detach(self) -> None:
        target = self.target
        if target is None:
            return
        self.original.mirror = None
        target.mirror = None
        _yield_to_each_other(self.original, None)
        self.target = None
        if self._feed_follower is not None:
            self._feed_follower.close()
            self._feed_follower = None
        target.close()
        log.info("migration detached: writes go to the original store only")

    def _switch_to(self, want: Retriever) -> None:
        current = self.active
        report = self._pass("catch-up before serving", current, want)
        if not report.in_step:
            log.warning(
                "migration: serving %s with items out of step: %s", _name(want), report.line()
            )
        # Its index followed every write to its store (the mirror's copies, the passes', the
        # feed's): checked, at the background share, rather than rebuilt flat out, which took
        # the cores from the searches for the rebuild's length (p99 near 1 s, 503s, before).
        share = BackgroundShare(want, self.settings.reembed_share)
        if not want.index_agrees_with_store(pause=share.pace):
            log.warning("migration: %s's index is not in step with its store: rebuilt", _name(want))
            want.rebuild_from_store()
        self.active = want
        self.metrics.read_store_counts_from(want.store.counts)
        self._serve(want)
        log.info("migration: now serving %s (%s)", _name(want), report.line())

    def _pass(self, kind: str, source: Retriever, into: Retriever) -> ReembedReport:
        """Bring ``into``'s store in step with ``source``'s, embedding with ``into``'s model."""
        if source.blobs is None:
            raise MigrationStateError("RETRIEVAL_KEEP_BLOBS is off: no originals to re-embed")
        self.run = RunStatus(kind, None, None, running=True)

        def progress(p: Progress) -> None:
            self.run = RunStatus(kind, p, None, running=True)

        share = BackgroundShare(into, self.settings.reembed_share)
        job = ReembedJob(
            primary=source.store,
            shadow=into.store,
            blobs=source.blobs,
            embed=share.embed,
            progress=progress,
            # The index of the store written follows the job, so a switch needs no rebuild.
            on_written=into.refresh_item,
            pace=share.pace,
        )
        try:
            report = job.run()
        except BaseException:
            self.run = RunStatus(kind, self.run.progress if self.run else None, None, False)
            raise
        self.run = RunStatus(kind, self.run.progress if self.run else None, report, False)
        return report


def _yield_to_each_other(one: Retriever, other: Retriever | None) -> None:
    """Each model's background work (the re-embedding into it, a catch-up pass) waits while
    the other model has searches or enrollments in hand: on shared cores they would otherwise
    run side by side. ``other`` None: no more."""
    if one.executor is None:
        return
    if other is None:
        one.executor.yield_to = None
        return
    if other.executor is not None:
        one.executor.yield_to, other.executor.yield_to = other.executor, one.executor


def _identity(retriever: Retriever) -> dict[str, Any]:
    return dict(retriever.identity.__dict__)


def _name(retriever: Retriever) -> str:
    return retriever.identity.describe()


def _report(report: ReembedReport) -> dict[str, Any]:
    return {
        "summary": report.line(),
        "in_step": report.in_step,
        "items_copied": report.items_copied,
        "items_in_step": report.items_in_step,
        "images_embedded": report.images_embedded,
        "left_out": [
            {
                "item_id": i.item_id,
                "image_id": i.image_id,
                "content_hash": i.content_hash,
                "reason": i.reason,
            }
            for i in report.left_out[:50]
        ],
        "items_given_up": report.items_given_up[:50],
    }
