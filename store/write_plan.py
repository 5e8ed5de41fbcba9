"""The enroll and delete rules, once for both backends: the state a write read in, a plan out.

A backend reads the item's state inside its write transaction, calls ``plan_enroll``,
``plan_patch_attributes``, ``plan_set_image_quarantine``, ``plan_delete_image`` or
``plan_delete_item``, applies the plan's
mutations in that same transaction and returns the plan's outcome. The planners do no I/O and
hold no state (new image ids come from ``new_id``), so the rules are tested without a store,
and a backend retrying its transaction (Redis, on a WATCH conflict) simply reads and plans
again.

**Quarantine.** An image may be held *out of its item's sums*: kept (its row, its embedding,
its blob), listed with the item, but not counted in ``count``, the embedding sum or the unit
sum, so it is out of the item's centroid, spread, evidence and every query. An enrollment's
``judge`` (the service's quality gate) can quarantine the images it flags; ``plan_set_image_
quarantine`` moves one out or back in. Two rules keep an item well formed: an item always has
at least one counted image (an enrollment whose every image of a new item would be
quarantined quarantines none, and quarantining an item's last counted image is refused with
``LastCountedImageError``), and deleting an item's last counted image while quarantined ones
remain brings those back into the sums (they are all the item has left).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from store.embedding_codec import check_embedding, sum_in_order, unit_sum_in_order, unit_vector
from store.errors import (
    AttributesTooLargeError,
    ImageNotFoundError,
    ItemNotFoundError,
    LastCountedImageError,
)
from store.item_attributes import (
    DEFAULT_MAX_ATTRIBUTES_BYTES,
    Attributes,
    attributes_size,
    merge_patch,
)
from store.mutations import (
    CreateItem,
    DeleteItem,
    Mutation,
    PutImage,
    ReleaseHash,
    RemoveImage,
    SetAttributes,
    SetImageQuarantine,
    SetItemTotals,
)
from store.records import (
    DeleteOutcome,
    EnrollOutcome,
    ItemState,
    NewImage,
    PatchOutcome,
    SuspectImage,
)

OutcomeT = TypeVar("OutcomeT", EnrollOutcome, DeleteOutcome, PatchOutcome)


@dataclass(frozen=True)
class WritePlan(Generic[OutcomeT]):
    outcome: OutcomeT  # what the store method returns once the mutations are applied
    mutations: tuple[Mutation, ...]  # in order, all in one transaction; () = write nothing


@dataclass(frozen=True)
class ItemTotals:
    """An existing item's stored count, sums and attributes, as the write transaction read
    them."""

    count: int  # >= 1
    embedding_sum: npt.NDArray[np.float64]  # (D,) float64
    unit_sum: npt.NDArray[np.float64]  # (D,) float64, see ``ItemState.unit_sum``
    version: int = 0  # see ``ItemState.version``
    attributes: Attributes = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.embedding_sum.shape[0])

    def state(self, item_id: str) -> ItemState:
        return ItemState(
            item_id,
            self.count,
            self.embedding_sum,
            self.version,
            attributes=self.attributes,
            unit_sum=self.unit_sum,
        )


@dataclass(frozen=True)
class HeldImage:
    """One image an item holds, as the write transaction read it."""

    image_id: str
    content_hash: str
    embedding: npt.NDArray[np.float32]  # (D,) float32
    quarantined: bool = False  # held out of the item's sums


@dataclass(frozen=True)
class EnrollVerdict:
    """A judge's answer on an enrollment's new images: the suspects to report, and which of
    them (positions in the request, as given to the judge) to keep out of the sums."""

    suspects: tuple[SuspectImage, ...] = ()
    quarantine: frozenset[int] = frozenset()


class EnrollJudge(Protocol):
    """Judges the images an enrollment adds, inside its write (so the verdict is a function of
    what the transaction read, and an idempotent replay answers it as first sent).

    ``state``: the item as it would be with every new image counted; ``positions``: the new
    images' positions in the request; ``image_ids``: their ids, in the same order. Pure (no
    I/O): a Redis write retried on a conflict asks again."""

    def __call__(
        self, state: ItemState, positions: Sequence[int], image_ids: Sequence[str]
    ) -> EnrollVerdict: ...


def new_image_id() -> str:
    return uuid.uuid4().hex


def hashes_to_look_up(images: Sequence[NewImage]) -> list[str]:
    """The distinct content hashes of ``images``, first-seen order: ``plan_enroll``'s ``known``
    needs the item's image id for each of these it holds (and may hold more)."""
    return list(dict.fromkeys(i.content_hash for i in images))


def plan_enroll(
    item_id: str,
    images: Sequence[NewImage],
    *,
    stored: ItemTotals | None,
    known: Mapping[str, str],
    claimed_dim: int | None,
    new_id: Callable[[], str] = new_image_id,
    attributes_patch: Attributes | None = None,
    max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES,
    image_ids: Sequence[str] | None = None,
    judge: EnrollJudge | None = None,
) -> WritePlan[EnrollOutcome]:
    """Add ``images`` to ``item_id`` and merge ``attributes_patch`` into its attributes; see
    ``Store.enroll`` for the rules.

    ``stored`` is None for an item that does not exist yet; ``known`` maps content hash → image
    id for the item's images (empty for a new item); ``claimed_dim`` is None while no model
    identity is claimed. The dim every embedding must have is the claimed one, else the item's,
    else the first image's. Raises ValueError, planning nothing, if ``images`` is empty or any
    embedding is not a finite ``(dim,)`` vector; ``AttributesInvalidError`` /
    ``AttributesTooLargeError`` if the patch is not an object or the merged attributes exceed
    ``max_attributes_bytes``. The sum adds the new float32 embeddings one by one, in input order,
    onto the stored float64 sum, as ``sum_in_order`` would; the unit sum their
    ``unit_vector``s onto the stored one. A call that adds no image and changes no attribute
    writes nothing.

    ``image_ids`` (one per image) names the images instead of ``new_id``: a model migration's
    shadow store (``app/model_migration.py``) keeps the ids the primary store gave them. An
    image the item holds already keeps its id whatever ``image_ids`` says.

    ``judge`` sees the new images (see ``EnrollJudge``); the positions its verdict quarantines
    are put held out of the sums, which then add only the other new images, still in input
    order (unless none of the item's images would be left counted: then none is held out).
    Its suspects are the outcome's, each marked with whether it was quarantined.
    """
    if not images:
        raise ValueError("enroll needs at least one image")
    if image_ids is not None and len(image_ids) != len(images):
        raise ValueError(f"{len(image_ids)} image ids for {len(images)} images")
    if stored is None and known:
        raise AssertionError(f"image ids {dict(known)} read for item {item_id!r}, which is absent")
    if claimed_dim is not None:
        dim = claimed_dim
    elif stored is not None:
        dim = stored.dim
    else:
        dim = int(np.asarray(images[0].embedding).reshape(-1).shape[0])
    # Every image is checked before any is planned: a bad last image must store nothing.
    vectors = [check_embedding(image.embedding, dim) for image in images]
    held_attributes = {} if stored is None else stored.attributes
    attributes = (
        held_attributes
        if attributes_patch is None
        else _merged(held_attributes, attributes_patch, max_attributes_bytes)
    )

    ids = dict(known)
    puts: list[PutImage] = []
    positions: list[int] = []
    given: list[str] = []
    created: list[bool] = []
    for n, (image, vec) in enumerate(zip(images, vectors, strict=True)):
        existing = ids.get(image.content_hash)
        if existing is not None:
            given.append(existing)
            created.append(False)
            continue
        image_id = new_id() if image_ids is None else image_ids[n]
        ids[image.content_hash] = image_id
        puts.append(PutImage(item_id, image_id, image.content_hash, vec))
        positions.append(n)
        given.append(image_id)
        created.append(True)
    if stored is None and not puts:
        raise AssertionError("unreachable: a new item's first image is always new")
    version = 0 if stored is None else stored.version
    total, unit_total = _add_in_order(stored, [p.embedding for p in puts])
    count = (0 if stored is None else stored.count) + len(puts)
    suspects: tuple[SuspectImage, ...] = ()
    if judge is not None and puts:
        with_all = ItemState(
            item_id, count, total, version, attributes=attributes, unit_sum=unit_total
        )
        verdict = judge(with_all, positions, [p.image_id for p in puts])
        held_out = {n for n, p in enumerate(positions) if p in verdict.quarantine}
        if len(held_out) >= count:
            held_out = set()  # the item keeps at least one counted image
        out_ids = {puts[n].image_id for n in held_out}
        suspects = tuple(replace(s, quarantined=s.image_id in out_ids) for s in verdict.suspects)
        if held_out:
            puts = [replace(p, quarantined=n in held_out) for n, p in enumerate(puts)]
            total, unit_total = _add_in_order(
                stored, [p.embedding for p in puts if not p.quarantined]
            )
            count -= len(held_out)

    mutations: list[Mutation] = []
    if stored is None:
        mutations.append(CreateItem(item_id, dim))
    mutations += puts
    if puts:
        mutations.append(SetItemTotals(item_id, count, total, unit_total))
    if attributes != held_attributes:
        mutations.append(SetAttributes(item_id, attributes))
    # A write gets its version from the backend (``store/item_versions.py``); a plan that
    # writes nothing answers with the state as stored, version included.
    state = ItemState(item_id, count, total, version, attributes=attributes, unit_sum=unit_total)
    return WritePlan(EnrollOutcome(state, given, created, suspects), tuple(mutations))


def _add_in_order(
    stored: ItemTotals | None, vectors: Sequence[npt.NDArray[np.float32]]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The stored sum and unit sum with ``vectors`` added one by one (``sum_in_order``'s
    order); a new item's start from its first vector."""
    total = None if stored is None else stored.embedding_sum
    unit_total = None if stored is None else stored.unit_sum
    for vec in vectors:
        total = vec.astype(np.float64) if total is None else total + vec
        unit = unit_vector(vec)
        unit_total = unit if unit_total is None else unit_total + unit
    if total is None or unit_total is None:
        raise AssertionError("unreachable: a new item counts at least one image")
    return total, unit_total


def plan_patch_attributes(
    item_id: str,
    patch: Attributes,
    *,
    stored: ItemTotals | None,
    max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES,
) -> WritePlan[PatchOutcome]:
    """Merge ``patch`` (RFC 7396) into the item's attributes; see ``Store.patch_attributes``.

    ``ItemNotFoundError`` for an absent item; ``AttributesInvalidError`` /
    ``AttributesTooLargeError`` as ``plan_enroll``. A patch that changes nothing writes nothing.
    """
    if stored is None:
        raise ItemNotFoundError(f"item {item_id!r} not found")
    attributes = _merged(stored.attributes, patch, max_attributes_bytes)
    state = stored.state(item_id)
    if attributes == stored.attributes:
        return WritePlan(PatchOutcome(state), ())
    return WritePlan(
        PatchOutcome(replace(state, attributes=attributes)),
        (SetAttributes(item_id, attributes),),
    )


def _merged(held: Attributes, patch: Attributes, limit: int) -> Attributes:
    """``held`` with ``patch`` merged in, refused if it would exceed ``limit`` bytes."""
    merged = merge_patch(held, patch)
    size = attributes_size(merged)
    if size > limit:
        raise AttributesTooLargeError(size, limit)
    return merged


def plan_delete_image(
    item_id: str,
    image_id: str,
    *,
    stored: ItemTotals | None,
    held: Sequence[HeldImage],
    refs: Mapping[str, int],
) -> WritePlan[DeleteOutcome]:
    """Remove one image; see ``Store.delete_image`` for the rules.

    ``stored`` is None for an absent item; ``held`` is every image of the item in enrollment
    order, quarantined ones included; ``refs`` maps at least the removed image's hash to how
    many images of any item hold it, this one included. The new sums are recomputed from the
    remaining counted embeddings in enrollment order, never subtracted (float64 subtraction
    would not undo the addition); the plan has them all anyway, as ``held``. Removing the last
    counted image brings the quarantined ones left back into the sums.
    """
    if stored is None:
        raise ItemNotFoundError(f"item {item_id!r} not found")
    target = next((i for i in held if i.image_id == image_id), None)
    if target is None:
        raise ImageNotFoundError(f"image {image_id!r} not found in item {item_id!r}")
    rest = [i for i in held if i.image_id != image_id]
    released = _released([target.content_hash], refs)
    removal = RemoveImage(item_id, image_id, target.content_hash)
    if not rest:
        return WritePlan(
            DeleteOutcome(_gone(item_id, stored.dim), released),
            (removal, DeleteItem(item_id, ()), *_releases(released)),
        )
    returning: list[Mutation] = []
    if all(i.quarantined for i in rest):
        returning = [SetImageQuarantine(item_id, i.image_id, False) for i in rest]
        rest = [replace(i, quarantined=False) for i in rest]
    state, totals = _counted_totals(item_id, stored, rest)
    return WritePlan(
        DeleteOutcome(state, released),
        (removal, *returning, totals, *_releases(released)),
    )


def plan_set_image_quarantine(
    item_id: str,
    image_id: str,
    quarantined: bool,
    *,
    stored: ItemTotals | None,
    held: Sequence[HeldImage],
) -> WritePlan[PatchOutcome]:
    """Hold one image out of its item's sums (``quarantined``) or bring it back; see
    ``Store.set_image_quarantine``.

    ``held`` as ``plan_delete_image``'s. ``ItemNotFoundError`` / ``ImageNotFoundError``;
    ``LastCountedImageError`` (nothing written) to quarantine the item's last counted image.
    An image already so writes nothing. The sums are recomputed from the counted images in
    enrollment order, as a delete's.
    """
    if stored is None:
        raise ItemNotFoundError(f"item {item_id!r} not found")
    target = next((i for i in held if i.image_id == image_id), None)
    if target is None:
        raise ImageNotFoundError(f"image {image_id!r} not found in item {item_id!r}")
    if target.quarantined == quarantined:
        return WritePlan(PatchOutcome(stored.state(item_id)), ())
    after = [replace(i, quarantined=quarantined) if i is target else i for i in held]
    if not any(not i.quarantined for i in after):
        raise LastCountedImageError(
            f"image {image_id!r} is the last image counted in item {item_id!r}: an item keeps "
            "at least one image in its centroid (delete the image, or the item, instead)"
        )
    state, totals = _counted_totals(item_id, stored, after)
    return WritePlan(
        PatchOutcome(state), (SetImageQuarantine(item_id, image_id, quarantined), totals)
    )


def _counted_totals(
    item_id: str, stored: ItemTotals, held: Sequence[HeldImage]
) -> tuple[ItemState, SetItemTotals]:
    """The item's state and totals from its counted ``held`` images (at least one), summed in
    enrollment order."""
    counted = [i.embedding for i in held if not i.quarantined]
    total = sum_in_order(counted, stored.dim)
    unit_total = unit_sum_in_order(counted, stored.dim)
    state = ItemState(
        item_id, len(counted), total, attributes=stored.attributes, unit_sum=unit_total
    )
    return state, SetItemTotals(item_id, len(counted), total, unit_total)


def plan_delete_item(
    item_id: str,
    *,
    stored: ItemTotals | None,
    held_hashes: Sequence[str],
    refs: Mapping[str, int],
) -> WritePlan[DeleteOutcome]:
    """Remove an item and its images; see ``Store.delete_item``.

    ``stored`` is None for an absent item; ``held_hashes`` has one content hash per image of the
    item, in enrollment order; ``refs`` maps each of them to how many images of any item hold
    it, this item's included.
    """
    if stored is None:
        raise ItemNotFoundError(f"item {item_id!r} not found")
    released = _released(held_hashes, refs)
    return WritePlan(
        DeleteOutcome(_gone(item_id, stored.dim), released),
        (DeleteItem(item_id, tuple(held_hashes)), *_releases(released)),
    )


def _released(dropped: Sequence[str], refs: Mapping[str, int]) -> list[str]:
    """The hashes in ``dropped`` (first-seen order) that no image holds once those are gone."""
    return [h for h, n in Counter(dropped).items() if refs[h] <= n]


def _releases(hashes: Sequence[str]) -> list[Mutation]:
    return [ReleaseHash(h) for h in hashes]


def _gone(item_id: str, dim: int) -> ItemState:
    """The state of a deleted item: count 0, ``(dim,)`` float64 zero sums, no attributes."""
    zero = np.zeros(dim, dtype=np.float64)
    return ItemState(item_id, 0, zero, unit_sum=zero.copy())
