"""A brute-force oracle for rankings by centroid, in float64 from single-image embeddings.

Each image is embedded alone (the service batches; the oracle does not) through the one
preprocessing path, ``preprocess_bytes``; an item's centroid and a set query are both
``normalize(sum_i w_i * e_i)`` over those raw embeddings; a ranking is every item by cosine,
best first, ties by item id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder

Vector = npt.NDArray[np.float64]
Ranking = list[tuple[str, float]]
# Float32 inference and index, float64 oracle: ulp-level differences summed over 32 dims.
SCORE_ATOL = 1e-5


def raw_embedding(embedder: OnnxEmbedder, data: bytes) -> Vector:
    """One image's ``(D,)`` embedding as the model outputs it (not normalised)."""
    batch = preprocess_bytes(data, embedder.spec)[np.newaxis]  # (1, 3, H, W) uint8
    row: Vector = embedder.embed(batch)[0].astype(np.float64)
    return row


def unit(v: Vector) -> Vector:
    out: Vector = v / np.linalg.norm(v)
    return out


def weighted_centroid(rows: Sequence[Vector], weights: Sequence[float] | None = None) -> Vector:
    """``normalize(sum_i w_i * rows_i)``; every weight 1 without ``weights``."""
    w = [1.0] * len(rows) if weights is None else list(weights)
    return unit(np.sum([wi * r for wi, r in zip(w, rows, strict=True)], axis=0))


def rank(centroids: Mapping[str, Vector], query: Vector, k: int | None = None) -> Ranking:
    """The top ``k`` (all without ``k``) items by cosine to the unit ``query``."""
    scored = [(item, float(c @ query)) for item, c in centroids.items()]
    scored.sort(key=lambda hit: (-hit[1], hit[0]))
    return scored if k is None else scored[:k]


def as_ranking(body: Mapping[str, object]) -> Ranking:
    """A ``SearchResponse`` JSON body as ``[(item_id, score)]``."""
    results = body["results"]
    assert isinstance(results, list)
    return [(r["item_id"], r["score"]) for r in results]


def assert_same_ranking(got: Ranking, expected: Ranking) -> None:
    assert [item for item, _ in got] == [item for item, _ in expected]
    np.testing.assert_allclose(
        [s for _, s in got], [s for _, s in expected], rtol=0, atol=SCORE_ATOL
    )
