"""index.match_confidence against oracles written here: items built from equiangular unit
images (every pair at cosine exactly ``rho``), where the mean pairwise cosine and a new image's
cosine to the centroid are known in closed form and also computed by brute force."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from index.match_confidence import (
    MatchRule,
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


def test_confidence_is_the_documented_sigmoid() -> None:
    rule = MatchRule(prior_pair_cosine=0.85, slope=2.0, offset=0.5)
    count = np.array([4, 1, 3])
    spread = np.array([0.95, 1.0, 0.9])
    cs = np.array([0.9, 0.7, 0.95], dtype=np.float32)
    im = np.array([0.92, 0.8, 0.9], dtype=np.float32)
    got = match_confidence(cs, im, count, spread, rule=rule)
    want = []
    for c, b, n, s in zip(cs, im, count, spread, strict=True):
        r = 0.85 if n == 1 else (n * s * s - 1) / (n - 1)
        mu = n * r / np.sqrt(n * (1 + (n - 1) * r))
        z = ((float(c) + float(b)) / 2 - mu) / (1 - mu)
        want.append(1 / (1 + np.exp(-(2.0 * z + 0.5))))
    np.testing.assert_allclose(got.confidence, want, rtol=1e-6)
    assert got.match.tolist() == [w >= 0.5 for w in want]
    assert got.confidence.dtype == np.float32


def test_the_threshold_follows_the_items_spread() -> None:
    """One score, two items: it matches the item with varied photos (its own photos score
    about that) and not the tight item (its own photos score near 1)."""
    rule = MatchRule()
    tight = equiangular(4, 0.97, seed=1)[:4]
    loose = equiangular(4, 0.6, seed=1)[:4]
    spreads = [item_spread(x.sum(0), unit(x.sum(0)), 4) for x in (tight, loose)]
    score = np.array([0.8, 0.8], dtype=np.float32)
    got = match_confidence(score, score, np.array([4, 4]), np.array(spreads), rule=rule)
    assert got.match.tolist() == [False, True]
    assert got.confidence[0] < got.confidence[1]


def test_confidence_rises_with_the_score() -> None:
    scores = np.linspace(-1, 1, 41).astype(np.float32)
    n = np.full(41, 3)
    spread = np.full(41, 0.93)
    rule = MatchRule(slope=3.0, offset=0.0)
    conf = match_confidence(scores, scores, n, spread, rule=rule).confidence
    # At score 1 z is exactly 1 (1 - mu over 1 - mu): sigmoid(3).
    assert np.all(np.diff(conf) >= 0) and conf[0] < 1e-6
    assert conf[-1] == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-6)
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
