"""The writes a store applies, as data: what a write plan asks each backend to do.

Each backend translates every kind into its own writes inside one transaction (SQL in SQLite,
queued commands in a Redis MULTI/EXEC) and matches on ``Mutation`` with ``assert_never``, so a
kind added here fails type checking in each backend until that backend applies it.

A plan lists them in an order both backends can apply as is: an item is created before its
images are put, and its totals and then its attributes are set after them; the change record
follows every other mutation of the item, and an idempotency record comes last.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from store.item_attributes import Attributes
from store.records import ItemState


@dataclass(frozen=True)
class CreateItem:
    """A new item with no image yet: count 0, zero ``(dim,)`` sums until ``SetItemTotals``, no
    attributes until ``SetAttributes``."""

    item_id: str
    dim: int


@dataclass(frozen=True)
class PutImage:
    """A new image of an existing item, appended to its enrollment order; one more reference
    to ``content_hash``."""

    item_id: str
    image_id: str
    content_hash: str  # sha256 hex of the original bytes; not yet held by this item
    embedding: npt.NDArray[np.float32]  # (D,) float32, checked (finite, the item's dim)
    quarantined: bool = False  # kept, but not in the item's sums (``SetItemTotals``)


@dataclass(frozen=True)
class SetItemTotals:
    """The item's image count and float64 sums after the write's other mutations."""

    item_id: str
    count: int  # >= 1; an item left with no image gets ``DeleteItem`` instead
    embedding_sum: npt.NDArray[np.float64]  # (D,) float64
    unit_sum: npt.NDArray[np.float64]  # (D,) float64 sum of the L2-normalised embeddings


@dataclass(frozen=True)
class SetAttributes:
    """The item's whole attributes object after the write's merge (replacing what it held)."""

    item_id: str
    attributes: Attributes  # a JSON object, checked and within the size limit


@dataclass(frozen=True)
class SetImageQuarantine:
    """Move a held image out of its item's sums (``quarantined``) or back in; the plan also
    sets the totals that follow from it."""

    item_id: str
    image_id: str
    quarantined: bool


@dataclass(frozen=True)
class RemoveImage:
    """One image out of its item; one reference fewer to ``content_hash``."""

    item_id: str
    image_id: str
    content_hash: str  # the image's own hash, so no backend has to look it up again


@dataclass(frozen=True)
class DeleteItem:
    """The item and every image it still holds; one reference fewer to each of their hashes."""

    item_id: str
    content_hashes: tuple[str, ...]  # one per image still held, in enrollment order; may be ()


@dataclass(frozen=True)
class ReleaseHash:
    """No image of any item holds ``content_hash`` any more, once this write's removals apply."""

    content_hash: str


@dataclass(frozen=True)
class RecordChange:
    """The item's state after this write, stamped with the write's version: kept with the item
    and, on a backend with replicas, appended to its change feed in the same transaction."""

    state: ItemState  # count 0 for an item this write deleted


@dataclass(frozen=True)
class StoredResponse:
    """An HTTP answer as first sent, byte for byte, so a replay is indistinguishable from it."""

    status: int
    body: bytes  # b"" for a 204
    media_type: str | None  # None when there is no body
    headers: tuple[tuple[str, str], ...] = ()  # beyond the content type


@dataclass(frozen=True)
class RecordResponse:
    """Keep a write's answer under its idempotency key until ``expires_at`` (replacing an
    expired record of that key); records expired at ``now`` may be dropped meanwhile."""

    key: str
    fingerprint: str
    response: StoredResponse
    expires_at: float  # Unix seconds
    now: float  # Unix seconds, when the write was planned


Mutation = (
    CreateItem
    | PutImage
    | SetItemTotals
    | SetAttributes
    | SetImageQuarantine
    | RemoveImage
    | DeleteItem
    | ReleaseHash
    | RecordChange
    | RecordResponse
)
