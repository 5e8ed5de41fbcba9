"""The durable store's interface: items, their images' embeddings, and the model identity.

Two implementations (``SqliteStore``, ``RedisStore``) pass the same congruence tests. The
store is the source of truth; the in-memory centroid index is rebuilt from ``iter_item_states``
at start-up and updated from the ``ItemState`` every write returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from store.idempotency import IdempotencyClaim, IdempotencyRecord
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


class Store(Protocol):
    """Every method may raise ``StoreUnavailableError`` when the backend cannot be reached."""

    backend: str  # "sqlite" or "redis", for /info

    def ping(self) -> None:
        """Return if the backend answers; raise ``StoreUnavailableError`` otherwise."""
        ...

    def get_model_identity(self) -> ModelIdentity | None: ...

    def claim_model_identity(self, identity: ModelIdentity) -> None:
        """Record ``identity`` if none is; raise ``ModelMismatchError`` if another one is."""
        ...

    def reset_model_identity(self) -> None:
        """Forget the identity; raise ``StoreError`` unless the store holds no image."""
        ...

    def enroll(
        self,
        item_id: str,
        images: Sequence[NewImage],
        idempotency: IdempotencyClaim[EnrollOutcome] | None = None,
    ) -> EnrollOutcome:
        """Add ``images`` to ``item_id`` (created if new), atomically: all or nothing.

        With ``idempotency``, the answer is recorded in the same transaction; if the key holds
        a live record already, nothing is written and ``IdempotentReplay`` (same request) or
        ``IdempotencyKeyReusedError`` (another request) is raised. So do both deletes.

        An image whose content hash the item already holds, or that repeats an earlier image
        of the same call, is not added again; its existing image id is returned. New image ids
        are ``uuid4().hex``. Raises ValueError (storing nothing) if an embedding is not
        ``(dim,)`` for the claimed identity's dim, or if ``images`` is empty.
        """
        ...

    def delete_image(
        self,
        item_id: str,
        image_id: str,
        idempotency: IdempotencyClaim[DeleteOutcome] | None = None,
    ) -> DeleteOutcome:
        """Remove one image; the sum is recomputed from the remaining embeddings.

        Deleting an item's last image deletes the item (``count == 0``). Raises
        ``ItemNotFoundError`` / ``ImageNotFoundError``.
        """
        ...

    def delete_item(
        self, item_id: str, idempotency: IdempotencyClaim[DeleteOutcome] | None = None
    ) -> DeleteOutcome:
        """Remove an item and its images; raises ``ItemNotFoundError``."""
        ...

    def last_version(self) -> int:
        """The largest version handed out so far (``ItemState.version``); 0 if none."""
        ...

    def instance_id(self) -> str:
        """A random id this store got when created, and a new one when restored from a backup:
        a copy of its state (an index snapshot) is only ever replayed onto the store it was
        taken from. (A Redis namespace flushed by hand is a new store too.)"""
        ...

    def get_idempotency_record(self, key: str) -> IdempotencyRecord | None:
        """The live record under ``key`` (see ``IdempotencyClaim.key``), or None."""
        ...

    def get_item(self, item_id: str) -> ItemRecord | None: ...

    def get_item_state(self, item_id: str) -> ItemState | None:
        """The item's count and sum as stored now, or None if absent (to bring an index in line
        after a write whose outcome is unknown)."""
        ...

    def list_items(self, limit: int, cursor: str | None) -> tuple[list[ItemSummary], str | None]:
        """Up to ``limit`` items by id ascending, after ``cursor``; and the next cursor or None.

        The cursor is opaque to callers (it is the last item id of the page).
        """
        ...

    def iter_item_states(self) -> Iterator[ItemState]:
        """Every item's state, streamed in pages (never all in memory at once)."""
        ...

    def iter_images(self) -> Iterator[ImageRecord]:
        """Every image with its embedding, streamed (for re-embedding after a model change)."""
        ...

    def is_hash_referenced(self, content_hash: str) -> bool:
        """True if any image of any item has this content hash."""
        ...

    def counts(self) -> tuple[int, int]:
        """``(items, images)``."""
        ...

    def compact(self) -> None:
        """Give the space of deleted data back to the filesystem (maintenance, not a request
        path; may hold writes for a while): SQLite vacuums its file and truncates its WAL, Redis
        rewrites its append-only file when it keeps one. Stored data is unchanged."""
        ...

    def disk_bytes(self) -> int | None:
        """What the store takes on disk now, for compaction reports: SQLite its file and WAL,
        Redis the server's append-only file (every namespace's); None when it keeps none."""
        ...

    def close(self) -> None: ...
