"""The durable store: item and image records in SQLite or Redis, and the blob store."""

from store.blob_store import BlobStore
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
from store.sqlite_store import SqliteStore
from store.store import Store

__all__ = [
    "BlobStore",
    "DeleteOutcome",
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
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreUnavailableError",
]
