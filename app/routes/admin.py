"""Maintenance over HTTP, behind the ``admin`` scope: compaction, an online backup, a sweep of
the quality gate over the whole gallery (``app/suspect_sweep.py``), and whether this replica's
index agrees with the store.

Both are the commands' work (``centroid-retrieval compact`` / ``backup``) on the running
service's own store and blob directory. They run in a thread of their own, not the request
pool's, so a long VACUUM does not take a worker thread from searches, and one maintenance lock
per service makes a second request answer 409 at once rather than queue behind the first (the
lock is this process's: it does not see a command run beside the service). There is no
restore route: a restore replaces the store under the running index, so it stays a command run
with the service stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.authorization import AdminScope
from app.background_share import BackgroundShare
from app.dependencies import RetrieverDep
from app.problem import problem_response
from app.retriever import Retriever
from app.routes.suspects import suspect_response
from app.schemas import AUTH_RESPONSES, Problem, SuspectImageResponse
from app.settings import Settings
from app.suspect_sweep import sweep_suspects
from store.blob_sweep import BLOB_SWEEP_GRACE_S, sweep_blobs
from store.store_backup import back_up

# One path component, not "." or "..", no separator: the backup lands directly under the root.
BACKUP_NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"
# Below this a blob written by an enrollment still in flight (its commit follows within the
# store's few-second timeouts) could be taken for an orphan.
MIN_GRACE_S = 60.0
# How many missing blobs an answer names; the manifest lists them all.
MAX_LISTED = 50
# The share of the cores a sweep of the quality gate takes from searches while it judges.
SWEEP_SHARE = 0.5
# How many flagged images a sweep's answer lists.
MAX_SUSPECTS_LISTED = 100

T = TypeVar("T")


class BlobSweepResult(BaseModel):
    orphans_removed: int
    thumbnails_removed: int = Field(0, description="Thumbnails of originals no image holds.")
    temporary_removed: int
    kept_recent: int = Field(description="Unreferenced files younger than the grace period.")
    held: bool = Field(description="A backup held deletions: nothing was removed.")
    files_before: int
    files_after: int
    dirs_before: int
    dirs_after: int


class CompactResponse(BaseModel):
    backend: str
    blobs: BlobSweepResult | None = Field(description="None: the service keeps no blobs.")
    store_bytes_before: int | None = Field(
        description="SQLite: the file and its WAL; Redis: the server's append-only file "
        "(None: it keeps none)."
    )
    store_bytes_after: int | None
    seconds: float


class BackupResponse(BaseModel):
    out: str = Field(description="The directory's name under the backup root.")
    backend: str
    created_at: str
    items: int
    images: int
    blobs_kept: bool
    referenced_hashes: int
    blobs_copied: int
    missing_blobs: int = Field(description="Referenced blobs already absent from the store.")
    missing_listed: list[str] = Field(description=f"The first {MAX_LISTED} of them.")
    thumbnails_copied: int = Field(0, description="Thumbnails made so far of those blobs.")
    deferred_deletes: int
    deferred_removed: int
    seconds: float


class SweptSuspect(SuspectImageResponse):
    item_id: str


class QuarantineSweepResponse(BaseModel):
    applied: bool = Field(description="False: a dry run, nothing written.")
    items: int = Field(description="Items judged (those with a counted image).")
    images: int = Field(description="Counted images judged.")
    flagged: int
    quarantined: int = Field(description="Held out of their items' sums by this sweep.")
    kept_last_counted: int = Field(
        description="Flagged, but the last counted image of its item: kept in."
    )
    gone: int = Field(description="Deleted before the sweep could change it.")
    unflagged_quarantined: int = Field(
        description="With `release`: quarantined images the gate does not flag now."
    )
    released: int = Field(description="Of those, counted again by this sweep.")
    suspects: list[SweptSuspect] = Field(
        description=f"The first {MAX_SUSPECTS_LISTED} flagged images, by item id."
    )
    seconds: float


def backup_root(settings: Settings) -> Path:
    return settings.backup_dir if settings.backup_dir is not None else settings.data_dir / "backups"


def admin_routes(problems: dict[int, str]) -> APIRouter:
    """A router under ``/admin`` for ``admin`` keys, documenting the auth answers and
    ``problems`` (status → when) as problem+json."""
    return APIRouter(
        prefix="/admin",
        tags=["maintenance"],
        dependencies=[AdminScope],
        responses={
            **AUTH_RESPONSES,
            **{
                status: {
                    "model": Problem,
                    "content": {"application/problem+json": {}},
                    "description": text,
                }
                for status, text in problems.items()
            },
        },
    )


def admin_router(settings: Settings) -> APIRouter:
    router = admin_routes(
        {
            409: "Another compaction, backup or suspect sweep is running (or the backup's "
            "directory already exists).",
            422: "Invalid parameter (a backup name that is not one path component).",
            503: "Not ready yet, or the store is unreachable.",
        }
    )
    # Per router, so per app: each service built in a process has its own.
    maintenance = threading.Lock()
    root = backup_root(settings)

    async def exclusively(work: Callable[[], T]) -> T:
        if not maintenance.acquire(blocking=False):
            raise _Busy
        try:
            # Its own limiter of one: never a token of the request pool. Not abandoned on
            # cancellation, so the lock is held until the work is really over.
            return await anyio.to_thread.run_sync(work, limiter=anyio.CapacityLimiter(1))
        finally:
            maintenance.release()

    @router.post(
        "/compact",
        response_model=CompactResponse,
        summary="Remove orphan blobs past the grace period, then compact the store",
        description=(
            "The work of `centroid-retrieval compact`: orphan blobs (no image references "
            "them) and temporary files older than `grace_s` are removed, then SQLite is "
            "vacuumed and its WAL truncated (writes wait meanwhile), or Redis rewrites its "
            "append-only file."
        ),
    )
    async def compact(
        retriever: RetrieverDep,
        grace_s: Annotated[
            float,
            Query(
                ge=MIN_GRACE_S,
                le=365 * 86400,
                description=f"Seconds an unreferenced blob must be old to go, >= {MIN_GRACE_S:g}.",
            ),
        ] = BLOB_SWEEP_GRACE_S,
    ) -> CompactResponse | JSONResponse:
        try:
            return await exclusively(lambda: _compact(retriever, settings, grace_s))
        except _Busy:
            return _busy()

    # `out` is a query parameter, not a JSON body: FastAPI reads a body parameter before the
    # key check runs, and a refused request's body must be left for the check to drain.
    @router.post(
        "/backup",
        response_model=BackupResponse,
        summary="Write an online, consistent backup under the backup root",
        description=(
            "The work of `centroid-retrieval backup`, into a new directory under the "
            "service's backup root (RETRIEVAL_BACKUP_DIR, default <data dir>/backups); the "
            "client names the directory, never a path. The service keeps serving and writing."
        ),
    )
    async def backup(
        retriever: RetrieverDep,
        out: Annotated[
            str | None,
            Query(
                pattern=BACKUP_NAME_PATTERN,
                description="Name of the new directory under the backup root: one path "
                "component, never a path. Default: backup-<UTC time>.",
            ),
        ] = None,
    ) -> BackupResponse | JSONResponse:
        name = out if out is not None else _default_name()
        target = root / name
        try:
            return await exclusively(lambda: _backup(retriever, root, target))
        except _Busy:
            return _busy()
        except _Exists:
            return problem_response(409, f"backup {name!r} already exists; choose a new name")

    @router.post(
        "/quarantine-suspects",
        response_model=QuarantineSweepResponse,
        summary="Judge every counted image against the gallery now; quarantine the flagged",
        description=(
            "The quality gate over the whole gallery at once (an enrollment is judged only "
            "against what was enrolled before it): every counted image against its item's "
            "centroid formed without it and this replica's index. A dry run unless "
            "`quarantine=true`, which holds the flagged images out of their items' centroids "
            "(an item's last counted image is kept in and counted apart); with `release=true` "
            "the quarantined images are judged too and those it no longer flags are counted "
            "again (an operator's quarantines as well as the gate's). One image by hand: "
            "`PATCH /items/{item_id}/images/{image_id}`. Paced to leave searches half the "
            "cores; 409 while a compaction or backup runs."
        ),
    )
    async def quarantine_suspects(
        retriever: RetrieverDep,
        quarantine: Annotated[
            bool, Query(description="Quarantine the flagged images (default: a dry run).")
        ] = False,
        release: Annotated[
            bool,
            Query(
                description="Judge the quarantined images too; with `quarantine=true`, count "
                "again those the gate no longer flags."
            ),
        ] = False,
    ) -> QuarantineSweepResponse | JSONResponse:
        try:
            return await exclusively(lambda: _sweep(retriever, quarantine, release))
        except _Busy:
            return _busy()

    @router.get(
        "/index-digest",
        response_model=IndexDigestResponse,
        summary="Does this replica's index agree with the store?",
        description=(
            "The items this replica's index holds and their versions, digested, beside the "
            "same of the store's items: equal digests mean the index reflects the store "
            "exactly (item ids and versions). Reads every item of the store."
        ),
    )
    async def index_digest(retriever: RetrieverDep) -> IndexDigestResponse:
        def digests() -> IndexDigestResponse:
            (index_items, index_digest), (store_items, store_digest) = retriever.version_digests()
            return IndexDigestResponse(
                index_items=index_items,
                index_digest=index_digest,
                store_items=store_items,
                store_digest=store_digest,
                agrees=index_digest == store_digest,
            )

        return await anyio.to_thread.run_sync(digests)

    return router


class IndexDigestResponse(BaseModel):
    index_items: int
    index_digest: str = Field(description="SHA-256 of the index's (item id, version) pairs.")
    store_items: int
    store_digest: str = Field(description="The same of the store's items.")
    agrees: bool


class _Busy(Exception):
    pass


class _Exists(Exception):
    pass


def _busy() -> JSONResponse:
    return problem_response(
        409, "a compaction, backup or suspect sweep is already running; retry when it ends"
    )


def _sweep(retriever: Retriever, quarantine: bool, release: bool) -> QuarantineSweepResponse:
    def hold_out(item_id: str, image_id: str) -> object:
        return retriever.set_image_quarantine(item_id, image_id, True)

    def count_again(item_id: str, image_id: str) -> object:
        return retriever.set_image_quarantine(item_id, image_id, False)

    report = sweep_suspects(
        retriever.store,
        retriever.suspects,
        quarantine=hold_out if quarantine else None,
        pause=BackgroundShare(retriever, SWEEP_SHARE).pace,
        release=count_again if quarantine and release else None,
        judge_quarantined=release,
    )
    listed = [
        SweptSuspect(item_id=item_id, **suspect_response(s).model_dump())
        for item_id, s in report.flagged[:MAX_SUSPECTS_LISTED]
    ]
    return QuarantineSweepResponse(
        applied=quarantine,
        items=report.items,
        images=report.images,
        flagged=len(report.flagged),
        quarantined=report.quarantined,
        kept_last_counted=report.kept_last_counted,
        gone=report.gone,
        unflagged_quarantined=len(report.unflagged_quarantined),
        released=report.released,
        suspects=listed,
        seconds=report.seconds,
    )


def _default_name() -> str:
    return "backup-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _compact(retriever: Retriever, settings: Settings, grace_s: float) -> CompactResponse:
    start = time.perf_counter()
    store, blobs = retriever.store, retriever.blobs
    sweep = None
    if blobs is not None:
        files, dirs = blobs.count(), blobs.count_dirs()
        report = sweep_blobs(blobs, retriever.hash_references(), grace_s=grace_s)
        sweep = BlobSweepResult(
            orphans_removed=report.orphans_removed,
            thumbnails_removed=report.thumbnails_removed,
            temporary_removed=report.temporary_removed,
            kept_recent=report.kept_recent,
            held=report.held,
            files_before=files,
            files_after=blobs.count(),
            dirs_before=dirs,
            dirs_after=blobs.count_dirs(),
        )
    before = store.disk_bytes()
    store.compact()
    return CompactResponse(
        backend=store.backend,
        blobs=sweep,
        store_bytes_before=before,
        store_bytes_after=store.disk_bytes(),
        seconds=round(time.perf_counter() - start, 3),
    )


def _backup(retriever: Retriever, root: Path, target: Path) -> BackupResponse:
    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    # The name is one component already; resolving also refuses a symlink placed in the root.
    if target.resolve().parent != root.resolve():
        raise _Exists
    try:
        target.mkdir()
    except FileExistsError:
        raise _Exists from None
    report = back_up(retriever.store, retriever.blobs, target)
    m = report.manifest
    return BackupResponse(
        out=target.name,
        backend=m.backend,
        created_at=m.created_at,
        items=m.items,
        images=m.images,
        blobs_kept=m.blobs_kept,
        referenced_hashes=m.referenced_hashes,
        blobs_copied=m.blobs_copied,
        missing_blobs=len(m.missing_blobs),
        missing_listed=m.missing_blobs[:MAX_LISTED],
        thumbnails_copied=m.thumbnails_copied,
        deferred_deletes=report.deferred_deletes,
        deferred_removed=report.deferred_removed,
        seconds=round(time.perf_counter() - start, 3),
    )
