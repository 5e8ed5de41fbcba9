"""k-means over proxies: Lloyd fixed point checked by brute force, blobs recovered, determinism."""

from __future__ import annotations

import pytest
import torch

from model.losses.proxy_kmeans import kmeans


def partition(assignment: torch.Tensor) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, c in enumerate(assignment.tolist()):
        groups.setdefault(c, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def test_recovers_well_separated_blobs() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]])
    labels = torch.tensor([2, 0, 1, 1, 0, 2, 2, 1, 0, 0])
    points = centres[labels] + 0.1 * torch.randn(10, 3, generator=gen)
    result = kmeans(points, 3, seed=5)
    assert partition(result.assignment) == partition(labels)


@pytest.mark.parametrize("seed", range(4))
def test_result_is_a_lloyd_fixed_point(seed: int) -> None:
    gen = torch.Generator().manual_seed(100 + seed)
    points = torch.randn(40, 4, generator=gen, dtype=torch.float64)
    centroids, assignment = kmeans(points, 5, seed=seed)
    for i in range(40):  # brute force: every point sits with its nearest centroid
        dists = [float(((points[i] - c) ** 2).sum()) for c in centroids]
        assert dists[assignment[i]] == pytest.approx(min(dists), abs=1e-12)
    for c in range(5):  # and every centroid is the mean of its points
        members = points[assignment == c]
        assert len(members) > 0
        torch.testing.assert_close(centroids[c], members.mean(dim=0))


def test_same_seed_same_answer() -> None:
    points = torch.randn(30, 3, generator=torch.Generator().manual_seed(1))
    a, b = kmeans(points, 4, seed=7), kmeans(points, 4, seed=7)
    assert torch.equal(a.assignment, b.assignment) and torch.equal(a.centroids, b.centroids)


def test_duplicates_still_use_every_cluster() -> None:
    points = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    result = kmeans(points, 4, seed=0)
    assert sorted(result.assignment.tolist()) == [0, 1, 2, 3]


def test_k_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        kmeans(torch.zeros(3, 2), 4, seed=0)
