"""One image of a dataset, as the readers produce it and the training and evaluation code use it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """An image file and the item (identity) it shows.

    ``camera`` is ``-1`` when unknown; ``is_distractor`` marks Market-1501 / DukeMTMC-reID
    gallery images of identity ``0000`` (no query shows them; they only compete for ranks).
    """

    path: str  # image file
    item: str  # item/identity label (Market: "0002"; COCO: str(pair_id); folder: dir name)
    camera: int = -1  # -1 when unknown
    is_distractor: bool = False  # Market "0000" gallery images
