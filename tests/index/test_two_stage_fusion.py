"""index.two_stage_fusion against a brute-force oracle written here: per item a Python loop
over its images for the best one, the fused score by the documented formula, and the answer
order by ``sorted`` on ``(-score, item_id)``."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from index.two_stage_fusion import RankMode, best_images, rank_candidates

D = 16


def unit_rows(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    x = rng.normal(size=(n, D))
    out: npt.NDArray[np.float32] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def oracle(
    query: npt.NDArray[np.float32],
    ids: list[str],
    centroid: npt.NDArray[np.float32],
    images: list[npt.NDArray[np.float16]],
    alpha: float,
    mode: RankMode,
) -> list[tuple[str, int, float, float]]:
    """``[(item_id, best_image, image_score, fused)]`` in answer order."""
    rows = []
    for item, c, imgs in zip(ids, centroid, images, strict=True):
        scores = [float(np.dot(row.astype(np.float64), query.astype(np.float64))) for row in imgs]
        best = max(range(len(scores)), key=lambda j: (scores[j], -j))  # first of equal maxima
        fused = alpha * float(c) + (1 - alpha) * scores[best]
        rows.append((item, best, scores[best], fused, float(c)))
    key = 3 if mode is RankMode.TWO_STAGE else 4
    rows.sort(key=lambda r: (-r[key], r[0]))
    return [(r[0], r[1], r[2], r[3]) for r in rows]


@pytest.mark.parametrize("mode", [RankMode.TWO_STAGE, RankMode.CENTROID])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.75, 1.0])
@pytest.mark.parametrize("seed", range(5))
def test_ranking_equals_the_oracle(seed: int, alpha: float, mode: RankMode) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 12))
    query = unit_rows(rng, 1)[0]
    images = [unit_rows(rng, int(rng.integers(1, 6))).astype(np.float16) for _ in range(m)]
    ids = [f"item-{int(v)}" for v in rng.permutation(100)[:m]]
    centroid = rng.uniform(-1, 1, size=m).astype(np.float32)
    got = rank_candidates(query, ids, centroid, images, mode=mode, alpha=alpha)
    want = oracle(query, ids, centroid, images, alpha, mode)
    assert [ids[i] for i in got.items] == [w[0] for w in want]
    assert got.best_image.tolist() == [w[1] for w in want]
    np.testing.assert_allclose(got.image_score, [w[2] for w in want], atol=1e-5)
    np.testing.assert_allclose(got.fused_score, [w[3] for w in want], atol=1e-5)
    np.testing.assert_array_equal(got.centroid_score, centroid[got.items])
    assert got.items.dtype == np.int64 and got.image_score.dtype == np.float32


def test_an_item_with_one_close_image_moves_up() -> None:
    """The point of the second stage: 'b' is behind 'a' on the centroid, yet one of its images
    is the query itself; at alpha 0.5 it leads, in centroid mode it stays second."""
    rng = np.random.default_rng(3)
    query = unit_rows(rng, 1)[0]
    a_images = unit_rows(rng, 3).astype(np.float16)
    b_images = np.concatenate([unit_rows(rng, 2), query[None, :]]).astype(np.float16)
    centroid = np.array([0.70, 0.60], dtype=np.float32)
    two = rank_candidates(query, ["a", "b"], centroid, [a_images, b_images], alpha=0.5)
    assert two.items.tolist() == [1, 0]
    assert two.best_image[0] == 2 and two.image_score[0] == pytest.approx(1.0, abs=1e-3)
    one = rank_candidates(
        query, ["a", "b"], centroid, [a_images, b_images], mode=RankMode.CENTROID, alpha=0.5
    )
    assert one.items.tolist() == [0, 1]
    assert one.best_image[1] == 2  # evidence reported in centroid mode too


@pytest.mark.parametrize("mode", [RankMode.TWO_STAGE, RankMode.CENTROID])
def test_equal_scores_are_ordered_by_item_id(mode: RankMode) -> None:
    rng = np.random.default_rng(9)
    query = unit_rows(rng, 1)[0]
    shared = unit_rows(rng, 2).astype(np.float16)
    other = unit_rows(rng, 2).astype(np.float16)
    ids = ["m", "c", "x", "a"]
    # m, c and a: identical images and centroid score, so identical fused scores; x is below.
    centroid = np.array([0.5, 0.5, -0.9, 0.5], dtype=np.float32)
    got = rank_candidates(query, ids, centroid, [shared, shared, other, shared], mode=mode)
    assert [ids[i] for i in got.items][:3] == ["a", "c", "m"]
    assert ids[got.items[3]] == "x"


def test_first_of_equal_best_images_wins() -> None:
    rng = np.random.default_rng(4)
    query = unit_rows(rng, 1)[0]
    row = query[None, :] * 0.8 + unit_rows(rng, 1) * 0.2
    row /= np.linalg.norm(row)
    # The opposite of the best first, then the best twice.
    imgs = np.concatenate([-row, row, row]).astype(np.float16)
    best, score = best_images(query, [imgs])
    assert best.tolist() == [1]
    assert score[0] == pytest.approx(float(row[0].astype(np.float16) @ query), abs=1e-5)


def test_alpha_one_two_stage_is_the_centroid_order() -> None:
    rng = np.random.default_rng(5)
    query = unit_rows(rng, 1)[0]
    images = [unit_rows(rng, 3).astype(np.float16) for _ in range(8)]
    ids = [f"i{k}" for k in range(8)]
    centroid = rng.uniform(0, 1, size=8).astype(np.float32)
    two = rank_candidates(query, ids, centroid, images, alpha=1.0)
    one = rank_candidates(query, ids, centroid, images, mode=RankMode.CENTROID)
    assert two.items.tolist() == one.items.tolist() == np.argsort(-centroid).tolist()


def test_no_candidates() -> None:
    got = rank_candidates(np.ones(D, dtype=np.float32) / 4, [], np.zeros(0, np.float32), [])
    assert got.items.shape == (0,) and got.fused_score.shape == (0,)


def test_bad_inputs_are_refused() -> None:
    rng = np.random.default_rng(6)
    q = unit_rows(rng, 1)[0]
    imgs = [unit_rows(rng, 2).astype(np.float16)]
    with pytest.raises(ValueError, match="item ids"):
        rank_candidates(q, ["a", "b"], np.zeros(2, np.float32), imgs)
    with pytest.raises(ValueError, match="alpha"):
        rank_candidates(q, ["a"], np.zeros(1, np.float32), imgs, alpha=1.5)
    with pytest.raises(ValueError, match="at least one image"):
        rank_candidates(q, ["a"], np.zeros(1, np.float32), [np.zeros((0, D), np.float16)])
    with pytest.raises(ValueError, match="query"):
        rank_candidates(q[:4], ["a"], np.zeros(1, np.float32), imgs)
