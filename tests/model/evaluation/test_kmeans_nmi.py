"""k-means and NMI against a hand-computed contingency table, their definitions, and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.evaluation.embedding_nmi import embedding_nmi
from model.evaluation.kmeans import kmeans
from model.evaluation.nmi import contingency_table, normalized_mutual_information


def test_nmi_of_a_hand_computed_contingency_table() -> None:
    # 6 samples: truth a a a b b c, found 0 0 1 1 2 2.
    truth = ["a", "a", "a", "b", "b", "c"]
    found = [0, 0, 1, 1, 2, 2]
    assert contingency_table(truth, found).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # By hand: H(truth) = -(1/2 ln 1/2 + 1/3 ln 1/3 + 1/6 ln 1/6), H(found) = ln 3,
    # I = sum over cells n_ij/n ln(n n_ij / (a_i b_j)).
    n = 6
    cells = [(2, 3, 2), (1, 3, 2), (1, 2, 2), (1, 2, 2), (1, 1, 2)]  # (n_ij, a_i, b_j)
    mi = sum(c / n * math.log(n * c / (a * b)) for c, a, b in cells)
    h_t = -(0.5 * math.log(0.5) + math.log(1 / 3) / 3 + math.log(1 / 6) / 6)
    h_f = math.log(3)
    expected = mi / ((h_t + h_f) / 2)
    assert normalized_mutual_information(truth, found) == pytest.approx(expected, abs=1e-12)
    assert 0.0 < expected < 1.0


def test_nmi_limits() -> None:
    labels = [0, 0, 1, 1, 2, 2]
    assert normalized_mutual_information(labels, [5, 5, 7, 7, 9, 9]) == pytest.approx(1.0)
    assert normalized_mutual_information(labels, [0] * 6) == 0.0
    assert normalized_mutual_information([1] * 4, [3] * 4) == 1.0
    # Independent: each truth label spread evenly over both found labels.
    assert normalized_mutual_information([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0)


def test_nmi_matches_sklearn_on_random_labelings() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(5, 400))
        a = rng.integers(0, int(rng.integers(1, 12)), n)
        b = rng.integers(0, int(rng.integers(1, 12)), n)
        assert normalized_mutual_information(a, b) == pytest.approx(
            metrics.normalized_mutual_info_score(a, b), abs=1e-10
        )


def _blobs(seed: int, k: int = 12, per: int = 40, dim: int = 32, spread: float = 0.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 2.0
    labels = np.repeat(np.arange(k), per)
    return centres[labels] + spread * rng.normal(size=(k * per, dim)), labels


def test_kmeans_ends_at_a_lloyd_fixed_point() -> None:
    x, _ = _blobs(0, spread=1.5)
    result = kmeans(x, 12, seed=1)
    # Oracle: every point sits with its nearest centre (brute force), every centre is the mean
    # of its points, and the inertia is the sum of those squared distances.
    d = ((x[:, None, :] - result.centers[None, :, :]) ** 2).sum(axis=2)
    assert np.array_equal(result.labels, d.argmin(axis=1))
    for c in range(12):
        members = x[result.labels == c]
        if members.shape[0]:
            np.testing.assert_allclose(result.centers[c], members.mean(axis=0), atol=1e-9)
    assert result.inertia == pytest.approx(float(d.min(axis=1).sum()), rel=1e-9)
    assert kmeans(x, 12, seed=1).labels.tolist() == result.labels.tolist()  # seeded


def test_kmeans_recovers_separated_blobs_like_sklearn() -> None:
    cluster = pytest.importorskip("sklearn.cluster")
    x, labels = _blobs(4)
    ours = kmeans(x, 12)
    theirs = cluster.KMeans(12, n_init=1, random_state=0).fit(x)
    assert normalized_mutual_information(labels, ours.labels) == pytest.approx(1.0)
    assert ours.inertia <= theirs.inertia_ * 1.0001


def test_embedding_nmi_rises_with_separation() -> None:
    tight, labels = _blobs(5, spread=0.3)
    loose, _ = _blobs(5, spread=3.0)
    assert embedding_nmi(tight, labels) == pytest.approx(1.0)
    assert embedding_nmi(loose, labels) < 0.9
