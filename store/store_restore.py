"""Restore a backup (``store/store_backup.py``) into an empty store and blob backend, and
check that every content hash the restored store references has its blob.

Run it with the service stopped: the service rebuilds its index from the store at start-up,
so one running meanwhile would keep answering from the index of the store it had.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from store.backup_manifest import BLOBS_NAME, REDIS_NAME, SQLITE_NAME, BackupManifest
from store.blob_backend import BlobBackend
from store.directory_blob_store import DirectoryBlobStore
from store.errors import StoreError
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store
from store.thumbnail_blobs import NAMESPACE as THUMBNAILS
from store.thumbnail_blobs import thumbnail_blobs


class TargetNotEmptyError(StoreError):
    """The target store or blob directory holds data; restoring would replace it."""


@dataclass(frozen=True)
class RestoreReport:
    manifest: BackupManifest
    items: int
    images: int
    blobs_restored: int
    blobs_checked: bool  # False when the target keeps no blobs
    missing_blobs: list[str]  # referenced by the restored store, with no blob in the target
    corrupt_blobs: list[str]  # in the backup, but their bytes no longer hash to their name


def restore(
    backup_dir: Path, store: Store, blobs: BlobBackend | None, *, force: bool = False
) -> RestoreReport:
    backup_dir = Path(backup_dir)
    manifest = BackupManifest.read(backup_dir)
    if manifest.backend != store.backend:
        raise StoreError(
            f"{backup_dir} is a backup of a {manifest.backend} store; the configured store is "
            f"{store.backend} (set RETRIEVAL_REDIS_URL, or unset it, to match)"
        )
    if not force:
        _refuse_non_empty(store, blobs)
    if isinstance(store, SqliteStore):
        store.restore_from(backup_dir / SQLITE_NAME)
    elif isinstance(store, RedisStore):
        entries, expiries = _read_dump(backup_dir / REDIS_NAME)
        store.restore_namespace(manifest.namespace or "", entries, expiries)
    else:
        raise StoreError(f"no restore for a {store.backend} store")
    restored = 0
    corrupt_blobs: list[str] = []
    if blobs is not None and (backup_dir / BLOBS_NAME).is_dir():
        source = DirectoryBlobStore(backup_dir / BLOBS_NAME)
        for content_hash in sorted(source.iter_hashes()):
            data = source.get(content_hash)
            if data is None:
                continue
            try:
                blobs.put(content_hash, data)
            except ValueError:
                corrupt_blobs.append(content_hash)
                continue
            restored += 1
        _restore_thumbnails(backup_dir, blobs)
    items, images = store.counts()
    missing = [] if blobs is None else missing_blobs(store, blobs)
    return RestoreReport(
        manifest, items, images, restored, blobs is not None, missing, corrupt_blobs
    )


def _restore_thumbnails(backup_dir: Path, blobs: BlobBackend) -> None:
    """Put back the thumbnails the backup holds (one not there is made again on request)."""
    source = DirectoryBlobStore(backup_dir / BLOBS_NAME).derived(THUMBNAILS)
    target = thumbnail_blobs(blobs)
    for key in sorted(source.iter_hashes()):
        data = source.get(key)
        if data is not None:
            target.put(key, data)


def missing_blobs(store: Store, blobs: BlobBackend) -> list[str]:
    """The content hashes the store references that have no blob, sorted."""
    referenced = {image.content_hash for image in store.iter_images()}
    return sorted(h for h in referenced if not _has_blob(blobs, h))


def _has_blob(blobs: BlobBackend, content_hash: str) -> bool:
    try:
        return blobs.exists(content_hash)
    except ValueError:
        return False


def _refuse_non_empty(store: Store, blobs: BlobBackend | None) -> None:
    items, images = store.counts()
    held = []
    if items or images or store.get_model_identity() is not None:
        held.append(f"the {store.backend} store ({items} items, {images} images)")
    if blobs is not None and next(blobs.iter_hashes(), None) is not None:
        held.append(blobs.describe())
    if held:
        raise TargetNotEmptyError(
            f"{' and '.join(held)} already hold data; restore into an empty one, or pass "
            "--force to replace it"
        )


def _read_dump(path: Path) -> tuple[list[tuple[str, bytes]], dict[str, int]]:
    """The dumped keys and payloads, and the expiry (Unix ms) of those that have one."""
    entries = []
    expiries: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                entries.append((str(record["key"]), base64.b64decode(record["dump"])))
                if "pexpireat" in record:
                    expiries[str(record["key"])] = int(record["pexpireat"])
    return entries, expiries
