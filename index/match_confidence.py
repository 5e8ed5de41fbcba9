"""Calibrated "is this the item?": ``confidence`` in [0, 1] and ``match`` per result.

One flat cut-off on the score cannot work: an item whose photos all look alike (a tight item)
gives its own new photos scores near 1, so a 0.8 there is an impostor, while an item with
varied photos gives its own photos 0.8. The rule therefore compares a result's scores with what
*this item* predicts for a new photo of itself, from its spread, kept at O(d) per update.

**The item's spread.** ``spread = dot(unit_sum, c) / count``: the mean cosine of the item's
images to its centroid ``c`` (``unit_sum`` the sum of its L2-normalised image embeddings). If
an item's ``n`` unit images have mean pairwise cosine ``rho``, then ``|sum|^2 = n + n(n-1)rho``
and each image's cosine to the centroid averages ``spread = sqrt((1 + (n-1) rho) / n)``, so

    rho = (n * spread^2 - 1) / (n - 1)                                  (n >= 2)
    mu  = n * rho / sqrt(n * (1 + (n-1) rho))                           (expected cosine of a
                                                                         new photo to c)

(Exact when ``c`` is the direction of ``unit_sum``; the store's centroid normalises the sum
of the raw embeddings, whose lengths differ a little, which the bench's figures include.)
An item with one image has no spread: ``rho = PRIOR_PAIR_COSINE``, the mean cosine between
two views of one item measured on the shipped photos (then ``mu = rho``). ``rho`` is clamped
to ``[RHO_MIN, RHO_MAX]``.

**The score.** Two signals, one logit per result:

* ``z = (mean(centroid_score, image_score) - mu) / (1 - mu)``: how far the result sits above
  or below the item's own expectation, in units of the item's width (a tight item, ``mu``
  near 1, has a narrow range of scores for its own photos). Both scores count: a genuine photo
  is close to the centroid *and* to one of the item's images.
* the ratio test against the best *other* item among the query's results (the candidates the
  index proposed): ``ratio(s, o) = log(max(1 - o, EPS) / max(1 - s, EPS))``, the log of the
  cosine distance to the runner-up over the distance to this result, once for the centroid
  scores and once for the image scores. A photo of an enrolled item is much nearer its item
  than any other; a photo of an item that is not enrolled lands near several look-alikes at
  once (items cut from the same photo, other sides of one product), which the item's own
  spread cannot see. A result below another one gets a negative ratio. A query with one
  result (an index of one item, a filter matching one) has no runner-up: ``o = NO_OTHER_SCORE``,
  an unrelated image's cosine.

``logit = SLOPE * z + CENTROID_RATIO_WEIGHT * ratio(centroid) + IMAGE_RATIO_WEIGHT *
ratio(image) + OFFSET``, ``confidence = sigmoid(logit)`` and ``match = confidence >= MATCH_AT``;
the weights and offset are a class-balanced logistic fit (``python -m bench.answers --fit``)
of enrolled-and-right against held-out items' queries on the shipped photos.

**Degenerate queries.** Blank, uniform-colour and tiny images (which upscale to a near-uniform
picture) carry no content, yet still land somewhere. The caller embeds the uniform-colour
images of :func:`uniform_inputs` once with its model; a query is degenerate when

* its model input (the ``(3, H, W)`` uint8 pixels after decode and resize) is flat: every
  channel's standard deviation below ``MAX_FLAT_STD`` grey levels (a uniform image of any
  colour, at any size), or
* its raw embedding (as the model outputs it) has cosine ``>= MAX_UNIFORM_COSINE`` with one
  of the uniform images', or
* its raw embedding is shorter than ``MIN_NORM_FRACTION`` of their median length: images near
  mid-grey are the near-zero input of the usual ``(x - 0.5) / 0.5`` normalisation, and their
  near-zero embeddings point in no meaningful direction (the default model: norm < 1.1 for
  greys 116 to 160, cosines to the uniform images anywhere from 0.07 to 1; real photos >= 9,
  the uniform images' median 10). A model that outputs unit vectors makes this test a no-op.

The embedding tests catch what is nearly but not exactly flat (JPEG noise on a blank page,
a slight gradient). A degenerate query's confidence is 0 and no result matches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Fitted by python -m bench.answers --fit (2026-12-03, the default model, view seed 0 of the
# photos, quarters-2x2 and quarters-crops folders, 4 gallery views per item, each also with
# 1-4 views kept per item; two-stage alpha 0.6, M 10): the mean cosine of two views of one
# item over 180 items (0.825), and the class-balanced logistic fit of enrolled-and-right
# against held-out queries.
PRIOR_PAIR_COSINE = 0.82
SLOPE = 1.20
CENTROID_RATIO_WEIGHT = 0.47
IMAGE_RATIO_WEIGHT = 0.86
OFFSET = -0.34
MATCH_AT = 0.5
# The runner-up's score when a query has one result: the median cosine of a query to an item
# cut from another photo (bench.answers' folders, default model: 0.18 to 0.21).
NO_OTHER_SCORE = 0.2
# Smallest cosine distance in the ratio: a result identical to the query (distance 0, or a
# hair below through float rounding) stays finite.
RATIO_EPS = 1e-4
# Measured by bench.answers: the real photos' queries come at most 0.67 near a uniform image
# (of 320 on quarters-2x2); uniform and tiny (1x1, 2x2) images at least 0.94, except those
# near grey (0.59 and 0.66), which the pixel and length tests catch.
MAX_UNIFORM_COSINE = 0.85
MIN_NORM_FRACTION = 0.25
# Grey levels. Uniform images' inputs measure 0 (PNG and JPEG alike); the flattest real query
# of bench.answers 3.4 (a dark quarter of a photo). Near-flat photos (a camera's noise on a
# blank page) are left to the embedding tests.
MAX_FLAT_STD = 1.0
RHO_MIN, RHO_MAX = 0.05, 0.999
# 0, 128, 255 per channel: 27 colours, the mid-grey (all-zero model input) among them.
UNIFORM_LEVELS = (0, 128, 255)


@dataclass(frozen=True)
class MatchRule:
    """The rule's constants (defaults: the measured ones above)."""

    prior_pair_cosine: float = PRIOR_PAIR_COSINE
    slope: float = SLOPE
    centroid_ratio_weight: float = CENTROID_RATIO_WEIGHT
    image_ratio_weight: float = IMAGE_RATIO_WEIGHT
    offset: float = OFFSET
    match_at: float = MATCH_AT
    max_uniform_cosine: float = MAX_UNIFORM_COSINE
    min_norm_fraction: float = MIN_NORM_FRACTION
    max_flat_std: float = MAX_FLAT_STD


@dataclass(frozen=True)
class MatchVerdict:
    """``confidence`` ``(M,)`` float32 in [0, 1] and ``match`` ``(M,)`` bool, per result."""

    confidence: npt.NDArray[np.float32]
    match: npt.NDArray[np.bool_]


def item_spread(
    unit_sum: npt.NDArray[np.floating], centroid: npt.NDArray[np.floating], count: int
) -> float:
    """``dot(unit_sum (D,), centroid (D,)) / count``: mean cosine of the images to ``c``."""
    if count < 1:
        raise ValueError("an item has at least one image")
    return float(np.dot(unit_sum.astype(np.float64), centroid.astype(np.float64)) / count)


def pair_cosine(
    count: npt.NDArray[np.integer], spread: npt.NDArray[np.floating], prior: float
) -> npt.NDArray[np.float64]:
    """``(M,)`` mean pairwise cosine of each item's images (``prior`` where ``count == 1``)."""
    n = count.astype(np.float64)
    s = spread.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(n >= 2, (n * s * s - 1.0) / np.maximum(n - 1.0, 1.0), prior)
    out: npt.NDArray[np.float64] = np.clip(rho, RHO_MIN, RHO_MAX)
    return out


def expected_view_cosine(
    count: npt.NDArray[np.integer], spread: npt.NDArray[np.floating], prior: float
) -> npt.NDArray[np.float64]:
    """``(M,)`` ``mu``: the cosine a new photo of the item is expected to have to its centroid."""
    n = count.astype(np.float64)
    rho = pair_cosine(count, spread, prior)
    mu: npt.NDArray[np.float64] = n * rho / np.sqrt(n * (1.0 + (n - 1.0) * rho))
    return mu


def match_z(
    centroid_score: npt.NDArray[np.floating],
    image_score: npt.NDArray[np.floating],
    count: npt.NDArray[np.integer],
    spread: npt.NDArray[np.floating],
    prior: float = PRIOR_PAIR_COSINE,
) -> npt.NDArray[np.float64]:
    """``(M,)`` ``z = (mean(centroid, image) - mu) / (1 - mu)``."""
    mu = expected_view_cosine(count, spread, prior)
    mixed = 0.5 * (centroid_score.astype(np.float64) + image_score.astype(np.float64))
    z: npt.NDArray[np.float64] = (mixed - mu) / (1.0 - mu)
    return z


def best_other(scores: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """``(M,)`` per result of one query, the largest score among the *other* results
    (``NO_OTHER_SCORE`` when ``M == 1``)."""
    s = scores.astype(np.float64)
    m = s.shape[0]
    if m < 2:
        return np.full(m, NO_OTHER_SCORE, dtype=np.float64)
    first = int(np.argmax(s))
    rest = np.delete(s, first)
    # Everyone's best other is the top score, except the top's own: the second.
    out = np.full(m, s[first], dtype=np.float64)
    out[first] = rest.max()
    return out


def distance_ratio(
    score: npt.NDArray[np.floating], other: npt.NDArray[np.floating]
) -> npt.NDArray[np.float64]:
    """``(M,)`` ``log(max(1 - other, EPS) / max(1 - score, EPS))``: > 0 when the result is
    nearer the query than the runner-up."""
    near = np.maximum(1.0 - score.astype(np.float64), RATIO_EPS)
    far = np.maximum(1.0 - other.astype(np.float64), RATIO_EPS)
    out: npt.NDArray[np.float64] = np.log(far / near)
    return out


def match_features(
    centroid_score: npt.NDArray[np.floating],
    image_score: npt.NDArray[np.floating],
    count: npt.NDArray[np.integer],
    spread: npt.NDArray[np.floating],
    other_centroid: npt.NDArray[np.floating],
    other_image: npt.NDArray[np.floating],
    prior: float = PRIOR_PAIR_COSINE,
) -> npt.NDArray[np.float64]:
    """``(M, 3)`` float64: ``z``, the centroid ratio and the image ratio, per result."""
    z = match_z(centroid_score, image_score, count, spread, prior)
    return np.stack(
        [
            z,
            distance_ratio(centroid_score, other_centroid),
            distance_ratio(image_score, other_image),
        ],
        axis=1,
    )


def match_confidence(
    centroid_score: npt.NDArray[np.floating],
    image_score: npt.NDArray[np.floating],
    count: npt.NDArray[np.integer],
    spread: npt.NDArray[np.floating],
    *,
    other_centroid: npt.NDArray[np.floating] | None = None,
    other_image: npt.NDArray[np.floating] | None = None,
    degenerate_query: bool = False,
    rule: MatchRule | None = None,
) -> MatchVerdict:
    """Per result (all ``(M,)``): the verdict of the module's rule.

    Without ``other_centroid`` / ``other_image`` the arrays are *one query's* results and each
    result's runner-up is the best other among them (:func:`best_other`); with them, each row
    is judged against the runner-up scores given (rows of different queries, as the bench
    pools them)."""
    r = rule or MatchRule()
    m = centroid_score.shape[0]
    if image_score.shape != (m,) or count.shape != (m,) or spread.shape != (m,):
        raise ValueError("centroid_score, image_score, count and spread must all be (M,)")
    oc = best_other(centroid_score) if other_centroid is None else other_centroid
    oi = best_other(image_score) if other_image is None else other_image
    if oc.shape != (m,) or oi.shape != (m,):
        raise ValueError("other_centroid and other_image must be (M,)")
    if degenerate_query:
        return MatchVerdict(np.zeros(m, dtype=np.float32), np.zeros(m, dtype=np.bool_))
    x = match_features(centroid_score, image_score, count, spread, oc, oi, r.prior_pair_cosine)
    w = np.array([r.slope, r.centroid_ratio_weight, r.image_ratio_weight])
    logit = x @ w + r.offset
    confidence = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return MatchVerdict(confidence, confidence >= np.float32(r.match_at))


def uniform_inputs(height: int, width: int) -> npt.NDArray[np.uint8]:
    """``(27, 3, H, W)`` uint8: one uniform image per colour in ``UNIFORM_LEVELS^3``, in the
    model's input layout, for the caller to embed once."""
    levels = np.array(UNIFORM_LEVELS, dtype=np.uint8)
    colours = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    out = np.broadcast_to(colours[:, :, None, None], (colours.shape[0], 3, height, width))
    return np.ascontiguousarray(out)


def uniform_cosine(
    query: npt.NDArray[np.floating], uniform_embeddings: npt.NDArray[np.floating]
) -> float:
    """Largest cosine between ``query`` ``(D,)`` (raw or unit) and the ``(R, D)`` embeddings
    of uniform images (raw or unit); 1.0 for an all-zero query (nothing to compare)."""
    q = query.astype(np.float64)
    q_norm = float(np.linalg.norm(q))
    if q_norm == 0.0:
        return 1.0
    u = uniform_embeddings.astype(np.float64)
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    return float(np.max(u @ (q / q_norm)))


def norm_fraction(
    query: npt.NDArray[np.floating], uniform_embeddings: npt.NDArray[np.floating]
) -> float:
    """The raw query's ``(D,)`` length over the median length of the ``(R, D)`` raw uniform
    images' embeddings."""
    median = float(np.median(np.linalg.norm(uniform_embeddings.astype(np.float64), axis=1)))
    return float(np.linalg.norm(query.astype(np.float64))) / max(median, 1e-12)


def input_std(model_input: npt.NDArray[np.uint8]) -> float:
    """The largest per-channel standard deviation of a ``(3, H, W)`` uint8 model input."""
    if model_input.ndim != 3:
        raise ValueError(f"expected one (3, H, W) input, got {model_input.shape}")
    channels = model_input.reshape(model_input.shape[0], -1).astype(np.float64)
    return float(channels.std(axis=1).max())


def is_degenerate(
    query: npt.NDArray[np.floating],
    uniform_embeddings: npt.NDArray[np.floating],
    rule: MatchRule | None = None,
    *,
    model_input: npt.NDArray[np.uint8] | None = None,
) -> bool:
    """Whether the query is as good as a uniform image (the module's three tests): its
    ``model_input`` ``(3, H, W)`` uint8 flat (when given), or its raw embedding ``(D,)``
    near or far shorter than the raw ``(R, D)`` uniform images' embeddings."""
    r = rule or MatchRule()
    if model_input is not None and input_std(model_input) < r.max_flat_std:
        return True
    return (
        uniform_cosine(query, uniform_embeddings) >= r.max_uniform_cosine
        or norm_fraction(query, uniform_embeddings) < r.min_norm_fraction
    )
