"""Instance-level metrics against hand-derived values and a plain-loop oracle."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest

from model.evaluation.ranking_metrics import accuracy_at_k, instance_metrics


def _unit(v: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _ranked(q: Sequence[float], gallery: np.ndarray) -> list[int]:
    """Gallery indices by descending cosine, ties by index: sorted() over (-score, index)."""
    qu = _unit(q)
    scored = []
    for j, row in enumerate(gallery):
        gu = _unit(row)
        scored.append((-sum(a * b for a, b in zip(qu, gu, strict=True)), j))
    return [j for _, j in sorted(scored)]


def oracle_instance(q, qi, qc, g, gi, gc, cross_camera, ranks):
    """(mAP, {k: CMC@k}, num_valid) by the textbook definitions, one query at a time."""
    aps, firsts = [], []
    for a in range(len(q)):
        kept = [
            j for j in _ranked(q[a], g) if not (cross_camera and gi[j] == qi[a] and gc[j] == qc[a])
        ]
        hits = [gi[j] == qi[a] for j in kept]
        if not any(hits):
            continue
        precisions, found = [], 0
        for rank, hit in enumerate(hits, start=1):
            if hit:
                found += 1
                precisions.append(found / rank)
        aps.append(sum(precisions) / len(precisions))
        firsts.append(hits.index(True) + 1)
    if not aps:
        return 0.0, dict.fromkeys(ranks, 0.0), 0
    cmc = {k: sum(f <= k for f in firsts) / len(firsts) for k in ranks}
    return sum(aps) / len(aps), cmc, len(aps)


def oracle_accuracy(q, qi, g, gi, ks):
    answered = []
    for a in range(len(q)):
        hits = [gi[j] == qi[a] for j in _ranked(q[a], g)]
        if any(hits):
            answered.append(hits.index(True) + 1)
    if not answered:
        return dict.fromkeys(ks, 0.0)
    return {k: sum(r <= k for r in answered) / len(answered) for k in ks}


def _angles(thetas: Sequence[float]) -> np.ndarray:
    """Unit 2-D vectors at the given angles: cosine to (1, 0) falls as the angle grows."""
    return np.array([[math.cos(t), math.sin(t)] for t in thetas], dtype=np.float32)


def random_problem(rng: np.random.Generator, *, exact_ties: bool):
    """Small re-ID problem: 6 query items, 3 gallery-only items, 2 cameras-heavy, distractors.

    With ``exact_ties`` every vector is ±0.5 on 4 of 8 axes times a power of two, so norms,
    normalisation and all dot products are exact and many scores tie exactly.
    """
    n_q, n_g, dim = 14, 40, 8
    qi = rng.integers(0, 6, n_q)
    gi = rng.integers(0, 9, n_g)
    gi[rng.random(n_g) < 0.15] = -1  # distractors: one label no query has
    qc = rng.integers(0, 3, n_q)
    gc = rng.integers(0, 3, n_g)
    if exact_ties:
        pool = np.zeros((5, dim))
        for row in pool:
            axes = rng.choice(dim, 4, replace=False)
            row[axes] = rng.choice([-0.5, 0.5], 4)
        scale = 2.0 ** rng.integers(-3, 4, n_q + n_g)[:, None]
        vecs = pool[rng.integers(0, 5, n_q + n_g)] * scale
        return vecs[:n_q], qi, qc, vecs[n_q:], gi, gc
    centers = rng.normal(size=(9, dim))
    q = centers[qi] + rng.normal(size=(n_q, dim))
    g = np.where((gi >= 0)[:, None], centers[np.maximum(gi, 0)], 0.0) + rng.normal(size=(n_g, dim))
    return q, qi, qc, g, gi, gc


def test_hand_computed_average_precision() -> None:
    # Gallery ordered by angle; positives (item 7) at ranks 1, 3 and 6:
    # AP = (1/1 + 2/3 + 3/6) / 3 = 13/18.
    gallery = _angles([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    items = np.array([7, 1, 7, 2, 3, 7])
    result = instance_metrics(
        np.array([[1.0, 0.0]]), [7], [0], gallery, items, np.ones(6, int), cross_camera=True
    )
    assert result.map == pytest.approx(float(Fraction(13, 18)), abs=1e-12)
    assert result.cmc == {1: 1.0, 5: 1.0, 10: 1.0}
    assert result.num_valid_queries == 1


def test_hand_computed_junk_removal() -> None:
    # Order: b@cam1, x, b@cam2, y, b@cam3. Cross-camera drops b@cam1 (same item, same camera):
    # [x, b, y, b] -> AP = (1/2 + 2/4) / 2 = 1/2, first hit at rank 2.
    # Without the protocol: [b, x, b, y, b] -> AP = (1 + 2/3 + 3/5) / 3 = 34/45.
    gallery = _angles([0.1, 0.2, 0.3, 0.4, 0.5])
    items = np.array(["b", "x", "b", "y", "b"])
    cams = np.array([1, 1, 2, 1, 3])
    args = (np.array([[1.0, 0.0]]), ["b"], [1], gallery, items, cams)
    cross = instance_metrics(*args, cross_camera=True, ranks=(1, 2))
    assert cross.map == pytest.approx(0.5, abs=1e-12)
    assert cross.cmc == {1: 0.0, 2: 1.0}
    plain = instance_metrics(*args, cross_camera=False, ranks=(1, 2))
    assert plain.map == pytest.approx(float(Fraction(34, 45)), abs=1e-12)
    assert plain.cmc == {1: 1.0, 2: 1.0}


def test_query_with_only_same_camera_positives_is_skipped() -> None:
    # Query 0 (item 5, cam 2) has one positive, also from cam 2: junk, so it is skipped.
    # Query 1 (item 6, cam 2) keeps its cam-3 positive; cosines to (0, 1) grow with the angle,
    # so the order is [9, 6, 5] and the positive ranks 2.
    args = (np.array([[1.0, 0.0], [0.0, 1.0]]), [5, 6], [2, 2], _angles([0.1, 0.2, 0.3]))
    gallery_labels = ([5, 6, 9], [2, 3, 2])
    cross = instance_metrics(*args, *gallery_labels, cross_camera=True)
    assert cross.num_valid_queries == 1
    assert cross.map == pytest.approx(0.5, abs=1e-12)
    assert instance_metrics(*args, *gallery_labels, cross_camera=False).num_valid_queries == 2


def test_ties_keep_gallery_order() -> None:
    # Three identical gallery rows: the positive's rank is its position among them.
    gallery = np.tile([[0.6, 0.8]], (3, 1))
    for position in range(3):
        items = np.array([0, 0, 0])
        items[position] = 1
        result = instance_metrics(
            np.array([[1.0, 0.0]]), [1], [0], gallery, items, [1, 1, 1], cross_camera=False
        )
        assert result.map == pytest.approx(1.0 / (position + 1), abs=1e-12)


@pytest.mark.parametrize("exact_ties", [False, True])
@pytest.mark.parametrize("cross_camera", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_matches_loop_oracle(seed: int, cross_camera: bool, exact_ties: bool) -> None:
    q, qi, qc, g, gi, gc = random_problem(np.random.default_rng(seed), exact_ties=exact_ties)
    ranks = (1, 2, 5)
    result = instance_metrics(
        q.astype(np.float32),
        qi,
        qc,
        g.astype(np.float32),
        gi,
        gc,
        cross_camera=cross_camera,
        ranks=ranks,
    )
    want_map, want_cmc, want_valid = oracle_instance(q, qi, qc, g, gi, gc, cross_camera, ranks)
    assert result.num_valid_queries == want_valid
    assert result.map == pytest.approx(want_map, abs=1e-9)
    assert result.cmc == pytest.approx(want_cmc, abs=1e-12)


def test_many_queries_span_several_blocks() -> None:
    # More queries than one ranking block (256) exercises the block loop's bookkeeping.
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(20, 6))
    qi, gi = rng.integers(0, 20, 300), rng.integers(0, 20, 60)
    q = centers[qi] + rng.normal(size=(300, 6))
    g = centers[gi] + rng.normal(size=(60, 6))
    qc, gc = rng.integers(0, 2, 300), rng.integers(0, 2, 60)
    result = instance_metrics(q, qi, qc, g, gi, gc, cross_camera=True)
    want_map, want_cmc, want_valid = oracle_instance(q, qi, qc, g, gi, gc, True, (1, 5, 10))
    assert (result.num_valid_queries, result.cmc) == (want_valid, pytest.approx(want_cmc))
    assert result.map == pytest.approx(want_map, abs=1e-9)


def test_string_and_integer_labels_agree() -> None:
    q, qi, qc, g, gi, gc = random_problem(np.random.default_rng(3), exact_ties=False)
    as_int = instance_metrics(q, qi, qc, g, gi, gc, cross_camera=True)
    as_str = instance_metrics(
        q, [f"item{v}" for v in qi], qc, g, [f"item{v}" for v in gi], gc, cross_camera=True
    )
    assert as_int == as_str


def test_no_valid_query_gives_zeros() -> None:
    result = instance_metrics(
        np.eye(2), [1, 2], [0, 0], np.eye(2), [3, 4], [0, 0], cross_camera=False
    )
    assert (result.map, result.cmc[1], result.num_valid_queries) == (0.0, 0.0, 0)


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        instance_metrics(np.eye(2), [1], [0, 0], np.eye(2), [1, 2], [0, 0], cross_camera=False)
    with pytest.raises(ValueError):
        instance_metrics(
            np.eye(2), [1, 2], [0, 0], np.eye(3), [1, 2, 3], [0] * 3, cross_camera=False
        )


def test_accuracy_at_k_hand_computed() -> None:
    # Query 0's item first appears at rank 3, query 1's at rank 1; query 2's item is absent
    # from the gallery and is not counted.
    gallery = _angles([0.1, 0.2, 0.3, 0.4])
    acc = accuracy_at_k(
        np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]),
        ["c", "a", "zzz"],
        gallery,
        ["a", "b", "c", "c"],
        ks=(1, 2, 3),
    )
    assert acc == {1: 0.5, 2: 0.5, 3: 1.0}


@pytest.mark.parametrize("exact_ties", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_accuracy_at_k_matches_loop_oracle(seed: int, exact_ties: bool) -> None:
    q, qi, _, g, gi, _ = random_problem(np.random.default_rng(100 + seed), exact_ties=exact_ties)
    ks = (1, 3, 10, 20)
    assert accuracy_at_k(q, qi, g, gi, ks=ks) == pytest.approx(
        oracle_accuracy(q, qi, g, gi, ks), abs=1e-12
    )
