"""Plain values passed between the durable store and its callers (no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from store.item_attributes import Attributes


@dataclass(frozen=True)
class ModelIdentity:
    """The model whose embeddings a store holds; a store serves exactly one."""

    name: str
    version: str
    dim: int

    def describe(self) -> str:
        return f"{self.name} v{self.version} (dim {self.dim})"


@dataclass(frozen=True)
class NewImage:
    """One image to enroll."""

    content_hash: str  # sha256 hex of the original bytes
    embedding: npt.NDArray[np.float32]  # (D,) float32 raw model output (not normalised)


@dataclass(frozen=True)
class ItemState:
    """What the centroid index needs of an item: ``centroid = normalize(embedding_sum)``.

    Its *spread* is the mean cosine of its images to its centroid,
    ``dot(unit_sum, normalize(embedding_sum)) / count`` (``store/item_spread.py``): 1 when all
    its images embed alike, lower the more they differ.
    """

    item_id: str
    # Images in the item's sums (its quarantined images are kept but not counted); 0 = the
    # item no longer exists.
    count: int
    embedding_sum: npt.NDArray[np.float64]  # (D,) float64 sum of its raw embeddings
    # The store's write counter when this state was committed: a later write to any item has
    # a larger one, so of two states of one item the larger version is the newer (a deleted
    # and re-created item included). 0: written before the store kept versions.
    version: int = 0
    attributes: Attributes = field(default_factory=dict)  # a JSON object; {} for a deleted item
    # (D,) float64 sum of its images' L2-normalised embeddings (``unit_vector``), kept like
    # ``embedding_sum``; a zero vector for a deleted item; None only where it was not computed
    # (a change record of a writer that predates it).
    unit_sum: npt.NDArray[np.float64] | None = None


@dataclass(frozen=True)
class SuspectImage:
    """An image that looks enrolled under the wrong item (``index/suspect_images.py``).

    ``reasons``: ``closer_to_other_item`` and/or ``outside_item_spread``; ``own_score``: its
    cosine to its item's centroid formed without it; ``spread_z``: how far that sits below
    what the item's spread predicts, in units of the item's width; the nearest other item and
    its cosine (None when the index holds no other item).
    """

    image_id: str
    reasons: tuple[str, ...]
    own_score: float
    spread_z: float
    nearest_other_item: str | None
    nearest_other_score: float | None
    # Kept but out of its item's sums, spread, evidence and queries (``RETRIEVAL_QUARANTINE_
    # SUSPECTS``, or ``PATCH /items/{item_id}/images/{image_id}``).
    quarantined: bool = False


@dataclass(frozen=True)
class EnrollOutcome:
    item: ItemState
    image_ids: list[str]  # one per input image, in input order; the existing id for a duplicate
    created: list[bool]  # True where a new image row was written
    # The added images the service's quality gate flags (``app/suspect_review.py``): judged
    # after the store planned the write, from its outcome; the store itself leaves it empty.
    suspects: tuple[SuspectImage, ...] = ()


@dataclass(frozen=True)
class DeleteOutcome:
    item: ItemState
    released_hashes: list[str]  # hashes no image of any item references any more


@dataclass(frozen=True)
class PatchOutcome:
    item: ItemState  # after the merge; the version is unchanged when the patch changed nothing


@dataclass(frozen=True)
class ItemRecord:
    item_id: str
    image_ids: list[str]  # in enrollment order, quarantined ones included
    attributes: Attributes = field(default_factory=dict)
    quarantined_image_ids: list[str] = field(default_factory=list)  # enrollment order


@dataclass(frozen=True)
class ItemSummary:
    item_id: str
    image_count: int
    attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True)
class ImageRecord:
    image_id: str
    item_id: str
    content_hash: str  # sha256 hex of the original bytes
    embedding: npt.NDArray[np.float32]  # (D,) float32 raw model output
    # Kept (its blob, its embedding) but not in its item's sums: not part of what the item's
    # centroid, spread, evidence or a query see (``store/write_plan.py``).
    quarantined: bool = False
