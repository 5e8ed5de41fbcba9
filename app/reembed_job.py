"""Re-embed every kept original with a new model into the migration's shadow store.

Item by item in id order: the item's images are read from the primary store (ids, content
hashes, enrollment order) and their originals from the blob backend, embedded with the new
model, and written to the shadow as one enrollment with the primary's image ids and attributes
(so the shadow's sums add the same images in the same order a fresh enrollment would). An item
whose shadow already holds the same image ids, quarantine flags and attributes is skipped: that
is what makes the job resumable after a crash (each item is one shadow transaction) and what a
catch-up pass before a switch costs on items that are in step (two reads).

Quarantined images (held out of their item's sums, ``store/write_plan.py``) are re-embedded and
kept like the others, and held out in the shadow too: the enrollment's judge is
:class:`~store.kept_quarantine.KeptQuarantine`, quarantining exactly the positions the primary
has quarantined (the decision is about the photo, so the new model's gate is not asked again).
So the shadow's sums, counts and evidence leave out the images the primary's do, and an item in
step holds the same quarantine flags (a flag changed on the primary is copied by the next
pass). The one exception follows the store's rule: were every image the shadow's item keeps
quarantined (its counted ones all left out, below), none is; that item is out of step anyway.

Nothing is locked against the service's writes, which go to both stores meanwhile (see
``app/migration_mirror.py``): the job reads the primary's item again after writing the shadow
and starts the item over if it changed in between. Images whose blob is missing (or no longer
decodes) are left out of the shadow's item and listed in the report, never dropped silently;
such an item stays out of step, so every later pass lists it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from artifact.image_decode import ImageDecodeError, ImageTooLargeError
from store.blob_backend import BlobBackend
from store.errors import ItemNotFoundError
from store.kept_quarantine import KeptQuarantine
from store.records import ImageRecord, ItemRecord, NewImage
from store.store import Store

# An item changed by a write this many times while the job copied it is given up for this pass
# (and reported): the next pass copies it.
MAX_ATTEMPTS = 5
# Items per page of the primary's item list.
PAGE_ITEMS = 500
# Attributes are copied whole; the service's own limit was checked when they were written.
UNLIMITED_ATTRIBUTES = 2**31

# bytes of each original (in enrollment order) → (N, D) float32 embeddings of the new model;
# raises ``UnreadableImagesError`` naming the ones that do not decode.
EmbedOriginals = Callable[[Sequence[bytes]], npt.NDArray[np.float32]]


class UnreadableImagesError(ValueError):
    """Some originals do not decode for the new model: their positions and reasons."""

    def __init__(self, failures: dict[int, str]) -> None:
        super().__init__(f"{len(failures)} originals do not decode")
        self.failures = failures


@dataclass(frozen=True)
class LeftOut:
    """An image the shadow's item lacks, and why."""

    item_id: str
    image_id: str
    content_hash: str
    reason: str  # "blob missing" or the decoder's message


@dataclass(frozen=True)
class Progress:
    items_done: int  # checked so far in this pass (copied or found in step)
    items_total: int  # items the primary held when the pass started
    images_done: int  # images embedded so far in this pass
    images_total: int  # images the primary held when the pass started
    elapsed_s: float

    @property
    def images_per_s(self) -> float:
        return self.images_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """From the items' pace: a catch-up pass embeds few images but checks every item."""
        if self.items_done <= 0 or self.elapsed_s <= 0:
            return None
        left = max(0, self.items_total - self.items_done)
        return left * self.elapsed_s / self.items_done

    def line(self) -> str:
        eta = "?" if self.eta_s is None else f"{self.eta_s:.0f} s"
        return (
            f"re-embedded {self.images_done}/{self.images_total} images, "
            f"{self.items_done}/{self.items_total} items checked, "
            f"{self.images_per_s:.1f} images/s, ETA {eta}"
        )


@dataclass
class ReembedReport:
    items_copied: int = 0  # written to the shadow in this pass
    items_in_step: int = 0  # skipped: the shadow held them already
    items_removed: int = 0  # in the shadow only (deleted from the primary): removed
    items_given_up: list[str] = field(default_factory=list)  # changed on every attempt
    images_embedded: int = 0
    left_out: list[LeftOut] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def in_step(self) -> bool:
        """The shadow held every item of the primary, whole, when each was checked."""
        return not self.left_out and not self.items_given_up

    def line(self) -> str:
        return (
            f"{self.items_copied} items re-embedded ({self.images_embedded} images), "
            f"{self.items_in_step} already in step, {self.items_removed} removed from the "
            f"shadow, {len(self.left_out)} images left out, in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class DryRunReport:
    items: int
    images: int
    missing: list[LeftOut]
    sample_images: int  # embedded to time the model
    seconds_per_image: float | None  # None: no image could be sampled

    @property
    def estimated_s(self) -> float | None:
        if self.seconds_per_image is None:
            return None
        return self.images * self.seconds_per_image


class ReembedJob:
    def __init__(
        self,
        *,
        primary: Store,
        shadow: Store,
        blobs: BlobBackend,
        embed: EmbedOriginals,
        progress: Callable[[Progress], None] | None = None,
        progress_every_s: float = 1.0,
        on_written: Callable[[str], None] | None = None,
        pace: Callable[[], None] | None = None,
    ) -> None:
        """``on_written(item_id)``: after each write to the shadow's item (a running service
        brings its index of the shadow in step, so a switch needs no rebuild); ``pace()``:
        after each item, to give the cores back (a service's background share: the items in
        step cost two reads and no model call, which ``embed`` alone would not pace)."""
        self.primary = primary
        self.shadow = shadow
        self.blobs = blobs
        self.embed = embed
        self.progress = progress
        self.progress_every_s = progress_every_s
        self.on_written = on_written
        self.pace = pace

    def run(self) -> ReembedReport:
        """One pass over every item of both stores; see the module docstring."""
        start = time.perf_counter()
        report = ReembedReport()
        items_total, images_total = self.primary.counts()
        done_items = 0
        last_report = start
        for item_id in _all_item_ids(self.primary):
            self._sync(item_id, report)
            if self.pace is not None:
                self.pace()
            done_items += 1
            now = time.perf_counter()
            if self.progress is not None and now - last_report >= self.progress_every_s:
                last_report = now
                self.progress(
                    Progress(
                        done_items, items_total, report.images_embedded, images_total, now - start
                    )
                )
        for item_id in _all_item_ids(self.shadow):
            if self.primary.get_item(item_id) is None:
                self._remove_from_shadow(item_id)
                report.items_removed += 1
            if self.pace is not None:
                self.pace()
        report.seconds = time.perf_counter() - start
        if self.progress is not None:
            self.progress(
                Progress(
                    done_items, items_total, report.images_embedded, images_total, report.seconds
                )
            )
        return report

    def sync_item(self, item_id: str) -> ReembedReport:
        """Bring one item's shadow in step (what ``run`` does per item)."""
        report = ReembedReport()
        self._sync(item_id, report)
        return report

    def _sync(self, item_id: str, report: ReembedReport) -> None:
        for _ in range(MAX_ATTEMPTS):
            record = self.primary.get_item(item_id)
            if record is None:
                self._remove_from_shadow(item_id)
                return
            if _same(self.shadow.get_item(item_id), record):
                report.items_in_step += 1
                return
            images = self.primary.item_images([item_id])[item_id]
            if [i.image_id for i in images] != record.image_ids or [
                i.image_id for i in images if i.quarantined
            ] != record.quarantined_image_ids:
                continue  # written (or a flag moved) between the two reads
            left_out = self._copy(record, images)
            # Done if no write reached the primary meanwhile, and none reached the shadow
            # between the copy's delete and its enrollment (a service's copy of a write to an
            # item being re-embedded lands in the shadow's item too, and could reorder it).
            gone = {i.image_id for i in left_out}
            kept = [i for i in images if i.image_id not in gone]
            wanted = (
                ItemRecord(
                    item_id,
                    [i.image_id for i in kept],
                    record.attributes,
                    _quarantined_in_shadow(kept),
                )
                if kept
                else None
            )
            if not _same(self.shadow.get_item(item_id), wanted):
                continue
            if _same(self.primary.get_item(item_id), record):
                report.items_copied += 1
                report.images_embedded += len(images) - len(left_out)
                report.left_out += left_out
                return
        report.items_given_up.append(item_id)

    def _copy(self, record: ItemRecord, images: list[ImageRecord]) -> list[LeftOut]:
        """Replace the shadow's item by ``images`` embedded anew; the images left out."""
        left_out: list[LeftOut] = []
        kept: list[ImageRecord] = []
        originals: list[bytes] = []
        for image in images:
            data = self.blobs.get(image.content_hash)
            if data is None:
                left_out.append(_left_out(image, "blob missing"))
            else:
                kept.append(image)
                originals.append(data)
        embeddings: npt.NDArray[np.float32] | None = None
        while kept and embeddings is None:
            try:
                embeddings = self.embed(originals)
            except UnreadableImagesError as exc:
                bad = set(exc.failures)
                left_out += [_left_out(kept[n], exc.failures[n]) for n in sorted(bad)]
                kept = [im for n, im in enumerate(kept) if n not in bad]
                originals = [d for n, d in enumerate(originals) if n not in bad]
        self._remove_from_shadow(record.item_id)
        if kept and embeddings is not None:
            self.shadow.enroll(
                record.item_id,
                [NewImage(im.content_hash, e) for im, e in zip(kept, embeddings, strict=True)],
                attributes_patch=record.attributes,
                max_attributes_bytes=UNLIMITED_ATTRIBUTES,
                image_ids=[im.image_id for im in kept],
                # The primary's flags, by position in this request (module docstring).
                judge=KeptQuarantine(frozenset(n for n, im in enumerate(kept) if im.quarantined)),
            )
            self._written(record.item_id)
        return left_out

    def _remove_from_shadow(self, item_id: str) -> None:
        with suppress(ItemNotFoundError):
            self.shadow.delete_item(item_id)
            self._written(item_id)

    def _written(self, item_id: str) -> None:
        if self.on_written is not None:
            self.on_written(item_id)


def dry_run(
    primary: Store, blobs: BlobBackend, embed: EmbedOriginals, sample: int = 16
) -> DryRunReport:
    """Counts, the images whose blob is missing, and the model's time per image on up to
    ``sample`` originals (embedded one call each, as the job embeds each item in one call)."""
    items, images = primary.counts()
    missing: list[LeftOut] = []
    timed: list[float] = []
    for image in primary.iter_images():
        data = blobs.get(image.content_hash)
        if data is None:
            missing.append(_left_out(image, "blob missing"))
            continue
        if len(timed) < sample:
            start = time.perf_counter()
            try:
                embed([data])
            except UnreadableImagesError:
                continue
            timed.append(time.perf_counter() - start)
    per_image = float(np.median(timed)) if timed else None
    return DryRunReport(items, images, missing, len(timed), per_image)


def decode_failures(
    originals: Sequence[bytes], decode: Callable[[bytes], npt.NDArray[np.uint8]]
) -> tuple[list[npt.NDArray[np.uint8]], dict[int, str]]:
    """Each original decoded, and the positions (with reasons) of those that do not."""
    arrays: list[npt.NDArray[np.uint8]] = []
    failures: dict[int, str] = {}
    for n, data in enumerate(originals):
        try:
            arrays.append(decode(data))
        except (ImageDecodeError, ImageTooLargeError) as exc:
            failures[n] = str(exc)
    return arrays, failures


def _same(shadow: ItemRecord | None, primary: ItemRecord | None) -> bool:
    if shadow is None or primary is None:
        return shadow is primary
    return (
        shadow.image_ids == primary.image_ids
        and shadow.attributes == primary.attributes
        and shadow.quarantined_image_ids == primary.quarantined_image_ids
    )


def _quarantined_in_shadow(kept: Sequence[ImageRecord]) -> list[str]:
    """The quarantined image ids a fresh shadow item of ``kept`` holds: the primary's flags,
    unless they would leave it no counted image (then none, the store's rule)."""
    held_out = [i.image_id for i in kept if i.quarantined]
    return [] if len(held_out) == len(kept) else held_out


def _left_out(image: ImageRecord, reason: str) -> LeftOut:
    return LeftOut(image.item_id, image.image_id, image.content_hash, reason)


def _all_item_ids(store: Store) -> Iterator[str]:
    cursor: str | None = None
    while True:
        page, cursor = store.list_items(PAGE_ITEMS, cursor)
        for summary in page:
            yield summary.item_id
        if cursor is None:
            return
