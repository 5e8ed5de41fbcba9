"""A brute-force oracle for leave-one-image-out ranks: every centroid rebuilt from scratch from
its item's images (the query's own item without the query), every item scored, a full sort in
which the query's own item loses its ties (within float64 rounding, the documented rule)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Gallery = dict[str, list[npt.NDArray[np.float32]]]


def _unit32(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """As the index stores a centroid and a search sends a query: unit norm, float32."""
    norm = float(np.linalg.norm(v))
    out: npt.NDArray[np.float32] = (v / max(norm, 1e-12)).astype(np.float32)
    return out


def oracle_rank(gallery: Gallery, item: str, image: int) -> int:
    """Rank of ``item`` for its ``image`` left out, from scratch."""
    query = gallery[item][image]
    dim = query.shape[0]
    q = _unit32(query.astype(np.float64)).astype(np.float64)
    scored = []
    for other, rows in gallery.items():
        kept = [r for n, r in enumerate(rows) if other != item or n != image]
        centroid = _unit32(np.sum([r.astype(np.float64) for r in kept], axis=0))
        scored.append((other, float(q @ centroid.astype(np.float64))))
    own = dict(scored)[item]
    tie = 2 * dim * 2.0**-53  # the documented rule: within float64 rounding is a tie
    # A tie with another item counts against the query: snapped to the own score, sorted after.
    snapped = [(o, own if abs(s - own) <= tie else s) for o, s in scored]
    snapped.sort(key=lambda p: (-p[1], p[0] == item))
    return [o for o, _ in snapped].index(item) + 1
