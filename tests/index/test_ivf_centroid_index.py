"""IvfCentroidIndex: the congruence suite (exact below the training threshold, and trained with
every list probed), recall@10 against brute force on clustered data, writes after training,
retraining after growth with writes replayed, concurrent readers and writers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import faiss
import numpy as np
import numpy.typing as npt
import pytest

from index.ivf_centroid_index import IvfCentroidIndex, _SlotStore
from tests.index.centroid_index_congruence import (
    CentroidIndexCongruence,
    FilteredSearchCongruence,
    MakeIndex,
    UnfilteredCongruence,
    brute_force,
    unit_row,
)
from tests.one_faiss_thread import one_faiss_thread


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread() -> Iterator[None]:
    # Many small FAISS calls: OpenMP's spinning threads cost more than the work (see there).
    with one_faiss_thread():
        yield


class TestIvfUntrainedCongruence(CentroidIndexCongruence):
    """Default parameters: every gallery of the suite is below ``min_train_items``."""

    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return IvfCentroidIndex


class _IvfTrained:
    """Trained from 24 items on and retrained as the suite's galleries grow; all 4 lists
    probed, so the candidates cover the gallery and the exact re-rank must give the oracle."""

    codes = "fp16"

    @pytest.fixture
    def make_index(self) -> MakeIndex:
        def make(dim: int) -> IvfCentroidIndex:
            return IvfCentroidIndex(
                dim,
                nlist=4,
                nprobe=4,
                min_train_items=24,
                background_retrain=False,
                codes=self.codes,  # type: ignore[arg-type]
            )

        return make


class TestIvfTrainedCongruence(_IvfTrained, CentroidIndexCongruence):
    pass


# The codes change which candidates an IVF search yields, not a pre-filter (every filtered
# search of these classes, all lists probed, is one): the filtered suite runs once, above.
class TestIvfSq8TrainedCongruence(_IvfTrained, UnfilteredCongruence):
    codes = "sq8"


class TestIvfTrainedWidenedOnlyCongruence(FilteredSearchCongruence):
    """Trained, every list probed, and every filtered search through the widened IVF search
    (no pre-filter): with all lists probed its candidates are exact, so the oracle holds."""

    @pytest.fixture
    def make_index(self) -> MakeIndex:
        def make(dim: int) -> IvfCentroidIndex:
            return IvfCentroidIndex(
                dim,
                nlist=4,
                nprobe=4,
                min_train_items=24,
                background_retrain=False,
                prefilter_fraction=0.0,
                prefilter_min_rows=0,
            )

        return make


class TestIvfFlatCodesTrainedCongruence(_IvfTrained, UnfilteredCongruence):
    codes = "flat"


def clustered(
    rng: np.random.Generator, n: int, dim: int, n_clusters: int, spread: float
) -> npt.NDArray[np.float32]:
    """``(n, dim)`` unit rows: random unit cluster centres plus Gaussian noise of ``spread``
    per coordinate x sqrt(dim) in norm (i.i.d. rows would have no neighbours to find)."""
    centres = rng.normal(size=(n_clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, n_clusters, size=n)] + rng.normal(scale=spread, size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(rows: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int):  # type: ignore[no-untyped-def]
    """Brute force over a matrix: ``(Q, k)`` row indices by float64 score, ties by index."""
    scores = queries.astype(np.float64) @ rows.astype(np.float64).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def test_recall_at_10_on_clustered_data_with_exact_scores() -> None:
    rng = np.random.default_rng(7)
    n, dim = 4000, 96
    rows = clustered(rng, n, dim, n_clusters=150, spread=0.06)
    # Held-out queries: perturbations of gallery rows, as a re-query of a known item would be.
    picks = rng.integers(0, n, size=200)
    q = rows[picks] + rng.normal(scale=0.06, size=(200, dim)).astype(np.float32)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    index = IvfCentroidIndex(dim, nlist=64, nprobe=8, min_train_items=1000)
    index.rebuild((f"r{i:05d}", rows[i]) for i in range(n))
    assert index.trained and index.nlist == 64
    want = exact_top(rows, q, 10)
    got = index.search(q, 10)
    hits = 0
    for qi, result in enumerate(got):
        assert len(result) == 10
        ids = [int(i[1:]) for i, _ in result]
        hits += len(set(ids) & set(want[qi].tolist()))
        exact = rows[ids].astype(np.float64) @ q[qi].astype(np.float64)
        np.testing.assert_allclose([s for _, s in result], exact, rtol=0, atol=1e-12)
        assert [s for _, s in result] == sorted((s for _, s in result), reverse=True)
    recall = hits / (10 * len(got))
    assert recall >= 0.95, recall
    # The same index probing one list only must do worse, or this test measures nothing.
    narrow = IvfCentroidIndex(dim, nlist=64, nprobe=1, min_train_items=1000)
    narrow.rebuild((f"r{i:05d}", rows[i]) for i in range(n))
    narrow_hits = sum(
        len({int(i[1:]) for i, _ in r} & set(want[qi].tolist()))
        for qi, r in enumerate(narrow.search(q, 10))
    )
    assert narrow_hits < hits


def test_refine_recovers_what_coarse_codes_misorder() -> None:
    """Tight clusters (near-duplicates, as items expanded by noise are): 8-bit codes misorder
    neighbours, the exact re-rank of 4x the candidates recovers most; fp16 codes need none."""
    rng = np.random.default_rng(7)
    n, dim = 2000, 64
    rows = clustered(rng, n, dim, n_clusters=30, spread=0.005)
    q = rows[rng.integers(0, n, size=60)] + rng.normal(scale=0.005, size=(60, dim))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    want = exact_top(rows, q, 10)

    def recall(codes: str, refine: int) -> float:
        index = IvfCentroidIndex(
            dim,
            nlist=16,
            nprobe=16,
            refine=refine,
            min_train_items=1000,
            codes=codes,  # type: ignore[arg-type]
        )
        index.rebuild((f"r{i:05d}", rows[i]) for i in range(n))
        got = index.search(q, 10)
        hits = sum(
            len({int(i[1:]) for i, _ in r} & set(want[j].tolist())) for j, r in enumerate(got)
        )
        return hits / (10 * len(got))

    sq8_1, sq8_4 = recall("sq8", 1), recall("sq8", 4)
    assert sq8_1 < 0.8 and sq8_4 > sq8_1 + 0.15
    assert recall("fp16", 4) >= 0.99


def test_filtered_recall_on_clustered_data_against_brute_force() -> None:
    """Recall@10 of filtered searches on a trained IVF (8 of 64 lists probed): 1 % matching is
    pre-filtered (at most nprobe / nlist = 12.5 % of the gallery), so exact; 25 % and 50 % go
    through the widened IVF search, whose recall is the IVF's own (measured 0.965 and 0.995;
    asserted >= 0.95, as the unfiltered recall test does). Every query gets 10 results, each
    matching the filter, with exact scores."""
    rng = np.random.default_rng(8)
    n, dim = 4000, 96
    rows = clustered(rng, n, dim, n_clusters=150, spread=0.06)
    picks = rng.integers(0, n, size=100)
    q = rows[picks] + rng.normal(scale=0.06, size=(100, dim)).astype(np.float32)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    shares = {"s=1%": 0.01, "s=25%": 0.25, "s=50%": 0.5}
    terms: list[set[str]] = [set() for _ in range(n)]
    for term, share in shares.items():
        for i in rng.choice(n, size=round(share * n), replace=False).tolist():
            terms[i].add(term)
    index = IvfCentroidIndex(dim, nlist=64, nprobe=8, min_train_items=1000, prefilter_min_rows=0)
    index.rebuild((f"r{i:05d}", rows[i], frozenset(terms[i])) for i in range(n))
    assert index.trained
    recalls = {}
    for term in shares:
        matching = np.array([i for i in range(n) if term in terms[i]])
        want = matching[exact_top(rows[matching], q, 10)]
        got = index.search(q, 10, frozenset({term}))
        hits = 0
        for qi, result in enumerate(got):
            assert len(result) == 10
            ids = [int(i[1:]) for i, _ in result]
            assert all(term in terms[i] for i in ids)
            exact = rows[ids].astype(np.float64) @ q[qi].astype(np.float64)
            np.testing.assert_allclose([s for _, s in result], exact, rtol=0, atol=1e-12)
            hits += len(set(ids) & set(want[qi].tolist()))
        recalls[term] = hits / (10 * len(got))
    assert recalls["s=1%"] == 1.0, recalls
    assert min(recalls.values()) >= 0.95, recalls


def test_filtered_search_falls_back_to_exact_when_the_probed_lists_run_out() -> None:
    """The matching items sit in clusters the query's probed list does not hold: the widened
    IVF search finds fewer than k of them, so the query is answered by the exact pre-filter
    and still gets the k best matching items."""
    rng = np.random.default_rng(9)
    n, dim = 3000, 32
    rows = clustered(rng, n, dim, n_clusters=30, spread=0.02)
    index = IvfCentroidIndex(
        dim,
        nlist=32,
        nprobe=1,
        min_train_items=1000,
        prefilter_fraction=0.0,
        prefilter_min_rows=0,
    )
    # Matching: the 300 rows least similar to row 0 (far from its list), and row 0's query.
    far = np.argsort(rows @ rows[0])[:300]
    terms = {
        f"r{i:05d}": frozenset({"far=1"} if i in set(far.tolist()) else {"far=0"}) for i in range(n)
    }
    index.rebuild((f"r{i:05d}", rows[i], terms[f"r{i:05d}"]) for i in range(n))
    assert index.trained
    q = rows[:1]
    (unfiltered,) = index.search(q, 10)
    assert all(terms[i] == frozenset({"far=0"}) for i, _ in unfiltered)
    (hits,) = index.search(q, 10, frozenset({"far=1"}))
    oracle = brute_force({f"r{i:05d}": rows[i] for i in far.tolist()}, q[0], 10)
    assert [i for i, _ in hits] == [i for i, _ in oracle]
    np.testing.assert_allclose([s for _, s in hits], [s for _, s in oracle], rtol=0, atol=1e-9)


def trained_index(
    dim: int, n: int, **kwargs: object
) -> tuple[IvfCentroidIndex, dict[str, npt.NDArray[np.float32]]]:
    rng = np.random.default_rng(11)
    rows = clustered(rng, n, dim, n_clusters=20, spread=0.1)
    index = IvfCentroidIndex(dim, **kwargs)  # type: ignore[arg-type]
    index.rebuild((f"i{i:04d}", rows[i]) for i in range(n))
    return index, {f"i{i:04d}": rows[i] for i in range(n)}


def test_writes_after_training_are_visible_to_the_next_search() -> None:
    dim = 32
    index, _ = trained_index(dim, 600, nlist=16, nprobe=2, min_train_items=300)
    ivf = index._ivf
    assert ivf is not None and ivf.direct_map.type == faiss.DirectMap.Hashtable
    rng = np.random.default_rng(3)
    for step in range(30):
        target = unit_row(rng.normal(size=dim))
        existing = f"i{step:04d}"
        index.upsert(existing, target)
        assert index.search(target[None, :], 1)[0][0] == (existing, pytest.approx(1.0, abs=1e-6))
        fresh = f"new{step:02d}"
        other = unit_row(rng.normal(size=dim))
        index.upsert(fresh, other)
        assert index.search(other[None, :], 1)[0][0][0] == fresh
        assert index.remove(existing)
        assert existing not in {i for i, _ in index.search(target[None, :], 50)[0]}
        assert index._ivf is ivf and ivf.ntotal == len(index) == 600
    assert index.trainings == 1


def test_single_row_adds_land_in_the_assigned_list_with_their_code() -> None:
    """Upserts after training bypass ``add_with_ids``; the lists must hold what it would."""
    dim = 16
    index, rows = trained_index(dim, 300, nlist=8, nprobe=1, min_train_items=100, codes="flat")
    rng = np.random.default_rng(4)
    for i in range(200):
        item = f"i{i:04d}" if i % 2 else f"n{i:04d}"
        rows[item] = unit_row(rng.normal(size=dim))
        index.upsert(item, rows[item])
    ivf = index._ivf
    assert ivf is not None and ivf.ntotal == len(index) == len(rows)
    slots = np.array([index._store._slot_of[item] for item in rows], dtype=np.int64)
    stored = np.stack(list(rows.values()))
    _, assigned = ivf.quantizer.search(stored, 1)
    for slot, row, list_no in zip(slots.tolist(), stored, assigned[:, 0].tolist(), strict=True):
        np.testing.assert_array_equal(ivf.reconstruct(slot), row)  # via the hashtable
        ids = faiss.rev_swig_ptr(ivf.invlists.get_ids(list_no), ivf.invlists.list_size(list_no))
        assert slot in set(ids.tolist())
    # nprobe=1: each row's own list is probed, so it is its own best match.
    for item, got in zip(rows, index.search(stored, 1), strict=True):
        assert got[0][0] == item


def test_retrains_after_the_stated_growth() -> None:
    dim = 16
    rng = np.random.default_rng(5)
    index = IvfCentroidIndex(dim, min_train_items=100, retrain_growth=2.0, background_retrain=False)
    for i in range(99):
        index.upsert(f"a{i:04d}", rng.normal(size=dim))
    assert not index.trained and index.trainings == 0
    index.upsert("a0099", rng.normal(size=dim))
    assert index.trained and index.trainings == 1 and index.trained_at == 100
    first = index._ivf
    for i in range(100, 200):
        index.upsert(f"a{i:04d}", rng.normal(size=dim))
    assert index.trainings == 1 and index._ivf is first
    index.upsert("a0200", rng.normal(size=dim))
    assert index.trainings == 2 and index.trained_at == 201 and index._ivf is not first
    ivf = index._ivf
    assert ivf is not None and ivf.ntotal == 201 and index.nlist == 16  # auto: ~sqrt(201)
    # Shrinking does not retrain.
    for i in range(150):
        index.remove(f"a{i:04d}")
    assert index.trainings == 2 and ivf.ntotal == 51


def test_background_retrain_replays_writes_made_during_the_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dim = 24
    index, rows = trained_index(dim, 400, nlist=8, nprobe=8, min_train_items=200)
    original: Callable[[_SlotStore], faiss.IndexIVF] = index._train_and_fill
    rng = np.random.default_rng(9)

    def build_then_write(store: _SlotStore) -> faiss.IndexIVF:
        built = original(store)
        # These land after the build read the rows: only the replay can bring them in.
        for i in range(0, 60):
            item = f"i{i:04d}"
            rows[item] = unit_row(rng.normal(size=dim))
            index.upsert(item, rows[item])
        for i in range(60, 90):
            assert index.remove(f"i{i:04d}")
            del rows[f"i{i:04d}"]
        for i in range(40):
            rows[f"late{i:02d}"] = unit_row(rng.normal(size=dim))
            index.upsert(f"late{i:02d}", rows[f"late{i:02d}"])
        return built

    monkeypatch.setattr(index, "_train_and_fill", build_then_write)
    before = index._ivf
    assert index.retrain()
    assert index._ivf is not before and index.trainings == 2 and index._dirty is None
    ivf = index._ivf
    assert ivf is not None and ivf.ntotal == len(index) == len(rows)
    queries = np.stack([unit_row(rng.normal(size=dim)) for _ in range(10)])
    for q, got in zip(queries, index.search(queries, 15), strict=True):
        CentroidIndexCongruence().assert_same_ranking(got, brute_force(rows, q, 15))


def test_rebuild_during_a_retrain_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    dim = 8
    index, _ = trained_index(dim, 300, nlist=4, nprobe=4, min_train_items=100)
    original = index._train_and_fill
    calls = []

    def build_then_rebuild(store: _SlotStore) -> faiss.IndexIVF:
        built = original(store)
        if not calls:
            calls.append(1)
            index.rebuild([("only", np.ones(dim))])
        return built

    monkeypatch.setattr(index, "_train_and_fill", build_then_rebuild)
    assert not index.retrain()
    assert not index.trained and index.item_ids() == ["only"]
    assert index.search(np.ones((1, dim), np.float32) / np.sqrt(dim), 5)[0][0][0] == "only"


def test_concurrent_searches_writes_and_a_background_retrain() -> None:
    dim = 32
    index, _ = trained_index(dim, 500, nlist=8, nprobe=8, min_train_items=200, retrain_growth=1.2)
    errors: list[BaseException] = []
    stop = threading.Event()
    queries = np.stack([unit_row(np.random.default_rng(i).normal(size=dim)) for i in range(4)])

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
        for j in range(150):
            index.upsert(f"w{w}-{j}", r.normal(size=dim))
            if j % 3 == 0:
                index.remove(f"i{w}{j:03d}")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    threads += [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads[2:]:
        t.join()
    index.join_retrain()
    stop.set()
    for t in threads[:2]:
        t.join()
    assert not errors
    assert index.trainings >= 2  # 500 -> 600 items crossed 1.2 x 500
    ivf = index._ivf
    assert ivf is not None and ivf.ntotal == len(index) == len(index.item_ids())
    rows = {i: index.get(i) for i in index.item_ids()}
    for q, got in zip(queries, index.search(queries, 15), strict=True):
        CentroidIndexCongruence().assert_same_ranking(got, brute_force(rows, q, 15))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "forced",
    [{}, {"prefilter_fraction": 0.0, "prefilter_min_rows": 0}],
    ids=["prefilter", "widened"],
)
def test_filtered_searches_during_writes_and_a_background_retrain(
    forced: dict[str, float],
) -> None:
    """Writers add, re-term and remove items while a growth retrain runs; readers filter on a
    term the base items hold (never written: its answer is fixed, and with every list probed
    exact), through the pre-filter or the widened IVF search, and on a term the writers flip,
    whose hits must all be writers' items."""
    dim = 16
    rng = np.random.default_rng(3)
    rows = clustered(rng, 400, dim, n_clusters=10, spread=0.1)
    base = {f"b{i:03d}": rows[i] for i in range(400)}
    index = IvfCentroidIndex(
        dim,
        nlist=8,
        nprobe=8,
        min_train_items=200,
        retrain_growth=1.1,
        **forced,  # type: ignore[arg-type]
    )
    index.rebuild((name, v, frozenset({"base=1"})) for name, v in base.items())
    queries = np.stack([unit_row(np.random.default_rng(i).normal(size=dim)) for i in range(3)])
    want = [brute_force(base, q, 10) for q in queries]
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                got = index.search(queries, 10, frozenset({"base=1"}))
                for hits, expected in zip(got, want, strict=True):
                    CentroidIndexCongruence().assert_same_ranking(hits, expected)
                for hits in index.search(queries, 10, frozenset({"flip=on"})):
                    assert all(i.startswith("w") for i, _ in hits)
        except BaseException as exc:
            errors.append(exc)
            raise

    def writer(w: int) -> None:
        r = np.random.default_rng(w)
        for j in range(120):
            terms = frozenset({"flip=on"} if j % 2 else {"flip=off"})
            index.upsert(f"w{w}-{j % 40}", r.normal(size=dim), terms)
            if j % 3 == 0:
                index.remove(f"w{w}-{(j + 7) % 40}")

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    index.join_retrain()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert index.trainings >= 2  # 400 -> 476 items crossed 1.1 x 400
    for item_id in index.item_ids():
        terms = index.terms_of(item_id)
        row = index.get(item_id)
        assert terms is not None and row is not None
        assert item_id in {i for i, _ in index.search(row[None, :], 600, terms)[0]}


def test_free_slots_are_reused_and_never_returned() -> None:
    index = IvfCentroidIndex(4)
    for i in range(10):
        index.upsert(f"x{i}", np.eye(4)[i % 4] + 0.01 * i)
    for i in range(0, 10, 2):
        index.remove(f"x{i}")
    index.upsert("y", np.array([0, 0, 0, 1.0]))
    assert len(index._store.ids) == 10  # "y" took a freed slot
    got = index.search(np.eye(4, dtype=np.float32), 20)
    assert all(sorted(i for i, _ in hits) == sorted(index.item_ids()) for hits in got)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nlist": 0},
        {"nprobe": 0},
        {"refine": 0},
        {"min_train_items": 0},
        {"retrain_growth": 1.0},
        {"codes": "pq"},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        IvfCentroidIndex(8, **kwargs)  # type: ignore[arg-type]
