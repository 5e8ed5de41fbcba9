"""An online backup: a consistent snapshot of the store plus every blob it references.

Order, which is what makes the pair consistent: the blob backend's deletion hold is taken
first (``store/blob_deletion_hold.py``; a bucket's is in ``store/s3_blob_store.py``), then the
store's snapshot, then the blobs that snapshot references are copied into the backup's
directory (hard-linked from a directory, downloaded from a bucket) with the thumbnails made of
them so far (``store/thumbnail_blobs.py``: keyed by the same hashes, under the same hold), then
the hold is released and the deletions it deferred are applied. The service keeps serving and
writing throughout; the backup is the store as of the snapshot's moment, and its blobs are
complete unless the live backend already lacked some (listed in the manifest).

Snapshots: SQLite through its online backup API (one read transaction); Redis by dumping the
namespace's keys in one MULTI/EXEC (``RedisStore.dump_namespace``, with its limits).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from store.backup_manifest import (
    BLOBS_NAME,
    REDIS_NAME,
    SQLITE_NAME,
    BackupManifest,
)
from store.blob_backend import SHA256_HEX, BlobBackend
from store.blob_sweep import BLOB_SWEEP_GRACE_S, remove_unreferenced
from store.directory_blob_store import DirectoryBlobStore
from store.errors import StoreError
from store.records import ModelIdentity
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store
from store.thumbnail_blobs import NAMESPACE as THUMBNAILS
from store.thumbnail_blobs import thumbnail_blobs, thumbnail_key


@dataclass(frozen=True)
class BackupReport:
    manifest: BackupManifest
    deferred_deletes: int  # blob deletions the hold deferred
    deferred_removed: int  # of those, applied once it was released


def back_up(
    store: Store,
    blobs: BlobBackend | None,
    out: Path,
    *,
    grace_s: float = BLOB_SWEEP_GRACE_S,
) -> BackupReport:
    """Write a backup of ``store`` and the blobs it references into ``out`` (new or empty)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise StoreError(f"{out} is not empty; back up into a new directory")
    out.mkdir(parents=True, exist_ok=True)
    if blobs is not None:
        blobs.deletion_hold.acquire()
    pending: list[str] = []
    try:
        items, images, model, namespace, referenced = _snapshot(store, out)
        copied, thumbnails = 0, 0
        missing: list[str] = []
        if blobs is not None:
            target = DirectoryBlobStore(out / BLOBS_NAME)
            copied, missing = _copy_blobs(blobs, referenced, target)
            # Only the thumbnails made so far, listed once (a bucket would otherwise answer a
            # GET per image for the many never requested); one not made is no loss.
            made = thumbnail_blobs(blobs)
            keys = {thumbnail_key(h) for h in referenced if SHA256_HEX.fullmatch(h)}
            wanted = sorted(set(made.iter_hashes()) & keys)
            thumbnails = _copy_blobs(made, wanted, target.derived(THUMBNAILS))[0]
    finally:
        if blobs is not None:
            pending = blobs.deletion_hold.release()
    removed = 0
    if blobs is not None:
        removed = remove_unreferenced(blobs, store, pending, grace_s=grace_s)
        remove_unreferenced(thumbnail_blobs(blobs), store, pending, grace_s=grace_s)
    manifest = BackupManifest(
        backend=store.backend,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        items=items,
        images=images,
        model=model,
        namespace=namespace,
        blobs_kept=blobs is not None,
        referenced_hashes=len(referenced),
        blobs_copied=copied,
        missing_blobs=missing,
        thumbnails_copied=thumbnails,
    )
    manifest.write(out)
    return BackupReport(manifest, len(pending), removed)


def _snapshot(
    store: Store, out: Path
) -> tuple[int, int, ModelIdentity | None, str | None, list[str]]:
    """Write the store's snapshot into ``out``: items, images, model, namespace, and the
    distinct content hashes it references (sorted)."""
    if isinstance(store, SqliteStore):
        target = out / SQLITE_NAME
        store.backup_to(target)
        # Read from the copy, not the live store: the copy is the moment the blobs must match.
        copy = SqliteStore(target)
        try:
            items, images = copy.counts()
            model = copy.get_model_identity()
        finally:
            copy.close()
        raw = sqlite3.connect(f"file:{target.resolve()}?mode=ro", uri=True)
        try:
            hashes = [str(r[0]) for r in raw.execute("SELECT DISTINCT content_hash FROM images")]
        finally:
            raw.close()
        return items, images, model, None, sorted(hashes)
    if isinstance(store, RedisStore):
        dump = store.dump_namespace()
        ref_prefix = f"{store.namespace}:ref:"
        path = out / REDIS_NAME
        with open(path, "w") as f:
            for key, payload in dump.entries:
                line: dict[str, object] = {"key": key, "dump": base64.b64encode(payload).decode()}
                if key in dump.expire_at_ms:
                    line["pexpireat"] = dump.expire_at_ms[key]
                f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
        hashes = [k.removeprefix(ref_prefix) for k, _ in dump.entries if k.startswith(ref_prefix)]
        return dump.items, dump.images, dump.model, store.namespace, sorted(hashes)
    raise StoreError(f"no backup for a {store.backend} store")


def _copy_blobs(
    blobs: BlobBackend, hashes: list[str], target: DirectoryBlobStore
) -> tuple[int, list[str]]:
    """Copy each blob into ``target`` (a directory's are hard-linked, a bucket's downloaded);
    (copied, missing)."""
    copied = 0
    missing: list[str] = []
    for content_hash in hashes:
        try:
            found = blobs.copy_into(content_hash, target)
        except ValueError:
            found = False  # not a sha256: no blob can exist for it
        if found:
            copied += 1
        else:
            missing.append(content_hash)
    target.fsync_dirs()
    return copied, missing
