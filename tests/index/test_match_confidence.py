"""index.match_confidence against oracles written here: items built from equiangular unit
images (every pair at cosine exactly ``rho``), where the mean pairwise cosine and a new image's
cosine to the centroid are known in closed form and also computed by brute force; the ratio
test's runner-up found by a loop over the other results."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from index.match_confidence import (
    NO_OTHER_SCORE,
    RATIO_EPS,
    MatchRule,
    best_other,
    distance_ratio,
    expected_view_cosine,
    input_std,
    is_degenerate,
    item_spread,
    match_confidence,
    norm_fraction,
    pair_cosine,
    uniform_cosine,
    uniform_inputs,
)

D = 24


def equiangular(n: int, rho: float, seed: int) -> npt.NDArray[np.float64]:
    """``(n + 1, D)`` unit rows, every pair at cosine ``rho``: ``sqrt(rho) m + sqrt(1-rho) e_j``
    with ``m, e_j`` orthonormal (random rotation). Row ``n`` is a 'new photo' of the item."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(D, D)))
    m, e = q[:, 0], q[:, 1 : n + 2].T
    rows: npt.NDArray[np.float64] = np.sqrt(rho) * m + np.sqrt(1 - rho) * e
    return rows


def unit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


@pytest.mark.parametrize(("n", "rho"), [(2, 0.5), (3, 0.8), (5, 0.9), (9, 0.3), (4, 0.99)])
def test_spread_gives_the_pair_cosine_and_a_new_photos_cosine(n: int, rho: float) -> None:
    rows = equiangular(n, rho, seed=n)
    images, new = rows[:n], rows[n]
    c = unit(images.sum(axis=0))
    spread = item_spread(images.sum(axis=0), c, n)
    # Brute force: the mean cosine to the centroid, the mean pairwise cosine.
    assert spread == pytest.approx(float(np.mean(images @ c)), abs=1e-12)
    gram = images @ images.T
    brute_rho = (gram.sum() - n) / (n * (n - 1))
    got_rho = pair_cosine(np.array([n]), np.array([spread]), prior=0.0)
    assert got_rho[0] == pytest.approx(brute_rho, abs=1e-9)
    mu = expected_view_cosine(np.array([n]), np.array([spread]), prior=0.0)
    assert mu[0] == pytest.approx(float(new @ c), abs=1e-9)


def test_single_image_items_use_the_prior() -> None:
    mu = expected_view_cosine(np.array([1, 1]), np.array([1.0, 1.0]), prior=0.8)
    # One image: a new photo's cosine to it is the pair cosine itself.
    np.testing.assert_allclose(mu, [0.8, 0.8])
    rows = equiangular(1, 0.8, seed=2)
    assert float(rows[0] @ rows[1]) == pytest.approx(mu[0])


def oracle_confidence(
    cs: list[float], im: list[float], count: list[int], spread: list[float], rule: MatchRule
) -> list[float]:
    """The docstring's rule, one result at a time, the runner-up by a loop over the others."""
    out = []
    for j in range(len(cs)):
        n, s = count[j], spread[j]
        r = rule.prior_pair_cosine if n == 1 else (n * s * s - 1) / (n - 1)
        mu = n * r / np.sqrt(n * (1 + (n - 1) * r))
        z = ((cs[j] + im[j]) / 2 - mu) / (1 - mu)
        others = [i for i in range(len(cs)) if i != j]
        oc = max(cs[i] for i in others) if others else NO_OTHER_SCORE
        oi = max(im[i] for i in others) if others else NO_OTHER_SCORE
        rc = np.log(max(1 - oc, RATIO_EPS) / max(1 - cs[j], RATIO_EPS))
        ri = np.log(max(1 - oi, RATIO_EPS) / max(1 - im[j], RATIO_EPS))
        logit = rule.slope * z + rule.centroid_ratio_weight * rc
        logit += rule.image_ratio_weight * ri + rule.offset
        out.append(float(1 / (1 + np.exp(-logit))))
    return out


def test_confidence_is_the_documented_sigmoid() -> None:
    rule = MatchRule(prior_pair_cosine=0.85, slope=2.0, offset=0.5, centroid_ratio_weight=0.7,
                     image_ratio_weight=1.3)  # fmt: skip
    count = [4, 1, 3, 2]
    spread = [0.95, 1.0, 0.9, 0.97]
    cs = [0.9, 0.7, 0.95, 0.9]  # a tie on the centroid score between results 0 and 3
    im = [0.92, 0.8, 0.9, 1.0]  # an identical image: distance 0, clamped
    args = (np.array(cs, dtype=np.float32), np.array(im, dtype=np.float32), np.array(count),
            np.array(spread))  # fmt: skip
    got = match_confidence(*args, rule=rule)
    want = oracle_confidence(*(list(map(float, a)) for a in args[:2]), count, spread, rule)
    np.testing.assert_allclose(got.confidence, want, rtol=1e-6)
    assert got.match.tolist() == [w >= 0.5 for w in want]
    assert got.confidence.dtype == np.float32
    # One result alone: its runner-up is NO_OTHER_SCORE.
    alone = match_confidence(*(a[1:2] for a in args), rule=rule)
    np.testing.assert_allclose(
        alone.confidence, oracle_confidence([0.7], [0.8], [1], [1.0], rule), rtol=1e-6
    )


def test_the_runner_up_is_the_best_other_result() -> None:
    rng = np.random.default_rng(4)
    for m in (1, 2, 3, 7):
        scores = np.round(rng.uniform(-1, 1, m), 1)  # rounded: ties
        brute = [max((scores[i] for i in range(m) if i != j), default=NO_OTHER_SCORE)
                 for j in range(m)]  # fmt: skip
        np.testing.assert_array_equal(best_other(scores), brute)


def test_explicit_runner_ups_judge_each_row_on_its_own() -> None:
    """Rows of different queries (the bench's pooled top results) with their own runner-ups
    get what each would get as the top of its own query."""
    rule = MatchRule()
    rows = [(0.9, 0.93, 4, 0.95, 0.85, 0.88), (0.7, 0.75, 1, 1.0, 0.4, 0.5)]
    cs, im, n, sp, oc, oi = (np.array(c) for c in zip(*rows, strict=True))
    got = match_confidence(cs, im, n, sp, other_centroid=oc, other_image=oi, rule=rule)
    for j, (c, i, nn, s, o_c, o_i) in enumerate(rows):
        # The same row as the top result of a query whose second result holds the runner-ups.
        alone = match_confidence(np.array([c, o_c]), np.array([i, o_i]), np.array([nn, 2]),
                                 np.array([s, 0.9]), rule=rule)  # fmt: skip
        assert got.confidence[j] == pytest.approx(alone.confidence[0], rel=1e-6)


def test_a_close_runner_up_lowers_the_confidence() -> None:
    """The hard negative: the same top scores and item, but another item (a neighbour cut from
    the same photo) scores nearly as high: less confident than with an unrelated runner-up."""
    rule = MatchRule()
    count, spread = np.array([4, 4]), np.array([0.95, 0.95])
    far = match_confidence(np.array([0.9, 0.5]), np.array([0.92, 0.55]), count, spread, rule=rule)
    near = match_confidence(np.array([0.9, 0.88]), np.array([0.92, 0.91]), count, spread, rule=rule)
    assert near.confidence[0] < far.confidence[0]
    assert np.all(distance_ratio(np.array([0.9]), np.array([0.88])) > 0)
    # A result below another has a negative ratio, whatever its own score.
    assert np.all(distance_ratio(np.array([0.88]), np.array([0.9])) < 0)
    # An identical image (cosine 1, or a hair above through rounding) stays finite.
    assert np.isfinite(distance_ratio(np.array([1.0, 1.0000001]), np.array([0.5, 0.5]))).all()


def test_the_threshold_follows_the_items_spread() -> None:
    """One score, two items (each the only result of its query): it matches the item with
    varied photos (its own photos score about that) and not the tight item (its own photos
    score near 1)."""
    rule = MatchRule()
    tight = equiangular(4, 0.97, seed=1)[:4]
    loose = equiangular(4, 0.6, seed=1)[:4]
    verdicts = []
    for x in (tight, loose):
        spread = np.array([item_spread(x.sum(0), unit(x.sum(0)), 4)])
        score = np.array([0.8], dtype=np.float32)
        verdicts.append(match_confidence(score, score, np.array([4]), spread, rule=rule))
    assert [bool(v.match[0]) for v in verdicts] == [False, True]
    assert verdicts[0].confidence[0] < verdicts[1].confidence[0]


def test_confidence_rises_with_the_score() -> None:
    scores = np.linspace(-1, 1, 41).astype(np.float32)
    n = np.full(41, 3)
    spread = np.full(41, 0.93)
    other = np.full(41, 0.3)  # each judged against the same runner-up
    rule = MatchRule(slope=3.0, offset=0.0)
    conf = match_confidence(scores, scores, n, spread, other_centroid=other, other_image=other,
                            rule=rule).confidence  # fmt: skip
    # At score 1 z is exactly 1 (1 - mu over 1 - mu), both ratios log(0.7 / EPS).
    ratio = np.log(0.7 / RATIO_EPS) * (rule.centroid_ratio_weight + rule.image_ratio_weight)
    assert np.all(np.diff(conf) >= 0) and conf[0] < 1e-6
    assert conf[-1] == pytest.approx(1 / (1 + np.exp(-(3.0 + ratio))), rel=1e-6)
    assert np.all((conf >= 0) & (conf <= 1))


def test_a_degenerate_query_matches_nothing() -> None:
    one = np.ones(3, dtype=np.float32)
    got = match_confidence(one, one, np.array([2, 2, 1]), np.ones(3), degenerate_query=True)
    assert got.confidence.tolist() == [0.0, 0.0, 0.0] and not got.match.any()


def test_uniform_inputs() -> None:
    x = uniform_inputs(5, 7)
    assert x.shape == (27, 3, 5, 7) and x.dtype == np.uint8
    colours = {tuple(int(v) for v in img[:, 0, 0]) for img in x}
    assert len(colours) == 27 and (128, 128, 128) in colours and (0, 0, 0) in colours
    assert all((img == img[:, :1, :1]).all() for img in x)  # each uniform


def test_uniform_cosine_and_the_gate() -> None:
    rng = np.random.default_rng(0)
    refs = rng.normal(size=(5, D)) * 7  # raw, as the model outputs them
    near = refs[3] * 0.2 + rng.normal(size=D) * 0.05
    far = rng.normal(size=D)
    brute = [max(float(unit(q) @ unit(r)) for r in refs) for q in (near, far)]
    assert uniform_cosine(near, refs) == pytest.approx(brute[0])
    assert uniform_cosine(far, refs) == pytest.approx(brute[1])
    typical = float(np.median(np.linalg.norm(refs, axis=1)))
    far *= typical / np.linalg.norm(far)  # as long as a typical reference
    near *= typical / np.linalg.norm(near)
    assert is_degenerate(near, refs) and not is_degenerate(far, refs)
    assert is_degenerate(np.zeros(D), refs)  # nothing to compare: degenerate
    gate = MatchRule(max_uniform_cosine=uniform_cosine(far, refs))
    assert is_degenerate(far, refs, gate)  # the gate is inclusive


def test_a_short_query_is_degenerate_whatever_its_direction() -> None:
    rng = np.random.default_rng(1)
    refs = rng.normal(size=(7, D))
    lengths = np.linalg.norm(refs, axis=1)
    median = float(np.sort(lengths)[3])
    far = rng.normal(size=D)
    far /= np.linalg.norm(far)
    assert uniform_cosine(far, refs) < 0.85
    rule = MatchRule(min_norm_fraction=0.25)
    assert norm_fraction(far * median * 0.3, refs) == pytest.approx(0.3)
    assert not is_degenerate(far * median * 0.26, refs, rule)
    assert is_degenerate(far * median * 0.24, refs, rule)


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match=r"\(M,\)"):
        match_confidence(np.ones(2), np.ones(3), np.ones(2, int), np.ones(2))
    with pytest.raises(ValueError, match=r"\(M,\)"):
        match_confidence(np.ones(2), np.ones(2), np.ones(2, int), np.ones(2),
                         other_centroid=np.ones(3), other_image=np.ones(2))  # fmt: skip
    with pytest.raises(ValueError, match="at least one image"):
        item_spread(np.ones(D), np.ones(D), 0)


def test_a_flat_input_is_degenerate_whatever_its_embedding() -> None:
    rng = np.random.default_rng(2)
    refs = rng.normal(size=(5, D))
    content = rng.normal(size=D) * float(np.median(np.linalg.norm(refs, axis=1)))
    assert not is_degenerate(content, refs)
    flat = np.full((3, 8, 8), 135, dtype=np.uint8)
    flat[1] = 125
    noisy = flat.copy()
    noisy[2, ::2, ::2] += 2  # a quarter of the pixels 2 levels up: std sqrt(3) / 2
    textured = rng.integers(0, 256, size=(3, 8, 8), dtype=np.uint8)
    assert input_std(flat) == 0.0
    assert input_std(noisy) == pytest.approx(np.sqrt(3.0) / 2)
    assert input_std(textured) == pytest.approx(float(textured.reshape(3, -1).std(axis=1).max()))
    assert is_degenerate(content, refs, model_input=flat)
    assert is_degenerate(content, refs, model_input=noisy)  # 0.87 < 1 grey level
    assert not is_degenerate(content, refs, MatchRule(max_flat_std=0.8), model_input=noisy)
    assert not is_degenerate(content, refs, model_input=textured)
    with pytest.raises(ValueError, match="one"):
        input_std(flat[None])
