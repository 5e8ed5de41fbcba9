"""The enrollment quality gate in the service: which images look enrolled under the wrong item.

The rule is ``index.suspect_images`` (an image closer to another item's centroid than to its
own item's centroid formed without it, by ``margin``; or far outside its item's spread). Its
inputs here: the image's raw embedding, its item's running sums as the store holds them after
the write (``ItemState``: sum, unit sum, count), and the nearest *other* item's centroid, asked
of this replica's centroid index (the ``k = 2`` best, the item itself dropped).

At enrollment the rival scores are asked of the index *before* the store commits (they do not
depend on this item's own write); the review is then the store's ``EnrollJudge``, judging the
added images inside the write's transaction against the item's sums as that transaction read
them (every new image counted), so the verdicts are a pure function of what the store holds:
an enrollment recorded under an ``Idempotency-Key`` renders them inside its transaction and a
replay answers them byte for byte. With ``quarantine`` (``RETRIEVAL_QUARANTINE_SUSPECTS``) the
flagged images are kept but held out of the item's sums (``store/write_plan.py``,
"Quarantine"). Only the images the request added are judged; a duplicate file's image was
judged when it was added (``GET /items/{item_id}/suspects`` judges them all, against the
gallery as it is now). When the index cannot be asked (Milvus unreachable) the enrollment goes
on unjudged, its ``suspects`` empty, nothing quarantined: the gate never makes a write fail.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from index.centroid_index import CentroidIndex
from index.centroid_math import l2_normalize
from index.index_errors import IndexUnavailableError
from index.suspect_images import (
    DEFAULT_QUARANTINE_MIN_IMAGES,
    NO_OTHER,
    SuspectRule,
    SuspectVerdicts,
    judge_images,
)
from store.embedding_codec import unit_vector
from store.records import ImageRecord, ItemState, SuspectImage
from store.write_plan import EnrollVerdict

log = logging.getLogger(__name__)


def rival_scores(
    index: CentroidIndex, item_id: str, embeddings: npt.NDArray[np.floating]
) -> tuple[list[str | None], npt.NDArray[np.float64]]:
    """Each ``(n, D)`` raw embedding's nearest other item in ``index``: its id (None when the
    index holds no other item) and cosine ``(n,)`` float64 (``NO_OTHER`` then)."""
    if len(embeddings) == 0:
        return [], np.zeros(0, dtype=np.float64)
    hits = index.search(l2_normalize(embeddings), 2)
    ids: list[str | None] = []
    scores = np.full(len(hits), NO_OTHER, dtype=np.float64)
    for n, row in enumerate(hits):
        other = next(((i, s) for i, s in row if i != item_id), None)
        ids.append(None if other is None else other[0])
        if other is not None:
            scores[n] = other[1]
    return ids, scores


def judge_against(
    state: ItemState,
    embeddings: npt.NDArray[np.floating],
    rival: npt.NDArray[np.float64],
    rule: SuspectRule,
) -> SuspectVerdicts:
    """``judge_images`` for ``(n, D)`` raw images of one item whose sums (the images included)
    are ``state``'s; ``rival`` ``(n,)`` their nearest other centroids' cosines."""
    assert state.unit_sum is not None
    n = len(embeddings)
    return judge_images(
        embeddings,
        np.tile(state.embedding_sum, (n, 1)),
        np.tile(state.unit_sum, (n, 1)),
        np.full(n, state.count),
        rival,
        rule,
    )


def flagged(
    image_ids: Sequence[str],
    rival_ids: Sequence[str | None],
    verdicts: SuspectVerdicts,
    quarantined: frozenset[str] = frozenset(),
) -> tuple[SuspectImage, ...]:
    """The suspect images among ``image_ids`` (the verdicts' order), as records; those in
    ``quarantined`` marked so."""
    out = []
    for n in np.flatnonzero(verdicts.suspect).tolist():
        reasons = []
        if verdicts.closer_to_other[n]:
            reasons.append("closer_to_other_item")
        if verdicts.outside_spread[n]:
            reasons.append("outside_item_spread")
        out.append(
            SuspectImage(
                image_id=image_ids[n],
                reasons=tuple(reasons),
                own_score=float(verdicts.own[n]),
                spread_z=float(verdicts.z[n]),
                nearest_other_item=rival_ids[n],
                nearest_other_score=(None if rival_ids[n] is None else float(verdicts.other[n])),
                quarantined=image_ids[n] in quarantined,
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class EnrollmentReview:
    """One enrollment's judge (a ``store.write_plan.EnrollJudge``): its embeddings and their
    rivals, taken before the commit."""

    rule: SuspectRule
    embeddings: npt.NDArray[np.float32]  # (N, D) raw, one per uploaded file
    rival_ids: list[str | None]
    rival: npt.NDArray[np.float64]  # (N,)
    # False when the index could not be asked (Milvus unreachable): the write goes on unjudged,
    # as it would without the gate (the store, not the index, decides whether it commits).
    judged: bool = True
    quarantine: bool = False  # hold the flagged images out of the item's sums
    # ... only where the item holds at least this many other counted images: judged against
    # fewer, a genuine view is flagged about as often as a mislabel (RETRIEVAL_QUARANTINE_
    # MIN_IMAGES; bench.quality_gate measured 2 against 1 on one-image-per-request uploads).
    quarantine_min_images: int = DEFAULT_QUARANTINE_MIN_IMAGES

    def __call__(
        self, state: ItemState, positions: Sequence[int], image_ids: Sequence[str]
    ) -> EnrollVerdict:
        """The added images at ``positions`` (their ids ``image_ids``) judged against
        ``state``, the item with all of them counted."""
        if not self.judged or not positions or state.unit_sum is None:
            return EnrollVerdict()
        at = list(positions)
        verdicts = judge_against(state, self.embeddings[at], self.rival[at], self.rule)
        suspects = flagged(image_ids, [self.rival_ids[n] for n in at], verdicts)
        if not self.quarantine or state.count - 1 < self.quarantine_min_images:
            return EnrollVerdict(suspects)
        held_out = frozenset(at[n] for n in np.flatnonzero(verdicts.suspect).tolist())
        return EnrollVerdict(suspects, held_out)


class SuspectReview:
    """Judges images for one retriever: its index, the rule's settings, and whether flagged
    enrollments are quarantined."""

    def __init__(
        self,
        index: CentroidIndex,
        rule: SuspectRule,
        quarantine: bool = False,
        quarantine_min_images: int = DEFAULT_QUARANTINE_MIN_IMAGES,
    ) -> None:
        self.index = index
        self.rule = rule
        self.quarantine = quarantine
        self.quarantine_min_images = quarantine_min_images

    def enrollment(self, item_id: str, embeddings: npt.NDArray[np.float32]) -> EnrollmentReview:
        try:
            rival_ids, rival = rival_scores(self.index, item_id, embeddings)
        except IndexUnavailableError:
            log.warning("quality gate skipped for an enrollment: the centroid index is unreachable")
            empty = np.zeros(0, dtype=np.float64)
            return EnrollmentReview(self.rule, embeddings, [], empty, judged=False)
        return EnrollmentReview(
            self.rule,
            embeddings,
            rival_ids,
            rival,
            quarantine=self.quarantine,
            quarantine_min_images=self.quarantine_min_images,
        )

    def item(self, state: ItemState, images: Sequence[ImageRecord]) -> tuple[SuspectImage, ...]:
        """Every one of the item's ``images`` judged against its state and the index now. A
        quarantined image is not in the state's sums: it is judged against them with itself
        added (so that its centroid "formed without it" is the item's own)."""
        if not images or state.unit_sum is None:
            return ()
        embeddings = np.stack([np.asarray(r.embedding, dtype=np.float32) for r in images])
        rival_ids, rival = rival_scores(self.index, state.item_id, embeddings)
        n = len(images)
        sums = np.tile(state.embedding_sum, (n, 1))
        unit_sums = np.tile(state.unit_sum, (n, 1))
        counts = np.full(n, state.count)
        out = [k for k, r in enumerate(images) if r.quarantined]
        for k in out:
            sums[k] += embeddings[k]
            unit_sums[k] += unit_vector(embeddings[k])
            counts[k] += 1
        verdicts = judge_images(embeddings, sums, unit_sums, counts, rival, self.rule)
        held_out = frozenset(images[k].image_id for k in out)
        return flagged([r.image_id for r in images], rival_ids, verdicts, held_out)
