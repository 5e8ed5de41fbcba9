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

Filtered search (``FilteredSearchCongruence``; ``CentroidIndexCongruence`` is it plus
``UnfilteredCongruence``, and an index with several filter paths may run either part alone,
e.g. once per forced path) is checked
against the same oracle over the items whose terms contain the filter's, on clustered data
with groups of identical rows (ties at the cut), at selectivities from 0.1 % to 100 %.

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


def brute_force_where(
    rows: dict[str, npt.NDArray[np.float32]],
    terms: dict[str, frozenset[str]],
    query: npt.ArrayLike,
    k: int,
    where: frozenset[str],
) -> Hits:
    """``brute_force`` over the items whose terms hold every term of ``where``."""
    return brute_force({i: r for i, r in rows.items() if where <= terms[i]}, query, k)


# Filter terms of the clustered gallery: the share of items each one is given.
SELECTIVITY_TERMS = {
    "sel=0.1%": 0.001,
    "sel=1%": 0.01,
    "sel=10%": 0.1,
    "sel=50%": 0.5,
    "sel=100%": 1.0,
}


def clustered_gallery(
    rng: np.random.Generator, n: int, dim: int
) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, frozenset[str]]]:
    """``n`` items in 20 tight clusters (raw ``(dim,)`` vectors, not normalised), every fifth
    one an exact copy of the one before it (ties), each given the terms of
    ``SELECTIVITY_TERMS`` on a random subset of exactly that share (at least one item), plus
    ``"mod=<i % 3>"``.

    I.i.d. random vectors would have no neighbours: a filter would then pick among items
    scoring about the same, and a search that ignored the order would pass."""
    centres = rng.normal(size=(20, dim))
    vectors: dict[str, npt.NDArray[np.float64]] = {}
    names = [f"g{i:04d}" for i in range(n)]
    previous = None
    for i, name in enumerate(names):
        if i % 5 == 4 and previous is not None:
            vectors[name] = previous.copy()
        else:
            vectors[name] = centres[rng.integers(20)] * 4 + rng.normal(size=dim)
        previous = vectors[name]
    terms: dict[str, set[str]] = {name: {f"mod={i % 3}"} for i, name in enumerate(names)}
    for term, share in SELECTIVITY_TERMS.items():
        chosen = rng.choice(n, size=max(1, round(share * n)), replace=False)
        for i in chosen.tolist():
            terms[names[i]].add(term)
    return vectors, {name: frozenset(t) for name, t in terms.items()}


class CongruenceBase:
    score_atol = 1e-9

    def assert_same_ranking(self, got: Hits, want: Hits) -> None:
        assert [i for i, _ in got] == [i for i, _ in want]
        np.testing.assert_allclose(
            [s for _, s in got], [s for _, s in want], rtol=0, atol=self.score_atol
        )


class FilteredSearchCongruence(CongruenceBase):
    """Filtered-search contract; subclasses provide ``make_index``."""

    def assert_filtered_matches_oracle(
        self,
        index: CentroidIndex,
        rows: dict[str, npt.NDArray[np.float32]],
        terms: dict[str, frozenset[str]],
        queries: npt.NDArray[np.float32],
        ks: tuple[int, ...],
        filters: list[frozenset[str]],
    ) -> None:
        for where in filters:
            n_matching = sum(where <= t for t in terms.values())
            for k in ks:
                got = index.search(queries, k, where)
                assert len(got) == queries.shape[0]
                for q, hits in zip(queries, got, strict=True):
                    assert len(hits) == min(k, n_matching), (where, k)
                    self.assert_same_ranking(hits, brute_force_where(rows, terms, q, k, where))

    # -- filtered search ------------------------------------------------------------------

    def test_filtered_search_is_exact_at_every_selectivity(self, make_index: MakeIndex) -> None:
        rng = np.random.default_rng(11)
        d, n = 16, 1000
        vectors, terms = clustered_gallery(rng, n, d)
        index = make_index(d)
        index.rebuild((name, v, terms[name]) for name, v in vectors.items())
        rows = {name: unit_row(v) for name, v in vectors.items()}
        # Queries near gallery items (so the neighbours that matter are in one cluster and most
        # of them do not match a selective filter), and one exactly on a tied pair.
        picks = [rows[f"g{i:04d}"] for i in (3, 4, 250, 517, 998)]
        queries = np.stack([unit_row(r + 0.05 * rng.normal(size=d)) for r in picks] + [picks[1]])
        filters = [frozenset({t}) for t in SELECTIVITY_TERMS]
        filters += [frozenset({"sel=50%", "sel=10%"}), frozenset({"sel=50%", "mod=1"})]
        # k beyond every matching set of the selective filters: all of them, in order.
        self.assert_filtered_matches_oracle(index, rows, terms, queries, (1, 10, 25), filters)
        self.assert_filtered_matches_oracle(
            index, rows, terms, queries, (15, 40), [frozenset({"sel=1%"})]
        )
        assert index.search(queries[:2], 5, frozenset({"nobody=has this"})) == [[], []]
        assert index.search(queries[:2], 5, frozenset({"sel=1%", "nobody=x"})) == [[], []]
        # None and the empty set are no filter.
        no_filters: tuple[frozenset[str] | None, ...] = (None, frozenset())
        for no_filter in no_filters:
            assert index.search(queries, 7, no_filter) == index.search(queries, 7)
        assert index.terms_of("g0000") == terms["g0000"] and index.terms_of("absent") is None

    def test_ties_straddling_a_filtered_cut_are_broken_by_item_id(
        self, make_index: MakeIndex
    ) -> None:
        d = 8
        rng = np.random.default_rng(4)
        shared = rng.normal(size=d)
        index = make_index(d)
        rows: dict[str, npt.NDArray[np.float32]] = {}
        terms: dict[str, frozenset[str]] = {}
        # 200 identical rows, three in four carrying the filter term, written in reverse id
        # order: more matching ties than a first widened request (k + 16 over the share
        # matching, twice) holds, so a search that stopped at k matches would return an
        # arbitrary subset of them.
        tied_kept: list[str] = []
        for i in reversed(range(200)):
            name = f"t{i:03d}"
            terms[name] = frozenset({"keep=no"} if i % 4 == 0 else {"keep=yes"})
            index.upsert(name, shared, terms[name])
            rows[name] = unit_row(shared)
            if i % 4:
                tied_kept.insert(0, name)
        for i in range(100):
            name = f"o{i:03d}"
            v = rng.normal(size=d)
            terms[name] = frozenset({"keep=yes"} if i % 2 else {"keep=no"})
            index.upsert(name, v, terms[name])
            rows[name] = unit_row(v)
        q = unit_row(shared)[None, :]
        where = frozenset({"keep=yes"})
        for k in (1, 5, 149, 150, 151, 250):
            (hits,) = index.search(q, k, where)
            self.assert_same_ranking(hits, brute_force_where(rows, terms, q[0], k, where))
            assert [i for i, _ in hits[:150]] == tied_kept[:k]

    def test_changed_terms_and_removals_follow_through_random_writes(
        self, make_index: MakeIndex
    ) -> None:
        rng = np.random.default_rng(6)
        d = 8
        index = make_index(d)
        rows: dict[str, npt.NDArray[np.float32]] = {}
        terms: dict[str, frozenset[str]] = {}
        colours = ["red", "green", "blue"]

        def write(name: str) -> None:
            v = rng.normal(size=d)
            t = frozenset(
                {f"colour={colours[int(rng.integers(3))]}"}
                | ({"sale=1"} if rng.random() < 0.3 else set())
            )
            index.upsert(name, v, t)
            rows[name], terms[name] = unit_row(v), t

        queries = np.stack([unit_row(rng.normal(size=d)) for _ in range(3)])
        filters = [frozenset({"colour=red"}), frozenset({"colour=blue", "sale=1"})]
        for step in range(3):
            for i in range(30):
                write(f"w{step}-{i:02d}")
            for name in rng.choice(sorted(rows), size=8, replace=False).tolist():
                write(name)  # new row and new terms
            for name in rng.choice(sorted(rows), size=8, replace=False).tolist():
                assert index.remove(name)
                del rows[name], terms[name]
            self.assert_filtered_matches_oracle(index, rows, terms, queries, (3, 100), filters)
        for name in rows:
            assert index.terms_of(name) == terms[name]
        # Only the terms change: the item leaves one filter and joins another.
        name = sorted(rows)[0]
        index.upsert(name, rows[name], frozenset({"colour=violet"}))
        terms[name] = frozenset({"colour=violet"})
        (hits,) = index.search(rows[name][None, :], 100, frozenset({"colour=violet"}))
        assert [i for i, _ in hits] == [name]
        self.assert_filtered_matches_oracle(index, rows, terms, queries, (100,), filters)
        # An upsert without terms clears them.
        index.upsert(name, rows[name])
        assert index.terms_of(name) == frozenset()
        assert index.search(queries, 5, frozenset({"colour=violet"})) == [[], [], []]
        assert index.remove(name)
        assert index.terms_of(name) is None

    def test_bad_terms_are_refused_and_change_nothing(self, make_index: MakeIndex) -> None:
        index = make_index(2)
        index.upsert("a", np.array([1.0, 0]), frozenset({"k=v"}))
        version = index.version
        with pytest.raises(TypeError):
            index.upsert("b", np.array([0, 1.0]), "k=v")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            index.upsert("b", np.array([0, 1.0]), frozenset({""}))
        with pytest.raises(TypeError):
            index.search(np.array([[1.0, 0]], np.float32), 1, "k=v")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            index.rebuild([("c", np.ones(2), "k=v")])  # type: ignore[list-item]
        assert "b" not in index and "c" not in index and index.version == version
        assert index.search(np.array([[1.0, 0]], np.float32), 3, frozenset({"k=v"})) == [
            [("a", pytest.approx(1.0, abs=self.score_atol))]
        ]


class UnfilteredCongruence(CongruenceBase):
    """The contract without filters; subclasses provide ``make_index``."""

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


class CentroidIndexCongruence(UnfilteredCongruence, FilteredSearchCongruence):
    """Contract tests; subclasses provide ``make_index`` (see the module docstring)."""
