"""A judge that keeps another store's quarantine: a copy of an item's images (a model
migration's shadow store, a mirrored enrollment) holds out of its sums exactly the images the
source store holds out, whatever the quality gate would say of the new embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from store.records import ItemState
from store.write_plan import EnrollVerdict


@dataclass(frozen=True)
class KeptQuarantine:
    """``positions``: the request positions (input order) the source holds out."""

    positions: frozenset[int]

    def __call__(
        self, state: ItemState, positions: Sequence[int], image_ids: Sequence[str]
    ) -> EnrollVerdict:
        return EnrollVerdict((), frozenset(p for p in positions if p in self.positions))
