"""The CentroidIndex contract, checked against a brute-force oracle, for every implementation.

Subclass ``CentroidIndexCongruence`` in a ``test_*.py`` module as ``Test<Impl>Congruence`` and
give it a ``make_index`` fixture returning a callable ``dim -> CentroidIndex`` (a fresh, empty
index each call). The base class has no ``Test`` prefix, so pytest collects it only through
its subclasses.

What the oracle assumes: every gallery here holds at most a few hundred items, and on such a
gallery the index must return the *exact* top-k (ids, order and scores). An approximate index
meets that by construction if it re-ranks its candidates exactly and its candidates cover the
whole gallery at this size (it probes every list, or serves exactly below its training
threshold); its recall on large galleries is tested in its own module, not here.

Scores are compared with ``score_atol`` (class attribute): the oracle computes each score in
float64 from the float32 unit rows, as the contract promises (exact cosines of the stored
rows, so that equal rows tie exactly). A subclass whose backend cannot meet that may loosen it
and must say why.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from index.centroid_index import CentroidIndex

MakeIndex = Callable[[int], CentroidIndex]
Hits = list[tuple[str, float]]


def unit_row(v: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """``v`` ``(D,)`` scaled to unit norm in float64, then stored as float32 (the contract)."""
    v64 = np.asarray(v, dtype=np.float64)
    out: npt.NDArray[np.float32] = (v64 / np.linalg.norm(v64)).astype(np.float32)
    return out


def brute_force(rows: dict[str, npt.NDArray[np.float32]], query: npt.ArrayLike, k: int) -> Hits:
    """Score every item in float64, one dot product at a time; sort by (-score, id); keep k."""
    q = np.asarray(query, dtype=np.float64)
    scored = [(item, float(np.dot(r.astype(np.float64), q))) for item, r in rows.items()]
    scored.sort(key=lambda p: (-p[1], p[0]))
    return scored[:k]


class CentroidIndexCongruence:
    """Contract tests; subclasses provide ``make_index`` (see the module docstring)."""

    score_atol = 1e-9

    def assert_same_ranking(self, got: Hits, want: Hits) -> None:
        assert [i for i, _ in got] == [i for i, _ in want]
        np.testing.assert_allclose(
            [s for _, s in got], [s for _, s in want], rtol=0, atol=self.score_atol
        )

    def assert_matches_oracle(
        self,
        index: CentroidIndex,
        rows: dict[str, npt.NDArray[np.float32]],
        queries: npt.NDArray[np.float32],
        ks: tuple[int, ...],
    ) -> None:
        for k in ks:
            got = index.search(queries, k)
            assert len(got) == queries.shape[0]
            for q, hits in zip(queries, got, strict=True):
                self.assert_same_ranking(hits, brute_force(rows, q, k))

    # -- content --------------------------------------------------------------------------

    def test_empty_index(self, make_index: MakeIndex) -> None:
        index = make_index(4)
        assert len(index) == 0 and index.item_ids() == []
        assert "a" not in index and index.get("a") is None
        assert not index.remove("a")
        q = np.eye(4, dtype=np.float32)[:3]
        assert index.search(q, 5) == [[], [], []]
        assert index.search(q, 0) == [[], [], []]

    def test_upsert_stores_a_normalised_float32_copy(self, make_index: MakeIndex) -> None:
        index = make_index(2)
        index.upsert("a", np.array([3.0, 4.0]))
        got = index.get("a")
        assert got is not None and got.dtype == np.float32 and got.shape == (2,)
        np.testing.assert_allclose(got, [0.6, 0.8], rtol=0, atol=1e-7)
        got[:] = 0
        np.testing.assert_allclose(index.get("a"), [0.6, 0.8], rtol=0, atol=1e-7)
        assert "a" in index and len(index) == 1 and index.item_ids() == ["a"]

    def test_replace_keeps_one_row_per_item(self, make_index: MakeIndex) -> None:
        index = make_index(3)
        index.upsert("a", np.array([1.0, 0, 0]))
        index.upsert("b", np.array([0, 1.0, 0]))
        index.upsert("a", np.array([0, 0, 2.0]))
        assert len(index) == 2 and sorted(index.item_ids()) == ["a", "b"]
        np.testing.assert_array_equal(index.get("a"), [0, 0, 1.0])
        hits = index.search(np.array([[0, 0, 1.0], [1.0, 0, 0]], np.float32), 5)
        assert [i for i, _ in hits[0]] == ["a", "b"]
        assert hits[0][0][1] == pytest.approx(1.0, abs=self.score_atol)
        # The old row of "a" is gone: nothing scores 1 against it any more.
        assert all(s == pytest.approx(0.0, abs=self.score_atol) for _, s in hits[1])

    def test_remove(self, make_index: MakeIndex) -> None:
        index = make_index(2)
        index.upsert("a", np.array([1.0, 0]))
        index.upsert("b", np.array([0, 1.0]))
        assert index.remove("a")
        assert not index.remove("a")
        assert "a" not in index and index.get("a") is None
        assert len(index) == 1 and index.item_ids() == ["b"]
        assert [i for i, _ in index.search(np.array([[1.0, 0]], np.float32), 5)[0]] == ["b"]
        assert index.remove("b") and len(index) == 0
        assert index.search(np.array([[1.0, 0]], np.float32), 5) == [[]]

    def test_bad_input_is_refused_and_changes_nothing(self, make_index: MakeIndex) -> None:
        index = make_index(3)
        index.upsert("x", np.array([1.0, 0, 0]))
        version = index.version
        with pytest.raises(ValueError):
            index.upsert("z", np.ones(4))
        with pytest.raises(ValueError):
            index.upsert("z", np.array([np.inf, 0, 0]))
        with pytest.raises(ValueError):
            index.upsert("x", np.array([np.nan, 1.0, 0]))
        with pytest.raises(ValueError):
            index.search(np.ones((2, 4), np.float32), 1)
        with pytest.raises(ValueError):
            index.search(np.ones((1, 3), np.float32), -1)
        assert "z" not in index and len(index) == 1 and index.version == version
        np.testing.assert_array_equal(index.get("x"), [1.0, 0, 0])

    def test_version_increases_with_every_change_only(self, make_index: MakeIndex) -> None:
        index = make_index(2)
        seen = [index.version]

        def changed() -> None:
            assert index.version > seen[-1]
            seen.append(index.version)

        index.upsert("a", np.ones(2))
        changed()
        index.upsert("a", np.array([1.0, 0]))
        changed()
        index.upsert("b", np.array([0, 1.0]))
        changed()
        index.remove("a")
        changed()
        index.remove("a")  # no-op
        index.search(np.ones((1, 2), np.float32), 3)
        index.get("b")
        index.item_ids()
        assert index.version == seen[-1]
        index.rebuild([("c", np.ones(2))])
        changed()

    def test_memory_bytes_counts_the_rows(self, make_index: MakeIndex) -> None:
        d = 64
        index = make_index(d)
        empty = index.memory_bytes()
        rng = np.random.default_rng(5)
        for i in range(100):
            index.upsert(f"item{i}", rng.normal(size=d))
        assert index.memory_bytes() >= empty + 100 * d * 4

    # -- rebuild --------------------------------------------------------------------------

    def test_rebuild_replaces_content_and_rejects_duplicates(self, make_index: MakeIndex) -> None:
        rng = np.random.default_rng(2)
        d = 8
        index = make_index(d)
        index.upsert("old", rng.normal(size=d))
        fresh = {f"n{i:04d}": rng.normal(size=d) for i in range(300)}
        index.rebuild(iter(fresh.items()))
        assert "old" not in index and len(index) == 300
        assert sorted(index.item_ids()) == sorted(fresh)
        rows = {k: unit_row(v) for k, v in fresh.items()}
        for item in ("n0000", "n0299"):
            np.testing.assert_allclose(index.get(item), rows[item], rtol=0, atol=1e-7)
        version = index.version
        with pytest.raises(ValueError):
            index.rebuild([("a", np.ones(d)), ("a", np.ones(d))])
        with pytest.raises(ValueError):
            index.rebuild([("a", np.ones(d)), ("b", np.ones(d + 1))])
        assert len(index) == 300 and "a" not in index and index.version == version
        queries = np.stack([unit_row(rng.normal(size=d)) for _ in range(5)])
        self.assert_matches_oracle(index, rows, queries, (1, 7, 300))
        index.rebuild([])
        assert len(index) == 0 and index.search(queries[:1], 3) == [[]]

    # -- search ---------------------------------------------------------------------------

    def test_search_matches_brute_force_through_random_changes(self, make_index: MakeIndex) -> None:
        rng = np.random.default_rng(0)
        d = 16
        index = make_index(d)
        rows: dict[str, npt.NDArray[np.float32]] = {}
        queries = np.stack([unit_row(rng.normal(size=d)) for _ in range(6)])
        for step in range(4):
            for i in range(60):
                item = f"i{step}-{i:02d}"
                v = rng.normal(size=d)
                index.upsert(item, v)
                rows[item] = unit_row(v)
            for item in rng.choice(sorted(rows), size=15, replace=False).tolist():
                v = rng.normal(size=d)
                index.upsert(item, v)
                rows[item] = unit_row(v)
            for item in rng.choice(sorted(rows), size=20, replace=False).tolist():
                assert index.remove(item)
                del rows[item]
            assert len(index) == len(rows) and sorted(index.item_ids()) == sorted(rows)
            self.assert_matches_oracle(index, rows, queries, (1, 5, 20))
        for item, r in rows.items():
            np.testing.assert_allclose(index.get(item), r, rtol=0, atol=1e-7)
        # k beyond the gallery: everything, once, in order.
        self.assert_matches_oracle(index, rows, queries, (len(rows), len(rows) + 50))

    @pytest.mark.parametrize("n_queries", [1, 25])  # FAISS switches to BLAS from 20 queries
    def test_ties_across_the_cut_are_broken_by_item_id(
        self, make_index: MakeIndex, n_queries: int
    ) -> None:
        d = 32
        rng = np.random.default_rng(1)
        shared = rng.normal(size=d)
        tied = [f"t{i:02d}" for i in range(40)]
        others = {f"o{i:02d}": rng.normal(size=d) for i in range(120)}
        for order in range(2):
            index = make_index(d)
            names = tied + list(others)
            for name in np.random.default_rng(order).permutation(names).tolist():
                index.upsert(name, shared if name in tied else others[name])
            q = np.repeat(unit_row(shared)[None, :], n_queries, axis=0)
            for k in (1, 5, 39, 40, 41):
                for hits in index.search(q, k):
                    assert len(hits) == k
                    assert [i for i, _ in hits[:40]] == tied[: min(k, 40)]
                    assert len({s for _, s in hits[: min(k, 40)]}) == 1

    def test_many_queries_at_once_equal_one_at_a_time(self, make_index: MakeIndex) -> None:
        rng = np.random.default_rng(3)
        d = 16
        index = make_index(d)
        rows = {f"m{i:03d}": unit_row(rng.normal(size=d)) for i in range(200)}
        index.rebuild(rows.items())
        queries = np.stack([unit_row(rng.normal(size=d)) for _ in range(30)])
        together = index.search(queries, 10)
        for q, hits in zip(queries, together, strict=True):
            assert hits == index.search(q[None, :], 10)[0]
            self.assert_same_ranking(hits, brute_force(rows, q, 10))

    def test_scores_are_exact_cosines_of_the_stored_rows(self, make_index: MakeIndex) -> None:
        d = 3
        index = make_index(d)
        index.upsert("x", np.array([1.0, 0, 0]))
        index.upsert("y", np.array([0, 2.0, 0]))
        index.upsert("w", np.array([1.0, 1.0, 0]))
        got = index.search(np.array([[1.0, 0, 0], [0, 1.0, 0]], np.float32), 10)
        rows = {i: unit_row(v) for i, v in (("x", [1, 0, 0]), ("y", [0, 1, 0]), ("w", [1, 1, 0]))}
        assert [[i for i, _ in hits] for hits in got] == [["x", "w", "y"], ["y", "w", "x"]]
        self.assert_same_ranking(got[0], brute_force(rows, [1.0, 0, 0], 10))
        self.assert_same_ranking(got[1], brute_force(rows, [0, 1.0, 0], 10))
