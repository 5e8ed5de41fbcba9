"""One item as ``rebuild`` takes it: ``(item_id, centroid)``, or ``(item_id, centroid, terms)``
when the item carries filter terms (``index/item_terms.py``); the pair form means no terms."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from index.item_terms import NO_TERMS, check_terms

RebuildItem = (
    tuple[str, npt.NDArray[np.floating]] | tuple[str, npt.NDArray[np.floating], frozenset[str]]
)


def split_rebuild_item(
    item: RebuildItem,
) -> tuple[str, npt.NDArray[np.floating], frozenset[str]]:
    """``(item_id, centroid (D,), terms)`` of either form; terms checked (``check_terms``)."""
    if len(item) == 2:
        item_id, centroid = item
        return item_id, centroid, NO_TERMS
    item_id, centroid, terms = item
    return item_id, centroid, check_terms(terms)
