"""Suspect gallery images: probably enrolled under the wrong item (torch-free).

An image ``e`` of item ``a`` (raw embedding, as the model output it) is judged against the rest
of the gallery as a query would be, with ``a``'s centroid formed *without it*,
``c_a' = normalize(sum_a - e)`` (exact, O(D) from the item's running sum):

* ``own = cos(e, c_a')`` and ``other = max_{b != a} cos(e, c_b)``, the nearest other item's
  centroid (what the index answers for the image, ``a`` excluded);
* **closer to another item** when ``other - own > margin``: the image looks more like another
  enrolled item than like the rest of its own. ``margin`` is a cosine, measured with
  ``python -m bench.quality_gate`` (default model; 5 % of the gallery moved to random wrong
  items on the shipped photos, their 2×2 quarters and the quarters cropped harder; view seeds
  1 to 5): at 0 the rule flags every genuine view that a look-alike item beats (quarters cut
  from one photo: 3 to 6 genuine flags per planted one, precision 0.14 to 0.27); at 0.3 the
  gate's precision is >= 0.80 and its recall >= 0.88 on every folder and seed. It is a
  property of the model's embedding space, so a retrained model may want another
  (``RETRIEVAL_SUSPECT_MARGIN``; the bench sweeps it);
* **outside its item's spread** when ``z = (own - mu') / (1 - mu') < min_z``, where ``mu'`` is
  the cosine a new photo of ``a`` is expected to have to ``c_a'`` given the spread of ``a``'s
  other images (``index.match_confidence.expected_view_cosine``, the prior when one image is
  left): the image is far from its item even if no enrolled item is near it (a mislabel
  whose true item is not enrolled: the bench's ``foreign`` mode). The spread without the
  image comes from the item's unit sum, ``spread' = dot(unit_sum_a - unit(e), c_a') / (n -
  1)``, the statistic the store keeps (``store.item_spread``). ``min_z = -8``: on the folders
  above, -3 to -5 flag genuine views of the cropped quarters (precision down to 0.61), -8
  keeps the gate's precision at 0.80, and the foreign mode's worst recall on the photos is
  0.75 (0.50 at -10).

An item with a single image has no centroid without it: its image is never flagged by either
rule (nothing to compare it with), and ``own``/``z`` are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from index.centroid_math import l2_normalize
from index.match_confidence import PRIOR_PAIR_COSINE, expected_view_cosine

DEFAULT_MARGIN = 0.3
DEFAULT_MIN_Z = -8.0
# Quarantined at enrollment only when the item holds at least this many other counted images
# (``app/suspect_review.py``): on one-image-per-request uploads of the shipped photos' quarters
# (bench.quality_gate's served rows, view seeds 1-3) 1 quarantined genuine views too (precision
# 0.52-0.67), 2 kept it at 0.75-0.97, 3 and 4 halved the recall.
DEFAULT_QUARANTINE_MIN_IMAGES = 2
# The other-item score when the gallery holds no other item: no rival, never "closer".
NO_OTHER = -1.0


@dataclass(frozen=True)
class SuspectRule:
    margin: float = DEFAULT_MARGIN
    min_z: float = DEFAULT_MIN_Z
    prior_pair_cosine: float = PRIOR_PAIR_COSINE


@dataclass(frozen=True)
class SuspectVerdicts:
    """Per judged image, ``(n,)`` each: ``own`` and ``z`` float64 (NaN for a single-image
    item), ``other`` float64 (``NO_OTHER`` without another item), the two rules' bool flags."""

    own: npt.NDArray[np.float64]
    other: npt.NDArray[np.float64]
    z: npt.NDArray[np.float64]
    closer_to_other: npt.NDArray[np.bool_]
    outside_spread: npt.NDArray[np.bool_]

    @property
    def suspect(self) -> npt.NDArray[np.bool_]:
        out: npt.NDArray[np.bool_] = self.closer_to_other | self.outside_spread
        return out


def judge_images(
    embeddings: npt.NDArray[np.floating],
    sums: npt.NDArray[np.floating],
    unit_sums: npt.NDArray[np.floating],
    counts: npt.NDArray[np.integer],
    other: npt.NDArray[np.floating],
    rule: SuspectRule | None = None,
) -> SuspectVerdicts:
    """Judge ``n`` images, each against its own item.

    ``embeddings`` ``(n, D)`` raw; per image its item's running ``sums`` ``(n, D)`` float64 and
    ``unit_sums`` ``(n, D)`` (sum of unit embeddings), both *including* the image, and image
    ``counts`` ``(n,)`` >= 1; ``other`` ``(n,)``: the best cosine of the unit image to another
    item's centroid (``NO_OTHER`` when there is none).
    """
    rule = rule or SuspectRule()
    e = np.asarray(embeddings, dtype=np.float64)
    s = np.asarray(sums, dtype=np.float64)
    us = np.asarray(unit_sums, dtype=np.float64)
    n = np.asarray(counts, dtype=np.int64)
    rival = np.asarray(other, dtype=np.float64)
    if e.ndim != 2 or s.shape != e.shape or us.shape != e.shape:
        raise ValueError(f"embeddings, sums and unit sums must be (n, D): {e.shape}, {s.shape}")
    if n.shape != (e.shape[0],) or rival.shape != n.shape or (n < 1).any():
        raise ValueError("counts (n,) >= 1 and other (n,) expected")
    unit = l2_normalize(e).astype(np.float64)
    many = n >= 2
    left = l2_normalize(s - e).astype(np.float64)  # (n, D): centroids without the image
    own = np.where(many, np.einsum("ij,ij->i", unit, left), np.nan)
    rest = np.maximum(n - 1, 1)
    spread = np.einsum("ij,ij->i", us - unit, left) / rest
    mu = expected_view_cosine(rest, spread, rule.prior_pair_cosine)
    with np.errstate(invalid="ignore"):
        z = np.where(many, (own - mu) / (1.0 - mu), np.nan)
        closer = many & (rival - own > rule.margin)
        outside = many & (z < rule.min_z)
    return SuspectVerdicts(own, rival, z, closer, outside)
