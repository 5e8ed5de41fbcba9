"""The quality gate over the whole gallery at once, and quarantining what it flags.

At enrollment the gate judges an image against what is enrolled *then*: an item's first image
has nothing to be compared with, a mislabel whose true item arrives later has no rival yet,
and an item with two images has a noisy centroid without either. On a gallery enrolled one
image per request in a shuffled order that costs the gate half its recall on the shipped
photos (``python -m bench.quality_gate``, "served" rows). A sweep judges every counted image
against the gallery as it is now — every item's centroid formed without the image, the
nearest other centroid from the index — all against one reading of the gallery, and then
(``quarantine``) holds the flagged ones out of their items' sums, the bulk-enrollment
counterpart of ``RETRIEVAL_QUARANTINE_SUSPECTS``.

A flagged image that is its item's last counted one is kept in (``LastCountedImageError``):
reported, not quarantined. With ``release`` every item is judged as if all its images were
counted (its sums over every image it holds, each image against those without it) and the
quarantined ones the gate no longer flags are counted again: what enrollment-time quarantines
did is undone where the whole gallery says otherwise — an item whose first image was the
mislabel has its genuine views quarantined as they arrive (each one looked unlike the item so
far), and judged whole, the mislabel is the odd one out. It cannot tell the gate's quarantines
from an operator's, so it is a choice of the caller's.
The judging is paced (``pause`` after each chunk of items) so a sweep in a serving process gives
the cores back to searches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from app.suspect_review import SuspectReview
from store.embedding_codec import sum_in_order, unit_sum_in_order
from store.errors import ImageNotFoundError, ItemNotFoundError, LastCountedImageError
from store.records import ImageRecord, ItemState, SuspectImage
from store.store import Store

# Items whose images are read from the store per round trip.
ITEM_CHUNK = 256


@dataclass(frozen=True)
class JudgedChunk:
    """Up to ``ITEM_CHUNK`` items: their states, every stored image (quarantined ones too),
    the counted ones, and the suspects among the judged ones (items with none are absent)."""

    states: Sequence[ItemState]
    stored: dict[str, list[ImageRecord]]
    counted: dict[str, list[ImageRecord]]
    suspects: dict[str, tuple[SuspectImage, ...]]


def judged_chunks(
    store: Store,
    states: Sequence[ItemState],
    review: SuspectReview,
    pause: Callable[[], None] | None = None,
    quarantined_too: bool = False,
) -> Iterator[JudgedChunk]:
    """``states``' items judged chunk by chunk: each chunk's images read in one round trip,
    each item with at least two counted images judged by ``review.item`` against its state
    (its counted images, and with ``quarantined_too`` its quarantined ones as well)."""
    for start in range(0, len(states), ITEM_CHUNK):
        chunk = states[start : start + ITEM_CHUNK]
        stored = store.item_images([s.item_id for s in chunk])
        counted = {i: [r for r in records if not r.quarantined] for i, records in stored.items()}
        suspects = {}
        for state in chunk:
            if quarantined_too:
                records = stored.get(state.item_id, [])
                held = {r.image_id for r in records if r.quarantined}
                flagged = _judged_whole(review, state, records)
                flagged = tuple(replace(s, quarantined=s.image_id in held) for s in flagged)
            else:
                images = counted.get(state.item_id, [])
                flagged = review.item(state, images) if len(images) >= 2 else ()
            if flagged:
                suspects[state.item_id] = flagged
        yield JudgedChunk(chunk, stored, counted, suspects)
        if pause is not None:
            pause()


def _judged_whole(
    review: SuspectReview, state: ItemState, records: Sequence[ImageRecord]
) -> tuple[SuspectImage, ...]:
    """Every image of an item judged as if all its ``records`` were counted."""
    if len(records) < 2:
        return ()
    embeddings = [r.embedding for r in records]
    dim = int(state.embedding_sum.shape[0])
    whole = replace(
        state,
        count=len(records),
        embedding_sum=sum_in_order(embeddings, dim),
        unit_sum=unit_sum_in_order(embeddings, dim),
    )
    return review.item(whole, [replace(r, quarantined=False) for r in records])


@dataclass
class SweepReport:
    items: int = 0  # judged: items with at least one counted image
    images: int = 0  # counted images judged
    # (item id, verdict) of every flagged image (a quarantined one only if judged: release)
    flagged: list[tuple[str, SuspectImage]] = field(default_factory=list)
    # (item id, image id): quarantined, and not flagged now (judged only with release)
    unflagged_quarantined: list[tuple[str, str]] = field(default_factory=list)
    quarantined: int = 0
    released: int = 0
    kept_last_counted: int = 0  # flagged, but the last counted image of its item
    gone: int = 0  # flagged, but deleted (or its item) before it could be quarantined
    seconds: float = 0.0


SetQuarantine = Callable[[str, str], object]  # (item id, image id): hold it out; may raise


def sweep_suspects(
    store: Store,
    review: SuspectReview,
    quarantine: SetQuarantine | None = None,
    pause: Callable[[], None] | None = None,
    release: SetQuarantine | None = None,
    judge_quarantined: bool = False,
) -> SweepReport:
    """Judge the whole gallery (see the module docstring); with ``quarantine`` (a dry run
    without), hold every flagged counted image out of its item's sums through it — the service
    passes its retriever's write, so the index, the evidence and a migration's mirror follow.
    ``judge_quarantined`` judges the quarantined images too (``release`` requires it), and
    ``release`` counts again those the gate no longer flags."""
    if release is not None and not judge_quarantined:
        raise ValueError("release needs the quarantined images judged")
    start = time.perf_counter()
    report = SweepReport()
    states = [s for s in store.iter_item_states() if s.count > 0]
    for chunk in judged_chunks(store, states, review, pause, quarantined_too=judge_quarantined):
        report.items += len(chunk.states)
        report.images += sum(len(v) for v in chunk.counted.values())
        for state in chunk.states:
            flagged = chunk.suspects.get(state.item_id, ())
            report.flagged += [(state.item_id, s) for s in flagged]
            if judge_quarantined:
                still = {s.image_id for s in flagged}
                report.unflagged_quarantined += [
                    (state.item_id, r.image_id)
                    for r in chunk.stored.get(state.item_id, [])
                    if r.quarantined and r.image_id not in still
                ]
    if release is not None:  # first, so that no item runs out of counted images meanwhile
        for item_id, image_id in report.unflagged_quarantined:
            try:
                release(item_id, image_id)
            except (ItemNotFoundError, ImageNotFoundError):
                report.gone += 1
            else:
                report.released += 1
    if quarantine is not None:
        for item_id, suspect in report.flagged:
            if suspect.quarantined:
                continue  # held out already
            try:
                quarantine(item_id, suspect.image_id)
            except LastCountedImageError:
                report.kept_last_counted += 1
            except (ItemNotFoundError, ImageNotFoundError):
                report.gone += 1
            else:
                report.quarantined += 1
    report.seconds = time.perf_counter() - start
    return report
