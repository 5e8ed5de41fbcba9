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

**The score.** ``z = (mean(centroid_score, image_score) - mu) / (1 - mu)``: how far the result
sits above or below the item's own expectation, in units of the item's width (a tight item,
``mu`` near 1, has a narrow range of scores for its own photos). Both scores count: a genuine
photo is close to the centroid *and* to one of the item's images.
``confidence = sigmoid(SLOPE * z + OFFSET)`` and ``match = confidence >= MATCH_AT``; ``SLOPE``
and ``OFFSET`` are a class-balanced logistic fit (``python -m bench.answers --fit``) of
enrolled against held-out items' queries on the shipped photos.

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
# 1-4 views kept per item; 6570 queries): the mean cosine of two views of one item over 180
# items (0.825), and the class-balanced logistic fit of enrolled-and-right against held-out
# queries (1.418, 0.740).
PRIOR_PAIR_COSINE = 0.82
SLOPE = 1.42
OFFSET = 0.74
MATCH_AT = 0.5
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


def match_confidence(
    centroid_score: npt.NDArray[np.floating],
    image_score: npt.NDArray[np.floating],
    count: npt.NDArray[np.integer],
    spread: npt.NDArray[np.floating],
    *,
    degenerate_query: bool = False,
    rule: MatchRule | None = None,
) -> MatchVerdict:
    """Per result (all ``(M,)``): the verdict of the module's rule."""
    r = rule or MatchRule()
    m = centroid_score.shape[0]
    if image_score.shape != (m,) or count.shape != (m,) or spread.shape != (m,):
        raise ValueError("centroid_score, image_score, count and spread must all be (M,)")
    if degenerate_query:
        return MatchVerdict(np.zeros(m, dtype=np.float32), np.zeros(m, dtype=np.bool_))
    z = match_z(centroid_score, image_score, count, spread, r.prior_pair_cosine)
    confidence = (1.0 / (1.0 + np.exp(-(r.slope * z + r.offset)))).astype(np.float32)
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
