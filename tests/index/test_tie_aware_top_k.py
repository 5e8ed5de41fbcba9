"""Candidate widening around the k-th score, on a real FAISS index."""

from __future__ import annotations

import faiss
import numpy as np

from index.tie_aware_top_k import (
    FIRST_EXTRA,
    candidates_covering_ties,
    float32_dot_slack,
    rank_by_score_then_id,
)


def test_all_rows_tying_with_the_kth_become_candidates() -> None:
    d, n_tied = 8, 3 * FIRST_EXTRA + 5  # more ties than the first search asks for
    rng = np.random.default_rng(0)
    shared = rng.normal(size=d).astype(np.float32)
    shared /= np.linalg.norm(shared)
    rows = np.vstack([np.tile(shared, (n_tied, 1)), -np.tile(shared, (10, 1))])
    index = faiss.IndexFlatIP(d)
    index.add(rows)
    ((slots, scores),) = candidates_covering_ties(index.search, shared[None, :], 2, len(rows), 1e-6)
    assert set(slots.tolist()) >= set(range(n_tied))
    assert scores.shape == slots.shape


def test_no_widening_when_the_score_drops_after_k() -> None:
    index = faiss.IndexFlatIP(2)
    angles = np.linspace(0, np.pi, 200)
    index.add(np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32))
    calls: list[int] = []

    def search(q: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
        calls.append(want)
        return index.search(q, want)  # type: ignore[no-any-return]

    ((slots, _),) = candidates_covering_ties(search, np.array([[1.0, 0]], np.float32), 3, 200, 1e-6)
    assert calls == [3 + FIRST_EXTRA]
    assert slots[:3].tolist() == [0, 1, 2]


def test_empty_index_gives_empty_candidates() -> None:
    index = faiss.IndexFlatIP(2)
    out = candidates_covering_ties(index.search, np.ones((2, 2), np.float32), 5, 0, 1e-6)
    assert [c[0].size for c in out] == [0, 0]


def test_rank_sorts_by_score_then_id_and_cuts() -> None:
    ids = ["d", "c", "b", "a"]
    got = rank_by_score_then_id(ids, np.array([0, 1, 2, 3]), np.array([0.5, 0.9, 0.5, 0.5]), 3)
    assert got == [("c", 0.9), ("a", 0.5), ("b", 0.5)]


def test_slack_matches_the_float32_dot_product_bound() -> None:
    assert float32_dot_slack(1280) == 2 * 1280 * 2.0**-24
