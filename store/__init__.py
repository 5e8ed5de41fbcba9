"""The durable store: item and image records in SQLite or Redis, and the blob backends."""

from store.blob_backend import BlobBackend, BlobMissingError, BlobUnavailableError
from store.directory_blob_store import DirectoryBlobStore
from store.errors import (
    ImageNotFoundError,
    ItemNotFoundError,
    ModelMismatchError,
    StoreError,
    StoreUnavailableError,
)
from store.records import (
    DeleteOutcome,
    EnrollOutcome,
    ImageRecord,
    ItemRecord,
    ItemState,
    ItemSummary,
    ModelIdentity,
    NewImage,
)
from store.redis_store import RedisStore
from store.s3_blob_store import S3BlobStore
from store.sqlite_store import SqliteStore
from store.store import Store

__all__ = [
    "BlobBackend",
    "BlobMissingError",
    "BlobUnavailableError",
    "DeleteOutcome",
    "DirectoryBlobStore",
    "EnrollOutcome",
    "ImageNotFoundError",
    "ImageRecord",
    "ItemNotFoundError",
    "ItemRecord",
    "ItemState",
    "ItemSummary",
    "ModelIdentity",
    "ModelMismatchError",
    "NewImage",
    "RedisStore",
    "S3BlobStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreUnavailableError",
]
