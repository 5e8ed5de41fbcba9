"""Suspect images against a brute force that rebuilds every left-out centroid from the item's
other images and the spread from its images' cosines."""

from __future__ import annotations

import numpy as np
import pytest

from index.match_confidence import PRIOR_PAIR_COSINE
from index.suspect_images import NO_OTHER, SuspectRule, judge_images


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def oracle(
    images: list[np.ndarray], i: int, other: float, rule: SuspectRule
) -> tuple[float, float, bool, bool]:
    """own, z, closer, outside for image i of an item, from the definitions."""
    rest = [e for j, e in enumerate(images) if j != i]
    if not rest:
        return float("nan"), float("nan"), False, False
    c = unit(np.sum(rest, axis=0))
    own = float(unit(images[i]) @ c)
    n = len(rest)
    spread = float(np.mean([unit(e) @ c for e in rest]))
    rho = (n * spread * spread - 1) / (n - 1) if n >= 2 else rule.prior_pair_cosine
    rho = min(max(rho, 0.05), 0.999)
    mu = n * rho / np.sqrt(n * (1 + (n - 1) * rho))
    z = (own - mu) / (1 - mu)
    return own, z, other - own > rule.margin, z < rule.min_z


@pytest.mark.parametrize("seed", range(5))
def test_each_image_is_judged_as_the_definitions_say(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dim = 16
    rule = SuspectRule(margin=float(rng.uniform(-0.2, 0.4)), min_z=float(rng.uniform(-6, 0)))
    items = []
    # One and two images (no centroid without it; the prior for the rest) always among them.
    for n in (1, 2, *rng.integers(1, 7, size=4).tolist()):
        centre = rng.normal(size=dim)
        items.append(
            [
                centre + rng.normal(scale=rng.uniform(0.2, 2), size=dim) * rng.uniform(0.5, 3)
                for _ in range(n)
            ]
        )
    rows, sums, unit_sums, counts, others, expected = [], [], [], [], [], []
    for images in items:
        s, us = np.sum(images, axis=0), np.sum([unit(e) for e in images], axis=0)
        for i, e in enumerate(images):
            other = float(rng.uniform(-1, 1)) if rng.random() < 0.8 else NO_OTHER
            rows.append(e)
            sums.append(s)
            unit_sums.append(us)
            counts.append(len(images))
            others.append(other)
            expected.append(oracle(images, i, other, rule))
    v = judge_images(np.array(rows, np.float32), np.array(sums), np.array(unit_sums),
                     np.array(counts), np.array(others), rule)  # fmt: skip
    # float32 embeddings vs the float64 oracle.
    np.testing.assert_allclose(v.own, [x[0] for x in expected], atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(v.z, [x[1] for x in expected], rtol=1e-4, atol=1e-4, equal_nan=True)
    assert v.closer_to_other.tolist() == [x[2] for x in expected]
    assert v.outside_spread.tolist() == [x[3] for x in expected]
    assert v.suspect.tolist() == [x[2] or x[3] for x in expected]
    assert not v.suspect[np.array(counts) == 1].any()
    assert v.suspect.any() and not v.suspect.all()  # the seeds give both verdicts


def test_a_planted_image_is_flagged_and_its_item_mates_are_not() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=32), rng.normal(size=32)
    item_a = [a + 0.2 * rng.normal(size=32) for _ in range(4)]
    stray = b + 0.2 * rng.normal(size=32)  # a photo of b enrolled under a
    images = [*item_a, stray]
    s, us = np.sum(images, axis=0), np.sum([unit(e) for e in images], axis=0)
    c_b = unit(np.sum([b + 0.2 * rng.normal(size=32) for _ in range(4)], axis=0))
    others = [float(unit(e) @ c_b) for e in images]
    v = judge_images(np.array(images, np.float32), np.tile(s, (5, 1)), np.tile(us, (5, 1)),
                     np.full(5, 5), np.array(others))  # fmt: skip
    assert v.suspect.tolist() == [False] * 4 + [True]
    assert v.closer_to_other[4] and v.outside_spread[4]


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError):
        judge_images(
            np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((2, 3)), np.ones(2, int), np.zeros(2)
        )
    with pytest.raises(ValueError):
        judge_images(
            np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(2, int), np.zeros(2)
        )


def test_the_prior_is_the_match_rules() -> None:
    assert SuspectRule().prior_pair_cosine == PRIOR_PAIR_COSINE
