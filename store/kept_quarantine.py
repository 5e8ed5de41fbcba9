"""An enrollment judge that quarantines given request positions, whatever the images look like.

A model migration copies an item into its shadow store as one enrollment
(``app/reembed_job.py``): the shadow must hold the same images out of the sums as the primary
does, whatever the new model makes of them (an operator's or the quality gate's decision is
about the photo, not about one model's embedding of it). The gate is not asked again: this
judge repeats the primary's verdict. It reports no suspects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from store.records import ItemState
from store.write_plan import EnrollVerdict


@dataclass(frozen=True)
class KeptQuarantine:
    """Quarantines the new images at ``positions`` (positions in the enrollment request).

    ``plan_enroll``'s rule still applies: a new item whose every image would be quarantined
    quarantines none (a primary item always keeps a counted image, so flags copied whole from
    it never hit that rule)."""

    positions: frozenset[int]

    def __call__(
        self, state: ItemState, positions: Sequence[int], image_ids: Sequence[str]
    ) -> EnrollVerdict:
        return EnrollVerdict((), frozenset(p for p in positions if p in self.positions))
