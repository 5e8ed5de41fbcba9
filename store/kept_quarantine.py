"""A judge that keeps another store's quarantine: a copy of an item's images (a model
migration's shadow store, ``app/reembed_job.py``; a mirrored enrollment) holds out of its sums
exactly the images the source store holds out, whatever the quality gate would say of the new
embeddings (the decision is about the photo, not one model's embedding of it). It reports no
suspects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from store.records import ItemState
from store.write_plan import EnrollVerdict


@dataclass(frozen=True)
class KeptQuarantine:
    """``positions``: the request positions (input order) the source holds out.

    ``plan_enroll``'s rule still applies: a new item whose every image would be quarantined
    quarantines none (a source item always keeps a counted image, so flags copied whole from
    it never hit that rule)."""

    positions: frozenset[int]

    def __call__(
        self, state: ItemState, positions: Sequence[int], image_ids: Sequence[str]
    ) -> EnrollVerdict:
        return EnrollVerdict((), frozenset(p for p in positions if p in self.positions))
