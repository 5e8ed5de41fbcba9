"""FlatCentroidIndex: the congruence suite, plus in-place FAISS storage updates, chunked rebuild,
concurrent readers and writers."""

from __future__ import annotations

import functools
import threading

import faiss
import numpy as np
import pytest

from index.centroid_math import l2_normalize
from index.flat_centroid_index import (
    LOAD_SPARE_FRACTION,
    LOAD_SPARE_MIN_ROWS,
    REBUILD_CHUNK_ROWS,
    FlatCentroidIndex,
)
from tests.index.centroid_index_congruence import (
    CentroidIndexCongruence,
    FilteredSearchCongruence,
    MakeIndex,
    brute_force,
)


class TestFlatCentroidIndexCongruence(CentroidIndexCongruence):
    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return FlatCentroidIndex


class TestFlatPrefilterOnlyCongruence(FilteredSearchCongruence):
    """Every filtered search scores the matching rows only, whatever their share."""

    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return functools.partial(FlatCentroidIndex, prefilter_fraction=1.0)


class TestFlatWidenedOnlyCongruence(FilteredSearchCongruence):
    """Every filtered search widens the FAISS scan, even for one matching item."""

    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return functools.partial(FlatCentroidIndex, prefilter_fraction=0.0, prefilter_min_rows=0)


def assert_same_ranking(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    CentroidIndexCongruence().assert_same_ranking(got, want)


def test_upsert_of_an_existing_item_writes_faiss_storage_in_place() -> None:
    index = FlatCentroidIndex(4)
    index.upsert("a", np.array([1.0, 0, 0, 0]))
    index.upsert("b", np.array([0, 1.0, 0, 0]))
    raw = index._faiss
    before = int(raw.get_xb())
    index.upsert("a", np.array([0, 0, 3.0, 4.0]))
    assert raw.ntotal == 2 and int(raw.get_xb()) == before
    # FAISS itself (not our view) now holds the new row, and its own search finds it.
    np.testing.assert_allclose(raw.reconstruct(0), [0, 0, 0.6, 0.8], atol=1e-7)
    scores, slots = raw.search(np.array([[0, 0, 0.6, 0.8]], np.float32), 1)
    assert slots[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0, abs=1e-6)
    view = index._rows()
    view[1] = [0, 0, 0, 1.0]
    np.testing.assert_array_equal(raw.reconstruct(1), [0, 0, 0, 1.0])


def test_remove_swaps_with_last_and_shrinks_faiss_storage() -> None:
    rng = np.random.default_rng(0)
    d = 16
    index = FlatCentroidIndex(d)
    rows: dict[str, np.ndarray] = {}
    for i in range(500):
        v = rng.normal(size=d)
        index.upsert(f"i{i:03d}", v)
        rows[f"i{i:03d}"] = l2_normalize(v)
    for item in rng.permutation(sorted(rows))[:300]:
        assert index.remove(str(item))
        del rows[str(item)]
        assert index._faiss.ntotal == len(rows)
        assert index._faiss.codes.size() == len(rows) * d * 4
    assert not index.remove("i-never")
    for item in list(rows)[:50]:
        v = rng.normal(size=d)
        index.upsert(item, v)
        rows[item] = l2_normalize(v)
    for i in range(500, 540):
        v = rng.normal(size=d)
        index.upsert(f"i{i:03d}", v)
        rows[f"i{i:03d}"] = l2_normalize(v)
    assert len(index) == len(rows) and sorted(index.item_ids()) == sorted(rows)
    for item, r in rows.items():
        np.testing.assert_array_equal(index.get(item), r)
    queries = l2_normalize(rng.normal(size=(20, d)))
    for k in (1, 5, 50, 1000):
        for q, got in zip(queries, index.search(queries, k), strict=True):
            assert_same_ranking(got, brute_force(rows, q, k))


def test_rebuild_spanning_several_chunks() -> None:
    rng = np.random.default_rng(2)
    index = FlatCentroidIndex(8)
    index.upsert("old", rng.normal(size=8))
    fresh = {f"n{i:05d}": rng.normal(size=8) for i in range(2 * REBUILD_CHUNK_ROWS + 7)}
    index.rebuild(iter(fresh.items()))
    assert "old" not in index and len(index) == len(fresh) == index._faiss.ntotal
    last = f"n{len(fresh) - 1:05d}"
    np.testing.assert_array_equal(index.get(last), l2_normalize(fresh[last]))
    q = l2_normalize(rng.normal(size=(1, 8)))
    want = brute_force({k: l2_normalize(v) for k, v in fresh.items()}, q[0], 7)
    assert_same_ranking(index.search(q, 7)[0], want)


def test_concurrent_searches_and_writes_stay_consistent() -> None:
    d, rng = 32, np.random.default_rng(4)
    index = FlatCentroidIndex(d)
    base = {f"b{i:03d}": rng.normal(size=d) for i in range(300)}
    index.rebuild(base.items())
    errors: list[BaseException] = []
    stop = threading.Event()
    queries = l2_normalize(rng.normal(size=(4, d)))

    def reader() -> None:
        try:
            while not stop.is_set():
                for hits in index.search(queries, 10):
                    assert len(hits) == 10 and len({i for i, _ in hits}) == 10
                    scores = [s for _, s in hits]
                    assert scores == sorted(scores, reverse=True)
        except BaseException as exc:
            errors.append(exc)
            raise

    def writer(w: int) -> None:
        r = np.random.default_rng(w)
        for j in range(300):
            index.upsert(f"w{w}-{j % 20}", r.normal(size=d))
            if j % 3 == 0:
                index.remove(f"w{w}-{(j + 7) % 20}")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert index._faiss.ntotal == len(index) == len(index.item_ids())
    rows = {i: index.get(i) for i in index.item_ids()}
    assert all(r is not None for r in rows.values())
    for q in queries:
        assert_same_ranking(index.search(q[None, :], 15)[0], brute_force(rows, q, 15))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make_index",
    [
        FlatCentroidIndex,
        functools.partial(FlatCentroidIndex, prefilter_fraction=0.0, prefilter_min_rows=0),
    ],
    ids=["prefilter", "widened"],
)
def test_filtered_searches_stay_exact_while_writes_move_rows(make_index: MakeIndex) -> None:
    """Writers add, re-term and remove their own items (each remove moves the last row, often a
    base item's, and its postings); readers filter on the base items' term, whose answer never
    changes, and on a term the writers flip, whose hits must all carry it."""
    d, rng = 16, np.random.default_rng(5)
    index = make_index(d)
    base = {f"b{i:03d}": rng.normal(size=d) for i in range(200)}
    index.rebuild((name, v, frozenset({"base=1"})) for name, v in base.items())
    queries = l2_normalize(rng.normal(size=(3, d)))
    rows = {name: l2_normalize(v) for name, v in base.items()}
    want = [brute_force(rows, q, 10) for q in queries]
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                for hits, expected in zip(
                    index.search(queries, 10, frozenset({"base=1"})), want, strict=True
                ):
                    assert_same_ranking(hits, expected)
                for hits in index.search(queries, 10, frozenset({"flip=on"})):
                    for item_id, _ in hits:
                        assert item_id.startswith("w")
        except BaseException as exc:
            errors.append(exc)
            raise

    def writer(w: int) -> None:
        r = np.random.default_rng(w)
        for j in range(300):
            terms = frozenset({"flip=on"} if j % 2 else {"flip=off"})
            index.upsert(f"w{w}-{j % 20}", r.normal(size=d), terms)
            if j % 3 == 0:
                index.remove(f"w{w}-{(j + 7) % 20}")

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    for item_id in index.item_ids():
        terms = index.terms_of(item_id)
        assert terms is not None
        hits = index.search(index.get(item_id)[None, :], 500, terms)[0]  # type: ignore[index]
        assert item_id in {i for i, _ in hits}


def test_faiss_search_sees_only_live_rows_after_removes() -> None:
    index = FlatCentroidIndex(2)
    index.upsert("a", np.array([1.0, 0]))
    index.upsert("b", np.array([0, 1.0]))
    index.remove("a")
    _, slots = index._faiss.search(np.array([[1.0, 0]], np.float32), 2)
    assert slots.tolist() == [[0, -1]]
    assert isinstance(index._faiss, faiss.IndexFlatIP)


def test_row_chunks_and_load_rows_round_trip() -> None:
    rng = np.random.default_rng(3)
    index = FlatCentroidIndex(4)
    for i in range(10):
        index.upsert(f"i{i}", rng.normal(size=4), frozenset({f"mod={i % 3}", f"id={i}"}))
    index.remove("i3")  # the last row moved into slot 3, its terms with it
    chunks = list(index.iter_row_chunks(4))
    assert [len(ids) for ids, _, _ in chunks] == [4, 4, 1]
    ids = [i for c, _, _ in chunks for i in c]
    rows = np.concatenate([r for _, r, _ in chunks])
    terms = [t for _, _, c in chunks for t in c]
    assert sorted(ids) == sorted(index.item_ids())
    for item_id, row, item_terms in zip(ids, rows, terms, strict=True):
        assert np.array_equal(row, index.get(item_id))  # type: ignore[arg-type]
        assert item_terms == frozenset({f"mod={int(item_id[1:]) % 3}", f"id={item_id[1:]}"})
    rows[0] = 0  # a copy: the index is not aliased
    assert np.any(index.get(ids[0]) != 0)  # type: ignore[operator]

    loaded = FlatCentroidIndex(4)
    loaded.upsert("gone", np.ones(4), frozenset({"mod=0"}))
    loaded.load_rows(ids, np.concatenate([r for _, r, _ in index.iter_row_chunks(100)]), terms)
    assert "gone" not in loaded and len(loaded) == 9
    q = l2_normalize(rng.normal(size=(1, 4)))
    assert loaded.search(q, 9) == index.search(q, 9)
    for where in (frozenset({"mod=0"}), frozenset({"mod=1", "id=7"}), frozenset({"id=3"})):
        assert loaded.search(q, 9, where) == index.search(q, 9, where)
    assert [i for i, _ in loaded.search(q, 9, frozenset({"mod=0"}))[0]] != []
    assert loaded.terms_of("i9") == index.terms_of("i9") and loaded.terms_of("gone") is None
    loaded.upsert("new", np.ones(4))  # writable after a load
    assert loaded.remove("i0") and len(loaded) == 9
    untermed = FlatCentroidIndex(4)
    untermed.load_rows(ids, rows)  # no terms given: none held
    assert untermed.terms_of("i1") == frozenset()
    assert untermed.search(q, 9, frozenset({"mod=1"})) == [[]]


def test_appends_after_load_rows_fill_its_spare_room_in_place() -> None:
    """A snapshot load leaves room past its rows: the writes replayed after it (new items) go
    into that room, not into a new buffer with every row copied over (the first append would
    otherwise reallocate the whole storage). Past the room the storage grows as usual."""
    n = 8 * LOAD_SPARE_MIN_ROWS
    spare = max(LOAD_SPARE_MIN_ROWS, n // LOAD_SPARE_FRACTION)
    rows = l2_normalize(np.random.default_rng(4).normal(size=(n, 4))).astype(np.float32)
    index = FlatCentroidIndex(4)
    index.load_rows([f"i{i}" for i in range(n)], rows)
    storage = index._faiss.get_xb()
    extra = l2_normalize(np.random.default_rng(5).normal(size=(spare + 1, 4)))
    for j in range(spare):
        index.upsert(f"new{j}", extra[j])
        assert index._faiss.get_xb() == storage, f"storage moved at append {j}"
    index.upsert("past", extra[spare])
    assert index._faiss.get_xb() != storage  # the room was used up: it grew
    assert len(index) == n + spare + 1
    np.testing.assert_allclose(index.get("i7"), rows[7], rtol=0, atol=0)  # type: ignore[arg-type]
    np.testing.assert_allclose(index.get("past"), extra[spare], rtol=1e-6)  # type: ignore[arg-type]
    assert index.search(extra[spare : spare + 1].astype(np.float32), 1)[0][0][0] == "past"


def test_load_rows_refuses_bad_input() -> None:
    index = FlatCentroidIndex(3)
    with pytest.raises(ValueError):
        index.load_rows(["a", "b"], np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError):
        index.load_rows(["a"], np.zeros((1, 3), np.float64))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="twice"):
        index.load_rows(["a", "a"], np.eye(2, 3, dtype=np.float32))
    with pytest.raises(ValueError, match="term sets"):
        index.load_rows(["a"], np.eye(1, 3, dtype=np.float32), [frozenset(), frozenset()])
    with pytest.raises(ValueError):
        list(index.iter_row_chunks(0))
