"""An item's spread: how alike its images embed, from two running sums kept at O(D) per write.

``spread = mean_i cos(e_i, c)`` with ``c = normalize(Σ e_i)`` the item's centroid, and since
``cos(e_i, c) = dot(unit(e_i), c)``, ``spread = dot(Σ unit(e_i), c) / n`` = ``dot(unit_sum,
normalize(embedding_sum)) / count``: both sums are in every ``ItemState``. 1 when every image
points the same way; an item with one image has spread 1 by construction (callers use a prior
there).
"""

from __future__ import annotations

import numpy as np

from store.records import ItemState


def item_spread(state: ItemState) -> float | None:
    """Mean cosine of the item's images to its centroid; None for a deleted item, one whose
    ``unit_sum`` is not known, or a zero centroid."""
    if state.count <= 0 or state.unit_sum is None:
        return None
    norm = float(np.sqrt(state.embedding_sum @ state.embedding_sum))
    if norm == 0.0:
        return None
    return float(state.unit_sum @ state.embedding_sum) / (norm * state.count)
