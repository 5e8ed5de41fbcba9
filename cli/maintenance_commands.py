"""``compact``, ``backup`` and ``restore``: give deleted data's space back, and copy the store.

They act on the store the ``RETRIEVAL_*`` settings name (``RETRIEVAL_DATA_DIR``,
``RETRIEVAL_REDIS_URL``, ``RETRIEVAL_REDIS_NAMESPACE``, ``RETRIEVAL_KEEP_BLOBS``), the same ones
the service reads, so run them with the service's environment (``docker compose exec api
centroid-retrieval backup --out /data/backups/today``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings
    from store.blob_backend import BlobBackend
    from store.store import Store

# Shown in --help; the same figure as store.blob_sweep.BLOB_SWEEP_GRACE_S (tested).
DEFAULT_GRACE_S = 3600.0
# How many missing blobs a restore names before it only counts the rest.
MAX_LISTED = 50

COMPACT_DESCRIPTION = """\
Give the space of deleted data back: remove orphan blobs (no image references them: a crash
between writing an enrollment's bytes and its store commit) and temporary files left by a
crash, both only once older than --grace, then compact the store (SQLite: VACUUM and a WAL
checkpoint, which holds the store's write lock while it runs; Redis: rewrite the server's
append-only file, when it keeps one). Safe while the service runs. Exit status 1 on error."""

BACKUP_DESCRIPTION = """\
Write an online, consistent backup into DIR (new or empty): a snapshot of the store (SQLite:
its online backup API; Redis: every key of the namespace dumped in one MULTI/EXEC) and a hard
link (a copy, across filesystems) of every blob it references. The service keeps serving and
writing meanwhile; blob deletions are deferred while the backup runs, then applied. Referenced
blobs already missing from the live directory are listed and make the exit status 1."""

RESTORE_DESCRIPTION = """\
Restore a backup written by `backup` into the configured store and blob directory, which must
be empty unless --force (then they are replaced). Stop the service first, and start it after:
it rebuilds its index from the store. Checks that every content hash the restored store
references has its blob, and lists any that don't (exit status 1)."""


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compact = subparsers.add_parser(
        "compact",
        help="remove orphan blobs and compact the store (give deleted data's space back)",
        description=COMPACT_DESCRIPTION,
    )
    _grace_option(compact)
    compact.set_defaults(run=run_compact)

    backup = subparsers.add_parser(
        "backup",
        help="write a consistent online backup of the store and its blobs",
        description=BACKUP_DESCRIPTION,
    )
    backup.add_argument("--out", type=Path, required=True, metavar="DIR", help="new or empty")
    _grace_option(backup)
    backup.set_defaults(run=run_backup)

    restore = subparsers.add_parser(
        "restore",
        help="restore a backup and check every referenced blob is there",
        description=RESTORE_DESCRIPTION,
    )
    restore.add_argument(
        "--from", dest="source", type=Path, required=True, metavar="DIR", help="a backup"
    )
    restore.add_argument(
        "--force", action="store_true", help="replace a target that already holds data"
    )
    restore.set_defaults(run=run_restore)


def _grace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_S,
        metavar="SECONDS",
        help="unreferenced blobs and temporary files younger than this are kept: they may "
        "belong to an enrollment in flight (default: %(default)g)",
    )


def run_compact(args: argparse.Namespace) -> int:
    def compact(settings: Settings, store: Store, blobs: BlobBackend | None) -> int:
        from app.model_migration import every_reference
        from store.blob_sweep import sweep_blobs

        if blobs is not None:
            before = (blobs.count(), blobs.count_dirs())
            # During a model migration, the shadow's images keep their blobs too.
            with every_reference(settings, store) as references:
                report = sweep_blobs(blobs, references, grace_s=args.grace)
            print(report.line())
            print(
                f"blobs: {before[0]} -> {blobs.count()} files, "
                f"{before[1]} -> {blobs.count_dirs()} directories"
            )
        disk_before = store.disk_bytes()
        store.compact()
        if disk_before is None:
            print(f"{store.backend}: nothing kept on disk to compact")
        else:
            print(f"{store.backend}: {disk_before} -> {store.disk_bytes()} B on disk")
        return 0

    return with_store(compact, must_exist=True)


def run_backup(args: argparse.Namespace) -> int:
    def backup(settings: Settings, store: Store, blobs: BlobBackend | None) -> int:
        from store.store_backup import back_up

        report = back_up(store, blobs, args.out, grace_s=args.grace)
        m = report.manifest
        print(
            f"backup of the {m.backend} store written to {args.out}: {m.items} items, "
            f"{m.images} images, {m.blobs_copied} of {m.referenced_hashes} referenced blobs"
            + ("" if m.blobs_kept else " (the store keeps no blobs)")
        )
        if report.deferred_deletes:
            print(
                f"{report.deferred_deletes} blob deletions deferred during the backup, "
                f"{report.deferred_removed} applied (the rest the next sweep removes)"
            )
        if m.missing_blobs:
            _list_missing("referenced blobs missing from the live directory", m.missing_blobs)
            return 1
        return 0

    return with_store(backup, must_exist=True)


def run_restore(args: argparse.Namespace) -> int:
    def restore_into(settings: Settings, store: Store, blobs: BlobBackend | None) -> int:
        from store.store_restore import restore

        report = restore(args.source, store, blobs, force=args.force)
        print(
            f"restored {args.source} into the {store.backend} store: {report.items} items, "
            f"{report.images} images, {report.blobs_restored} blobs"
        )
        if report.corrupt_blobs:
            _list_missing("blobs in the backup whose bytes do not match", report.corrupt_blobs)
        if not report.blobs_checked:
            print("blobs not checked: RETRIEVAL_KEEP_BLOBS is off")
            return 0
        if report.missing_blobs:
            _list_missing("referenced content hashes without a blob", report.missing_blobs)
            return 1
        print("every referenced content hash has its blob")
        return 0

    return with_store(restore_into, must_exist=False)


def with_store(
    action: Callable[[Settings, Store, BlobBackend | None], int], *, must_exist: bool
) -> int:
    from pydantic import ValidationError

    from app.blob_backend_choice import build_blob_backend
    from app.settings import Settings
    from app.store_choice import open_store
    from store.blob_backend import BlobUnavailableError
    from store.blob_deletion_hold import DeletionHeldError
    from store.errors import StoreError

    try:
        settings = Settings()
    except ValidationError as exc:
        return _error(f"invalid RETRIEVAL_* setting: {exc}")
    if must_exist and not settings.redis_url and not settings.sqlite_path.is_file():
        return _error(f"no store at {settings.sqlite_path} (RETRIEVAL_DATA_DIR)")
    try:
        store = open_store(settings)
        try:
            store.ping()
            return action(settings, store, build_blob_backend(settings))
        finally:
            store.close()
    except (StoreError, BlobUnavailableError, DeletionHeldError, OSError) as exc:
        return _error(str(exc))


def _list_missing(what: str, hashes: list[str]) -> None:
    print(f"{len(hashes)} {what}:", file=sys.stderr)
    for content_hash in hashes[:MAX_LISTED]:
        print(f"  {content_hash}", file=sys.stderr)
    if len(hashes) > MAX_LISTED:
        print(f"  ... and {len(hashes) - MAX_LISTED} more", file=sys.stderr)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1
