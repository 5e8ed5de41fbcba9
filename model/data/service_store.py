"""A running service's gallery → :class:`DatasetSplit`: its items are the classes, its kept
originals the images (retrieval protocol).

The service keeps every enrolled original as a content-addressed blob and knows which item
each belongs to: a labelled training set. This reads the item → image list from the service's
own store (the SQLite file, or a Redis URL and namespace) and reads each image, when a batch
asks for it, from the blob directory through the service's own blob backend
(:class:`~store.directory_blob_store.DirectoryBlobStore`); the samples carry blob references
(:class:`~model.data.blob_image.BlobImage`), never the images. Decoding is the service's
(``ImageDataset`` and the evaluation call ``artifact.image_decode``).

The split is :mod:`model.data.folder_items`'s, by hash, so it is the same on every run and
adding items never moves existing ones: an item is held out for evaluation when the SHA-1
fraction of its id is below ``holdout_fraction``; a held-out item's ``query_per_item`` images
of smallest content-hash SHA-1 are its queries, the rest its gallery (all gallery when it has
no more). Content hashes rather than image ids decide, so the same photos enrolled into another
store split the same way.

Quarantined images (``ImageRecord.quarantined``: held out of their item's sums by the service's
quality gate or an operator, ``store/write_plan.py``) are left out of every part: they are
suspected mislabels, and training on one would teach the model the label it is suspected not to
have (nor are they in the gallery the service searches). They are counted and logged at INFO.
Their items stay (an item always keeps a counted image).

The store is only read (``iter_images``, streamed). It is the store the service's settings
name (``<data_dir>/store.sqlite3``, or the Redis namespace): during or after a model
migration it still receives every write, so it lists every image whichever model serves.
Training while the service runs is safe; images enrolled after the listing are not seen, and
one deleted after it is read as a missing blob (skipped and counted, as an unreadable file is).
"""

from __future__ import annotations

import logging
from pathlib import Path

from model.data.blob_image import BlobImage
from model.data.dataset_split import DatasetError, DatasetSplit
from model.data.hash_fraction import hash_fraction
from model.data.sample import Sample
from store.blob_backend import BlobBackend
from store.directory_blob_store import DirectoryBlobStore
from store.errors import StoreError
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store

log = logging.getLogger(__name__)

# What makes ``data.store`` a Redis URL rather than a SQLite file (redis-py's schemes).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# The service's data directory layout (app/settings.py): <data_dir>/store.sqlite3 beside
# <data_dir>/blobs, so a SQLite store's blobs are found without being named.
DEFAULT_BLOB_DIR_NAME = "blobs"
DEFAULT_NAMESPACE = "cr"


def read_service_store(
    store: str,
    blobs: str = "",
    *,
    namespace: str = DEFAULT_NAMESPACE,
    holdout_fraction: float = 0.2,
    query_per_item: int = 1,
    name: str = "service_store",
) -> DatasetSplit:
    """Open the service's store and blob directory, list its gallery (see the module docstring).

    ``store``: the SQLite file (``data/store.sqlite3``) or a Redis URL (then ``namespace`` is
    the service's ``RETRIEVAL_REDIS_NAMESPACE``); ``blobs``: the blob directory, by default
    ``blobs/`` beside a SQLite file (the service's layout), required with Redis.
    """
    blob_dir = _blob_dir(store, blobs, name)
    opened = open_service_store(store, namespace=namespace, name=name)
    try:
        return split_gallery(
            opened,
            DirectoryBlobStore(blob_dir),
            holdout_fraction=holdout_fraction,
            query_per_item=query_per_item,
            name=name,
            where=store if not store.startswith(REDIS_SCHEMES) else f"{store} ({namespace})",
        )
    finally:
        opened.close()


def open_service_store(
    store: str, *, namespace: str = DEFAULT_NAMESPACE, name: str = "service_store"
) -> Store:
    """The service's store class for ``store`` (a Redis URL or a SQLite file that exists: an
    empty file is never created here)."""
    try:
        if store.startswith(REDIS_SCHEMES):
            redis_store = RedisStore(store, namespace=namespace)
            redis_store.ping()
            return redis_store
        path = Path(store)
        if not path.is_file():
            raise DatasetError(
                f"{name}: no store file {path} (the service's <data_dir>/store.sqlite3, or a "
                "redis:// URL)"
            )
        return SqliteStore(path)
    except StoreError as exc:
        raise DatasetError(f"{name}: cannot open the store {store}: {exc}") from exc


def split_gallery(
    store: Store,
    blobs: BlobBackend,
    *,
    holdout_fraction: float = 0.2,
    query_per_item: int = 1,
    name: str = "service_store",
    where: str = "the store",
) -> DatasetSplit:
    """The gallery of an open ``store`` whose originals are in ``blobs``: samples sorted by
    item id, an item's images in the store's order (enrollment order), its quarantined ones
    left out (module docstring)."""
    if not 0.0 <= holdout_fraction <= 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1], got {holdout_fraction}")
    if query_per_item < 1:
        raise ValueError(f"query_per_item must be >= 1, got {query_per_item}")
    hashes_of: dict[str, list[str]] = {}
    quarantined: dict[str, int] = {}  # item -> its images left out
    try:
        for image in store.iter_images():
            if image.quarantined:
                quarantined[image.item_id] = quarantined.get(image.item_id, 0) + 1
                continue
            hashes_of.setdefault(image.item_id, []).append(image.content_hash)
    except StoreError as exc:
        raise DatasetError(f"{name}: cannot read {where}: {exc}") from exc
    if quarantined:
        log.info(
            "%s: %d quarantined images of %d items left out of %s (suspected mislabels)",
            name,
            sum(quarantined.values()),
            len(quarantined),
            where,
        )
    if not hashes_of:
        raise DatasetError(f"{name}: {where} holds no images")
    train: list[Sample] = []
    query: list[Sample] = []
    gallery: list[Sample] = []
    for item in sorted(hashes_of):
        samples = [Sample.of_blob(BlobImage(blobs, h), item) for h in hashes_of[item]]
        if hash_fraction(item) >= holdout_fraction:
            train.extend(samples)
        elif len(samples) <= query_per_item:
            gallery.extend(samples)
        else:
            by_hash = sorted(samples, key=lambda s: hash_fraction(_hash_of(s)))
            query.extend(by_hash[:query_per_item])
            gallery.extend(by_hash[query_per_item:])
    return DatasetSplit(name=name, train=train, query=query, gallery=gallery, protocol="retrieval")


def _hash_of(sample: Sample) -> str:
    assert sample.blob is not None
    return sample.blob.content_hash


def _blob_dir(store: str, blobs: str, name: str) -> Path:
    if blobs:
        blob_dir = Path(blobs)
    elif store.startswith(REDIS_SCHEMES):
        raise DatasetError(
            f"{name}: a Redis store needs data.blobs, the service's blob directory "
            "(<RETRIEVAL_DATA_DIR>/blobs)"
        )
    else:
        blob_dir = Path(store).parent / DEFAULT_BLOB_DIR_NAME
    if not blob_dir.is_dir():
        # Not created: an empty directory here would only make every image a missing blob.
        raise DatasetError(
            f"{name}: no blob directory {blob_dir}: the service keeps originals there "
            "(RETRIEVAL_KEEP_BLOBS, blob backend `directory`); without them there is nothing "
            "to train on"
        )
    return blob_dir
