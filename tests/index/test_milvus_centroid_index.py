"""MilvusCentroidIndex on a real Milvus Lite: the congruence suite (filtered search included),
terms escaped into filter expressions and held within the field's limits, ties sorted by item id
whatever order Milvus returns them in, k above Milvus's cap, upsert replacing, the longest and
oddest item ids the service accepts, rebuild keeping the old content on bad input, attaching
to an existing namespace, and a typed error when Milvus is unreachable.

One Milvus Lite database per module (Milvus Lite allows one process per database file and
costs a start-up), a fresh collection per index."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.dependencies import ITEM_ID_PATTERN
from index.index_errors import IndexUnavailableError
from index.milvus_centroid_index import (
    MAX_ITEM_ID_LENGTH,
    MILVUS_MAX_TERM_BYTES,
    MILVUS_MAX_TERMS,
    MILVUS_MAX_TOP_K,
    MilvusCentroidIndex,
)
from tests.index.centroid_index_congruence import (
    CentroidIndexCongruence,
    MakeIndex,
    brute_force,
    unit_row,
)

pymilvus = pytest.importorskip("pymilvus")

_names = itertools.count()


def fresh_name() -> str:
    return f"t{next(_names)}"


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    db = Path(tmp_path_factory.mktemp("milvus")) / "index.db"
    client = pymilvus.MilvusClient(str(db))
    yield client
    client.close()


@pytest.fixture
def make_index(milvus: Any) -> MakeIndex:
    def make(dim: int) -> MilvusCentroidIndex:
        return MilvusCentroidIndex(milvus, fresh_name(), dim)

    return make


class TestMilvusCentroidIndexCongruence(CentroidIndexCongruence):
    """Scores are re-computed in float64 from the rows Milvus returns, so the default
    ``score_atol`` holds."""


class ShufflingClient:
    """The real client, but every search answer comes back in a random order, as Milvus may
    return equal scores (and here even unequal ones) in any order."""

    def __init__(self, inner: Any, seed: int) -> None:
        self._inner = inner
        self._rng = np.random.default_rng(seed)
        self.limits: list[int] = []
        self.filters: list[str] = []

    def search(self, *args: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
        self.limits.append(int(kwargs["limit"]))
        self.filters.append(str(kwargs.get("filter", "")))
        out = []
        for hits in self._inner.search(*args, **kwargs):
            hits = list(hits)
            # Keep the set Milvus chose (its top-``limit``); only the order is scrambled, and
            # the float32 scores, so the index cannot rely on them for ties either.
            out.append([hits[i] for i in self._rng.permutation(len(hits))])
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_ties_are_sorted_by_item_id_whatever_order_milvus_returns(milvus: Any) -> None:
    d = 8
    rng = np.random.default_rng(7)
    shared = rng.normal(size=d)
    tied = [f"t{i:03d}" for i in range(60)]
    client = ShufflingClient(milvus, seed=3)
    index = MilvusCentroidIndex(client, fresh_name(), d)  # type: ignore[arg-type]
    others = {f"o{i:03d}": rng.normal(size=d) for i in range(40)}
    index.rebuild(
        [(name, shared) for name in reversed(tied)] + list(others.items())  # worst order
    )
    rows = {name: unit_row(shared) for name in tied} | {n: unit_row(v) for n, v in others.items()}
    q = unit_row(shared)[None, :]
    for k in (1, 3, 59, 60, 61, 100):
        (hits,) = index.search(q, k)
        assert [i for i, _ in hits] == [i for i, _ in brute_force(rows, q[0], k)]
        assert hits[: min(k, 60)] == [(name, hits[0][1]) for name in tied[: min(k, 60)]]
    # 60 ties cannot fit in the first request (k + 16); the search must have widened.
    assert max(client.limits) > 1 + 16


def test_filtered_ties_are_sorted_by_item_id_whatever_order_milvus_returns(milvus: Any) -> None:
    """Milvus filters by expression and returns the matching rows in any order: the index still
    widens past the tied matching rows and sorts them by id; the expression names every
    required term once, quoted."""
    d = 8
    rng = np.random.default_rng(8)
    shared = rng.normal(size=d)
    client = ShufflingClient(milvus, seed=5)
    index = MilvusCentroidIndex(client, fresh_name(), d)  # type: ignore[arg-type]
    items = [(f"t{i:03d}", shared, frozenset({f"keep={i % 2}", 'q="x"'})) for i in range(80)]
    items += [(f"o{i:03d}", rng.normal(size=d), frozenset({"keep=1"})) for i in range(40)]
    index.rebuild(reversed(items))
    where = frozenset({"keep=1", 'q="x"'})
    q = unit_row(shared)[None, :]
    for k in (1, 10, 40, 41):
        (hits,) = index.search(q, k, where)
        assert [i for i, _ in hits] == [f"t{i:03d}" for i in range(1, 80, 2)][:k]
    assert client.filters[-1] == 'array_contains_all(terms, ["keep=1", "q=\\"x\\""])'
    assert max(client.limits) > 1 + 16  # 40 matching ties: the first request could not hold them
    index.search(q, 3)
    assert client.filters[-1] == ""


def test_k_above_the_cap_is_capped(make_index: MakeIndex) -> None:
    index = make_index(4)
    index.upsert("a", np.array([1.0, 0, 0, 0]))
    index.upsert("b", np.array([0.0, 1, 0, 0]))
    (hits,) = index.search(np.array([[1.0, 0, 0, 0]], np.float32), MILVUS_MAX_TOP_K + 5000)
    assert [i for i, _ in hits] == ["a", "b"]


def test_cap_bounds_what_milvus_is_asked(milvus: Any) -> None:
    client = ShufflingClient(milvus, seed=1)
    index = MilvusCentroidIndex(client, fresh_name(), 2)  # type: ignore[arg-type]
    index.upsert("a", np.array([1.0, 0]))
    index.search(np.array([[1.0, 0]], np.float32), 10**6)
    assert client.limits == [MILVUS_MAX_TOP_K]


def test_upsert_replaces_the_row_and_keeps_one(make_index: MakeIndex) -> None:
    index = make_index(3)
    index.upsert("a", np.array([1.0, 0, 0]))
    index.upsert("a", np.array([0, 0, 5.0]))
    assert len(index) == 1 and index.item_ids() == ["a"]
    np.testing.assert_array_equal(index.get("a"), [0, 0, 1.0])
    (hits,) = index.search(np.array([[1.0, 0, 0]], np.float32), 5)
    assert hits == [("a", 0.0)]


def test_upsert_many_writes_every_row_once_and_refuses_repeats(milvus: Any) -> None:
    d = 4
    rng = np.random.default_rng(13)
    index = MilvusCentroidIndex(milvus, fresh_name(), d)
    index.upsert("keep", np.ones(d))
    n = 2100  # more than two Milvus calls' worth of rows
    batch = {f"b{i:04d}": rng.normal(size=d) for i in range(n)}
    batch["keep"] = np.array([1.0, 0, 0, 0])
    version = index.version
    index.upsert_many(batch.items())
    assert index.version > version and len(index) == n + 1
    rows = {item: unit_row(v) for item, v in batch.items()}
    for item in ("b0000", "b2099", "keep"):
        np.testing.assert_array_equal(index.get(item), rows[item])
    q = unit_row(rng.normal(size=d))
    got, want = index.search(q[None, :], 5)[0], brute_force(rows, q, 5)
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=0, atol=1e-9)
    version = index.version
    with pytest.raises(ValueError):
        index.upsert_many([("new", np.ones(d)), ("new", np.ones(d))])
    with pytest.raises(ValueError):
        index.upsert_many([("new", np.ones(d)), ("bad", np.ones(d + 1))])
    index.upsert_many([])
    assert "new" not in index and len(index) == n + 1 and index.version == version


def test_longest_and_unusual_item_ids_the_service_accepts(make_index: MakeIndex) -> None:
    ids = [
        "x" * MAX_ITEM_ID_LENGTH,
        "a:b-c_d.e",
        ".hidden",
        "...",
        "-",
        "_",
        ":" * MAX_ITEM_ID_LENGTH,
        "Z9.-_:",
    ]
    pattern = re.compile(ITEM_ID_PATTERN)
    assert all(pattern.fullmatch(i) for i in ids)
    assert not pattern.fullmatch("y" * (MAX_ITEM_ID_LENGTH + 1))
    d = 4
    rng = np.random.default_rng(11)
    index = make_index(d)
    rows = {}
    for item in ids:
        v = rng.normal(size=d)
        index.upsert(item, v)
        rows[item] = unit_row(v)
    assert sorted(index.item_ids()) == sorted(ids) and all(i in index for i in ids)
    for item in ids:
        np.testing.assert_array_equal(index.get(item), rows[item])
    q = unit_row(rng.normal(size=d))
    assert [i for i, _ in index.search(q[None, :], 8)[0]] == [i for i, _ in brute_force(rows, q, 8)]
    assert index.remove(":" * MAX_ITEM_ID_LENGTH) and len(index) == len(ids) - 1
    with pytest.raises(ValueError):
        index.upsert("y" * (MAX_ITEM_ID_LENGTH + 1), np.ones(d))
    assert "y" * (MAX_ITEM_ID_LENGTH + 1) not in index


def test_failed_rebuild_keeps_the_old_content_and_leaves_no_collection(milvus: Any) -> None:
    name = fresh_name()
    index = MilvusCentroidIndex(milvus, name, 2)
    index.rebuild([("a", np.array([1.0, 0]))])
    before = set(milvus.list_collections())

    def bad_items() -> Iterator[tuple[str, np.ndarray]]:
        yield from ((f"i{i}", np.array([1.0, i])) for i in range(2500))  # > 2 batches
        yield ("late", np.array([np.nan, 0.0]))

    with pytest.raises(ValueError):
        index.rebuild(bad_items())
    assert set(milvus.list_collections()) == before
    assert index.item_ids() == ["a"]
    index.rebuild((f"i{i}", np.array([1.0, i])) for i in range(2500))
    assert len(index) == 2500 and "a" not in index
    assert sum(c.startswith(f"{name}__") for c in milvus.list_collections()) == 1


def test_a_second_object_attaches_to_the_same_namespace(milvus: Any) -> None:
    name = fresh_name()
    first = MilvusCentroidIndex(milvus, name, 3)
    first.rebuild([("a", np.array([1.0, 0, 0]))])
    again = MilvusCentroidIndex(milvus, name, 3)
    assert again.item_ids() == ["a"]
    again.upsert("b", np.array([0, 1.0, 0]))
    assert "b" in first  # strong consistency: one writer's change is the other's next read
    with pytest.raises(ValueError):
        MilvusCentroidIndex(milvus, name, 4)
    first.drop()
    assert not any(c.startswith(f"{name}__") for c in milvus.list_collections())


def test_unreachable_milvus_raises_index_unavailable() -> None:
    with pytest.raises(IndexUnavailableError):
        MilvusCentroidIndex("http://127.0.0.1:9", fresh_name(), 4, timeout=1.0)


def test_every_call_raises_index_unavailable_once_milvus_is_gone(tmp_path: Path) -> None:
    client = pymilvus.MilvusClient(str(tmp_path / "gone.db"))
    index = MilvusCentroidIndex(client, fresh_name(), 4)
    index.upsert("a", np.ones(4))
    version = index.version
    client.close()
    calls = [
        lambda: index.upsert("b", np.ones(4)),
        lambda: index.upsert_many([("b", np.ones(4))]),
        lambda: index.remove("a"),
        lambda: index.rebuild([("b", np.ones(4))]),
        lambda: index.search(np.ones((1, 4), np.float32), 3),
        lambda: index.get("a"),
        lambda: len(index),
        lambda: "a" in index,
        lambda: index.item_ids(),
        lambda: index.memory_bytes(),
    ]
    for call in calls:
        with pytest.raises(IndexUnavailableError):
            call()
    assert index.version == version


def test_rows_keep_the_version_they_were_written_with(make_index: MakeIndex) -> None:
    index = make_index(3)
    index.upsert("plain", np.array([1.0, 0, 0]))  # the CentroidIndex call: version 0
    index.upsert_versioned([("a", np.array([0, 1.0, 0]), 7), ("b", np.array([0, 0, 2.0]), 9)])
    index.upsert_versioned([("a", np.array([0, 3.0, 0]), 12)])
    assert index.stored_version("a") == 12 and index.stored_version("missing") is None
    assert index.stored_versions() == {"plain": 0, "a": 12, "b": 9}
    np.testing.assert_array_equal(index.get("b"), [0, 0, 1.0])
    with pytest.raises(ValueError):
        index.upsert_versioned([("c", np.ones(3), 1), ("c", np.ones(3), 2)])
    assert index.remove("a") and index.stored_versions() == {"plain": 0, "b": 9}


class TimeoutRecordingClient:
    """The real client; every call's name and ``timeout`` keyword are recorded (but
    ``prepare_index_params``'s, which builds a local object and calls no one)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple[str, float | None]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs.get("timeout")))
            return attr(*args, **kwargs)

        return attr if name == "prepare_index_params" else call

    def taken(self) -> dict[str, set[float | None]]:
        """Call name -> the timeouts it was given, since the last ``taken``."""
        out: dict[str, set[float | None]] = {}
        for name, timeout in self.calls:
            out.setdefault(name, set()).add(timeout)
        self.calls.clear()
        return out


def test_request_path_calls_take_the_short_timeout_set_up_and_bulk_ones_the_long(
    milvus: Any,
) -> None:
    short, long = 0.75, 7.5
    client = TimeoutRecordingClient(milvus)
    index = MilvusCentroidIndex(client, fresh_name(), 2, timeout=short, admin_timeout=long)
    set_up = client.taken()
    assert {"list_aliases", "create_collection", "create_index", "load_collection"} <= set(set_up)
    assert set_up == {n: {long} for n in set_up}

    index.upsert("a", np.array([1.0, 0.0]))
    index.upsert_versioned([("b", np.array([0.0, 1.0]), 3)])  # a write's settle: one row
    index.search(np.array([[1.0, 0.0]], np.float32), 1)
    index.get("a")
    assert "a" in index and len(index) == 2 and index.stored_version("b") == 3
    assert index.remove("a")
    request_path = client.taken()
    assert {"upsert", "search", "get", "query", "delete"} <= set(request_path)
    assert request_path == {n: {short} for n in request_path}

    index.upsert_versioned([("c", np.array([1.0, 1.0]), 4), ("d", np.array([1.0, 2.0]), 5)])
    assert index.stored_versions() == {"b": 3, "c": 4, "d": 5}
    assert sorted(index.item_ids()) == ["b", "c", "d"]
    index.rebuild([("e", np.array([2.0, 1.0]))])
    bulk = client.taken()
    assert {"upsert", "query_iterator", "insert", "alter_alias", "drop_collection"} <= set(bulk)
    assert bulk == {n: {long} for n in bulk}
    index.drop()


def test_timeouts_must_be_positive(milvus: Any) -> None:
    for timeouts in ({"timeout": 0.0}, {"admin_timeout": -1.0}):
        with pytest.raises(ValueError, match="timeouts must be positive"):
            MilvusCentroidIndex(milvus, fresh_name(), 2, **timeouts)


def test_versioned_rows_and_upsert_many_carry_terms(make_index: MakeIndex) -> None:
    index = make_index(2)
    index.upsert_versioned(
        [("a", np.array([1.0, 0]), 3, frozenset({"c=1"})), ("b", np.array([0, 1.0]), 4)]
    )
    index.upsert_many([("c", np.array([1.0, 1.0]), frozenset({"c=1", "d=2"}))])
    assert index.terms_of("a") == frozenset({"c=1"}) and index.terms_of("b") == frozenset()
    assert index.stored_version("a") == 3
    q = np.array([[1.0, 0]], np.float32)
    assert [i for i, _ in index.search(q, 5, frozenset({"c=1"}))[0]] == ["a", "c"]
    assert [i for i, _ in index.search(q, 5, frozenset({"d=2", "c=1"}))[0]] == ["c"]


def test_terms_milvus_expressions_cannot_hold_raw_are_escaped(make_index: MakeIndex) -> None:
    """Quotes, backslashes, newlines, tabs, a closing bracket and non-ASCII: each term finds
    exactly its item (an unescaped quote would end the literal early; a term looking like
    expression syntax must stay a string)."""
    odd = [
        'name="quoted"',
        "path=C:\\dir\\",
        "note=line1\nline2",
        "tab=a\tb\rc",
        'inject=x"]) or array_contains_all(terms, ["',
        "bracket=]",
        "city=Zürich 東京",
        "apostrophe=it's",
    ]
    index = make_index(2)
    for i, term in enumerate(odd):
        index.upsert(f"i{i}", np.array([1.0, i]), frozenset({term, "all=1"}))
    q = np.array([[1.0, 0]], np.float32)
    for i, term in enumerate(odd):
        (hits,) = index.search(q, 10, frozenset({term}))
        assert [h for h, _ in hits] == [f"i{i}"], term
        assert index.terms_of(f"i{i}") == frozenset({term, "all=1"})
    assert len(index.search(q, 10, frozenset({"all=1"}))[0]) == len(odd)
    assert index.search(q, 10, frozenset({odd[0], odd[1]})) == [[]]


def test_terms_over_the_field_limits_are_refused(make_index: MakeIndex) -> None:
    index = make_index(2)
    longest = "k=" + "é" * ((MILVUS_MAX_TERM_BYTES - 2) // 2)  # 2 bytes a character
    index.upsert("fits", np.ones(2), frozenset({f"t={i}" for i in range(MILVUS_MAX_TERMS - 1)}))
    index.upsert("long", np.ones(2), frozenset({longest}))
    assert index.terms_of("long") == frozenset({longest})
    with pytest.raises(ValueError, match="at most"):
        index.upsert("many", np.ones(2), frozenset({f"t={i}" for i in range(MILVUS_MAX_TERMS + 1)}))
    with pytest.raises(ValueError, match="bytes"):
        index.upsert("too-long", np.ones(2), frozenset({longest + "é"}))
    assert "many" not in index and "too-long" not in index


def test_a_collection_without_terms_is_refused_clearly(milvus: Any) -> None:
    """A collection made before terms existed (its schema had a JSON ``attributes`` field
    instead) is not silently used: filters could not work on it."""
    from pymilvus import DataType

    name = fresh_name()
    physical = f"{name}__g1"
    schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("item_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ITEM_ID_LENGTH)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("attributes", DataType.JSON)
    schema.add_field("version", DataType.INT64)
    milvus.create_collection(physical, schema=schema)
    milvus.create_alias(physical, name)
    with pytest.raises(ValueError, match="no 'terms' field"):
        MilvusCentroidIndex(milvus, name, 4)
    milvus.drop_alias(name)
    milvus.drop_collection(physical)
