"""The durable store: item and image records in SQLite or Redis, and the blob backends."""

from store.blob_backend import BlobBackend, BlobMissingError, BlobUnavailableError
from store.directory_blob_store import DirectoryBlobStore
from store.errors import (
    AttributeFilterError,
    AttributesError,
    AttributesInvalidError,
    AttributesTooLargeError,
    ImageNotFoundError,
    ItemNotFoundError,
    ModelMismatchError,
    StoreError,
    StoreUnavailableError,
)
from store.item_attributes import AttributeFilter, Attributes
from store.item_spread import item_spread
from store.records import (
    DeleteOutcome,
    EnrollOutcome,
    ImageRecord,
    ItemRecord,
    ItemState,
    ItemSummary,
    ModelIdentity,
    NewImage,
    PatchOutcome,
)
from store.redis_store import RedisStore
from store.s3_blob_store import S3BlobStore
from store.sqlite_store import SqliteStore
from store.store import Store

__all__ = [
    "AttributeFilter",
    "AttributeFilterError",
    "Attributes",
    "AttributesError",
    "AttributesInvalidError",
    "AttributesTooLargeError",
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
    "PatchOutcome",
    "RedisStore",
    "S3BlobStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "item_spread",
]
