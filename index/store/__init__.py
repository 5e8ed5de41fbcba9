from index.store.errors import (
    ImageNotFoundError,
    ItemNotFoundError,
    ModelMismatchError,
    StoreError,
    StoreUnavailableError,
)
from index.store.records import (
    DeleteOutcome,
    EnrollOutcome,
    ImageRecord,
    ItemRecord,
    ItemState,
    ItemSummary,
    ModelIdentity,
    NewImage,
)
from index.store.redis_store import RedisStore
from index.store.sqlite_store import SqliteStore
from index.store.store import Store

__all__ = [
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
