"""The durable store's interface: items, their images' embeddings, and the model identity.

Two implementations (``SqliteStore``, ``RedisStore``) pass the same congruence tests. The
store is the source of truth; the in-memory centroid index is rebuilt from ``iter_item_states``
at start-up and updated from the ``ItemState`` every write returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from store.idempotency import IdempotencyClaim, IdempotencyRecord
from store.item_attributes import DEFAULT_MAX_ATTRIBUTES_BYTES, AttributeFilter, Attributes
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

if TYPE_CHECKING:
    from store.write_plan import EnrollJudge


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

    def get_meta(self, key: str) -> str | None:
        """A service-level record kept in the store (``store/store_meta.py`` names the keys:
        the model migration's record), or None."""
        ...

    def set_meta(self, key: str, value: str | None) -> None:
        """Replace (None: remove) the record under ``key`` in one transaction."""
        ...

    def enroll(
        self,
        item_id: str,
        images: Sequence[NewImage],
        idempotency: IdempotencyClaim[EnrollOutcome] | None = None,
        attributes_patch: Attributes | None = None,
        max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES,
        image_ids: Sequence[str] | None = None,
        judge: EnrollJudge | None = None,
    ) -> EnrollOutcome:
        """Add ``images`` to ``item_id`` (created if new), atomically: all or nothing.

        ``attributes_patch`` is merged (RFC 7396, ``store/item_attributes.py``) into the item's
        attributes ({} for a new item) in the same transaction; ``AttributesInvalidError`` or
        ``AttributesTooLargeError`` (merged result over ``max_attributes_bytes``) store nothing.
        A call whose images the item holds already still writes (a new version) when the patch
        changes its attributes.

        With ``idempotency``, the answer is recorded in the same transaction; if the key holds
        a live record already, nothing is written and ``IdempotentReplay`` (same request) or
        ``IdempotencyKeyReusedError`` (another request) is raised. So do both deletes.

        An image whose content hash the item already holds, or that repeats an earlier image
        of the same call, is not added again; its existing image id is returned. New image ids
        are ``uuid4().hex`` unless ``image_ids`` (one per image) names them: a model
        migration's shadow store keeps the primary's ids. Raises ValueError (storing nothing)
        if an embedding is not ``(dim,)`` for the claimed identity's dim, or if ``images`` is
        empty.

        ``judge`` sees the images the call adds, in the transaction, and may hold some out of
        the item's sums (``store/write_plan.py``, "Quarantine"); its suspects are the outcome's.
        """
        ...

    def set_image_quarantine(
        self,
        item_id: str,
        image_id: str,
        quarantined: bool,
        idempotency: IdempotencyClaim[PatchOutcome] | None = None,
    ) -> ItemState:
        """Hold the image out of its item's sums (``quarantined``), or bring it back in; the
        sums are recomputed from the counted images, a new version and a change record are
        written. An image already so writes nothing. ``ItemNotFoundError``,
        ``ImageNotFoundError``, ``LastCountedImageError`` (quarantining the item's last counted
        image): nothing is written."""
        ...

    def patch_attributes(
        self,
        item_id: str,
        patch: Attributes,
        max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES,
        idempotency: IdempotencyClaim[PatchOutcome] | None = None,
    ) -> ItemState:
        """Merge ``patch`` into the item's attributes (RFC 7396: null deletes a key) and return
        its state after. A change is a write: a new version and a change record, like an
        enrollment; a patch that changes nothing writes nothing (the version stays).
        ``ItemNotFoundError``, ``AttributesInvalidError``, ``AttributesTooLargeError``: nothing
        is written."""
        ...

    def delete_image(
        self,
        item_id: str,
        image_id: str,
        idempotency: IdempotencyClaim[DeleteOutcome] | None = None,
    ) -> DeleteOutcome:
        """Remove one image; both sums are recomputed from the remaining embeddings.

        Deleting an item's last image deletes the item (``count == 0``). Raises
        ``ItemNotFoundError`` / ``ImageNotFoundError``.
        """
        ...

    def delete_item(
        self, item_id: str, idempotency: IdempotencyClaim[DeleteOutcome] | None = None
    ) -> DeleteOutcome:
        """Remove an item and its images; raises ``ItemNotFoundError``."""
        ...

    def schema_version(self) -> int:
        """The layout version recorded in the store (an older store is upgraded on open)."""
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

    def get_item(self, item_id: str) -> ItemRecord | None:
        """Its image ids and attributes, or None if absent."""
        ...

    def get_item_state(self, item_id: str) -> ItemState | None:
        """The item's count, sums, version and attributes as stored now, or None if absent (to
        bring an index in line after a write whose outcome is unknown)."""
        ...

    def image_content_hash(self, item_id: str, image_id: str) -> str:
        """The content hash of ``image_id`` of ``item_id`` (one indexed read);
        ``ItemNotFoundError`` / ``ImageNotFoundError`` when the store holds no such image."""
        ...

    def list_items(
        self, limit: int, cursor: str | None, where: AttributeFilter | None = None
    ) -> tuple[list[ItemSummary], str | None]:
        """Up to ``limit`` items by id ascending, after ``cursor``, with their attributes; and
        the next cursor or None.

        With ``where``, only items whose attributes match it. Those pages are found by scanning
        items in id order from the cursor and testing each: a page costs reading every item
        between its first and its last match, plus the items up to one more match (or the end,
        to know there is none), i.e. up to O(items) for a rare filter.
        The cursor is opaque to callers (it is the last item id of the page).
        """
        ...

    def iter_item_states(self) -> Iterator[ItemState]:
        """Every item's state (attributes and unit sum included), streamed in pages (never all
        in memory at once)."""
        ...

    def iter_images(self) -> Iterator[ImageRecord]:
        """Every image with its embedding, streamed (for re-embedding after a model change)."""
        ...

    def item_images(self, item_ids: Sequence[str]) -> dict[str, list[ImageRecord]]:
        """Each of ``item_ids``' images with its embedding, in enrollment order, in one round
        trip (SQLite: one query; Redis: one pipeline): what a search re-ranks its candidates
        with when the per-image embeddings are not in memory. An item the store does not hold
        maps to ``[]``."""
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
