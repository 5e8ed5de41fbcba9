"""Centroid-level evaluation against a plain-loop oracle and hand-built cases."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from model.evaluation import centroid_evaluation
from model.evaluation.centroid_evaluation import centroid_metrics
from model.evaluation.ranking_metrics import instance_metrics


def _unit(v: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _centroid(rows: list[Sequence[float]]) -> list[float]:
    return _unit([sum(col) for col in zip(*rows, strict=True)])


def oracle_ranks(q, qi, qc, g, gi, gc, gd, cross_camera):
    """Per query, the 1-based rank of its item among gallery items, or None if skipped.

    Items: each labelled item once (tie order: label order), then each distractor image alone
    (tie order: after labelled items, by gallery index).
    """
    members: dict[tuple[int, object], list[int]] = {}
    for j in range(len(g)):
        key = (1, j) if gd[j] else (0, gi[j])
        members.setdefault(key, []).append(j)
    full = {key: _centroid([g[j] for j in rows]) for key, rows in members.items()}
    out = []
    for a in range(len(q)):
        own = (0, qi[a])
        if own not in members:
            out.append(None)
            continue
        rows = members[own]
        if cross_camera:
            rows = [j for j in rows if gc[j] != qc[a]]
        if not rows:
            out.append(None)
            continue
        qu = _unit(q[a])
        own_score = _dot(qu, _centroid([g[j] for j in rows]))
        beaten_by = 0
        for key, centroid in full.items():
            if key == own:
                continue
            score = _dot(qu, centroid)
            if score > own_score or (score == own_score and key < own):
                beaten_by += 1
        out.append(1 + beaten_by)
    return out


def random_problem(rng: np.random.Generator, *, exact_ties: bool, n_items: int = 9):
    """Queries ask for items 0..5; items 6.. are gallery-only; some images are distractors
    labelled -1 (and a few labelled like a real item, which the flag must override).

    With ``exact_ties`` all images of an item (and each distractor) are one ±0.5-on-4-of-8-axes
    vector times powers of two, so centroids and scores are exact and often tie.
    """
    n_q, n_g, dim = 16, 45, 8
    qi = rng.integers(0, 6, n_q)
    gi = rng.integers(0, n_items, n_g)
    gd = rng.random(n_g) < 0.2
    gi[gd & (rng.random(n_g) < 0.7)] = -1
    qc, gc = rng.integers(0, 3, n_q), rng.integers(0, 3, n_g)
    if exact_ties:
        pool = np.zeros((4, dim))
        for row in pool:
            row[rng.choice(dim, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
        item_vec = pool[rng.integers(0, 4, n_items)]
        g = np.where(gd[:, None], pool[rng.integers(0, 4, n_g)], item_vec[gi])
        g = g * 2.0 ** rng.integers(-2, 3, n_g)[:, None]
        q = pool[rng.integers(0, 4, n_q)] * 2.0 ** rng.integers(-2, 3, n_q)[:, None]
        return q, qi, qc, g, gi, gc, gd
    centers = rng.normal(size=(n_items, dim))
    g = np.where(gd[:, None], 0.0, centers[gi]) + rng.normal(size=(n_g, dim))
    q = centers[qi] + rng.normal(size=(n_q, dim))
    return q, qi, qc, g, gi, gc, gd


def _expect(ranks: list[int | None], cmc_ks: Sequence[int]):
    valid = [r for r in ranks if r is not None]
    mrr = sum(1 / r for r in valid) / len(valid)
    return mrr, {k: sum(r <= k for r in valid) / len(valid) for k in cmc_ks}, len(valid)


@pytest.mark.parametrize("exact_ties", [False, True])
@pytest.mark.parametrize("cross_camera", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_matches_loop_oracle(seed: int, cross_camera: bool, exact_ties: bool) -> None:
    q, qi, qc, g, gi, gc, gd = random_problem(np.random.default_rng(seed), exact_ties=exact_ties)
    result = centroid_metrics(
        q, qi, qc, g, gi, gc, gd, cross_camera=cross_camera, ranks=(1, 2, 4), accuracy_ks=(1, 3)
    )
    ranks = oracle_ranks(q, qi, qc, g, gi, gc, gd, cross_camera)
    want_map, want_cmc, want_valid = _expect(ranks, (1, 2, 3, 4))
    assert result.num_valid_queries == want_valid
    assert result.num_skipped_queries == len(q) - want_valid
    assert result.num_items == len(set(gi[~gd].tolist())) + int(gd.sum())
    assert result.map == pytest.approx(want_map, abs=1e-9)
    assert result.cmc == {k: pytest.approx(want_cmc[k], abs=1e-12) for k in (1, 2, 4)}
    assert result.accuracy_at_k == {k: pytest.approx(want_cmc[k], abs=1e-12) for k in (1, 3)}


@pytest.mark.parametrize("cross_camera", [False, True])
def test_second_pass_ranks_items_beyond_first_search_depth(cross_camera: bool) -> None:
    # 3 × FIRST_PASS_K items and queries that are pure noise: most own items rank past the
    # first search, so their exact rank comes from the full second search.
    rng = np.random.default_rng(11)
    n_items = 3 * centroid_evaluation.FIRST_PASS_K
    gi = np.repeat(np.arange(n_items), 2)
    gc = np.tile([0, 1], n_items)
    g = rng.normal(size=(gi.shape[0], 5))
    qi, qc = rng.integers(0, n_items, 30), rng.integers(0, 2, 30)
    q = rng.normal(size=(30, 5))
    gd = np.zeros(gi.shape[0], dtype=bool)
    ranks = oracle_ranks(q, qi, qc, g, gi, gc, gd, cross_camera)
    assert max(r for r in ranks if r is not None) > centroid_evaluation.FIRST_PASS_K
    want_map, want_cmc, _ = _expect(ranks, (1, 5, 10))
    result = centroid_metrics(q, qi, qc, g, gi, gc, gd, cross_camera=cross_camera)
    assert result.map == pytest.approx(want_map, abs=1e-12)
    assert result.cmc == pytest.approx(want_cmc, abs=1e-12)


def test_map_equals_mrr_and_instance_map_over_centroids() -> None:
    # One relevant document per query: AP = 1/rank. Feeding the centroids to the instance
    # metric as a gallery (one image per item) must give the same mAP and CMC.
    q, qi, qc, g, gi, gc, gd = random_problem(np.random.default_rng(5), exact_ties=False)
    gd[:] = False  # every image labelled: the item centroids are easy to rebuild here
    items = sorted(set(gi.tolist()))
    centroids = np.array([_centroid([g[j] for j in np.flatnonzero(gi == it)]) for it in items])
    result = centroid_metrics(q, qi, qc, g, gi, gc, gd, cross_camera=False)
    over_centroids = instance_metrics(
        q, qi, qc, centroids, items, np.zeros(len(items), int), cross_camera=False
    )
    ranks = [r for r in oracle_ranks(q, qi, qc, g, gi, gc, gd, False) if r is not None]
    assert result.map == pytest.approx(sum(1 / r for r in ranks) / len(ranks), abs=1e-12)
    assert result.map == pytest.approx(over_centroids.map, abs=1e-9)
    assert result.cmc == pytest.approx(over_centroids.cmc, abs=1e-12)
    assert result.num_valid_queries == over_centroids.num_valid_queries


def _e(*v: float) -> list[float]:
    return list(v)


def test_query_whose_item_has_only_same_camera_images_is_skipped() -> None:
    q = np.array([_e(1, 0, 0), _e(0, 1, 0)])
    g = np.array([_e(1, 0, 0), _e(0, 1, 0), _e(0, 1, 0.2)])
    args = (q, ["a", "b"], [1, 1], g, ["a", "b", "b"], [1, 1, 2], [False] * 3)
    cross = centroid_metrics(*args, cross_camera=True)
    # "a" has a cam-1 image only -> skipped; "b" keeps its cam-2 image and ranks first.
    assert (cross.num_valid_queries, cross.num_skipped_queries, cross.map) == (1, 1, 1.0)
    plain = centroid_metrics(*args, cross_camera=False)
    assert (plain.num_valid_queries, plain.num_skipped_queries, plain.map) == (2, 0, 1.0)


def test_query_item_absent_from_gallery_is_skipped() -> None:
    result = centroid_metrics(
        np.eye(3)[:2],
        ["a", "ghost"],
        [0, 0],
        np.eye(3),
        ["a", "b", "c"],
        [1, 1, 1],
        [False] * 3,
        cross_camera=True,
    )
    assert (result.num_valid_queries, result.num_skipped_queries, result.map) == (1, 1, 1.0)


def test_cross_camera_own_centroid_uses_only_other_cameras() -> None:
    # Item "a": a cam-1 image on the query's direction and a cam-2 image at 60°, so its full
    # centroid is at 30°; item "b" sits at 45°. Cross-camera, the cam-1 query sees "a" through
    # its cam-2 image only (cos 60° < cos 45°: rank 2); otherwise "a" is at 30° (rank 1).
    g = np.array([_e(1, 0), _e(0.5, math.sqrt(3) / 2), _e(1, -1)])
    args = (np.array([_e(1, 0)]), ["a"], [1], g, ["a", "a", "b"], [1, 2, 1], [False] * 3)
    assert centroid_metrics(*args, cross_camera=True).map == pytest.approx(0.5)
    assert centroid_metrics(*args, cross_camera=False).map == pytest.approx(1.0)


def test_each_distractor_image_is_its_own_item() -> None:
    # Two distractors, both labelled "junk" and both closer to the query than its item. As
    # separate items both beat it (rank 3); merged into one "junk" item it would rank 2.
    g = np.array([_e(0.5, 1), _e(1, 0.2), _e(1, -0.2)])
    result = centroid_metrics(
        np.array([_e(1, 0)]),
        ["a"],
        [0],
        g,
        ["a", "junk", "junk"],
        [1, 1, 1],
        [False, True, True],
        cross_camera=True,
    )
    assert result.num_items == 3
    assert result.map == pytest.approx(1 / 3)


def test_distractor_flag_overrides_a_real_label() -> None:
    # The distractor carries item "a"'s label; if it were pooled with "a", the centroid would
    # move onto the query and rank first. As a distractor it is a negative that beats "a".
    g = np.array([_e(0.5, 1), _e(1, 0)])
    result = centroid_metrics(
        np.array([_e(1, 0)]),
        ["a"],
        [0],
        g,
        ["a", "a"],
        [1, 1],
        [False, True],
        cross_camera=False,
    )
    assert (result.num_items, result.map) == (2, pytest.approx(0.5))


def test_gallery_items_without_queries_stay_as_negatives() -> None:
    # Item "z" has no query but sits closer to the query than its own item "a".
    g = np.array([_e(0.5, 1), _e(1, 0.1), _e(-1, 0)])
    result = centroid_metrics(
        np.array([_e(1, 0)]),
        ["a"],
        [0],
        g,
        ["a", "z", "y"],
        [1, 1, 1],
        [False] * 3,
        cross_camera=True,
    )
    assert result.num_items == 3
    assert result.map == pytest.approx(0.5)
    assert result.cmc[1] == 0.0


@pytest.mark.parametrize(("other", "want_rank"), [("a", 2), ("c", 1)])
def test_equal_scores_rank_by_item_label(other: str, want_rank: int) -> None:
    # The own item "b" (cross-camera: its cam-2 image) and another item score exactly the same;
    # the smaller label goes first. The own item's full centroid (its cam-1 image, which would
    # also tie) must not count against it.
    g = np.array([_e(0.6, 0.8), _e(0.6, 0.8), _e(0.6, -0.8)])
    result = centroid_metrics(
        np.array([_e(1, 0)]),
        ["b"],
        [1],
        g,
        ["b", "b", other],
        [1, 2, 1],
        [False] * 3,
        cross_camera=True,
    )
    assert result.map == pytest.approx(1 / want_rank)


def test_integer_and_string_labels_agree() -> None:
    q, qi, qc, g, gi, gc, gd = random_problem(np.random.default_rng(2), exact_ties=False)
    as_int = centroid_metrics(q, qi, qc, g, gi, gc, gd, cross_camera=True)
    as_str = centroid_metrics(
        q,
        [f"p{v:03d}" for v in qi],
        qc,
        g,
        [f"p{v + 1:03d}" if v < 0 else f"p{v:03d}" for v in gi],
        gc,
        gd,
        cross_camera=True,
    )
    assert as_int == as_str


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        centroid_metrics(
            np.eye(2), [1, 2], [0, 0], np.eye(2), [1, 2], [0, 0], [False], cross_camera=False
        )
    with pytest.raises(ValueError):
        centroid_metrics(
            np.eye(2), [1, 2], [0, 0], np.zeros((0, 2)), [], [], [], cross_camera=False
        )
