"""Batches of index writes (the change feed's pages): the same content as the writes one by one,
against a dict oracle and exact search, in one hold of the flat index's write lock; a bad row
changes nothing; an index without ``write_batch`` gets the writes one by one."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from index.centroid_math import l2_normalize
from index.flat_centroid_index import FlatCentroidIndex
from index.index_write_batch import BatchWrites, IndexWrite, write_batch
from index.ivf_centroid_index import IvfCentroidIndex

DIM = 8


def random_writes(rng: np.random.Generator, ids: int, count: int) -> list[IndexWrite]:
    """Upserts and removals over ``ids`` item ids, repeats and removals of absent items
    included."""
    out: list[IndexWrite] = []
    for _ in range(count):
        item_id = f"i{rng.integers(ids)}"
        if rng.random() < 0.3:
            out.append(IndexWrite(item_id, None))
        else:
            terms = frozenset({f"t={rng.integers(3)}"}) if rng.random() < 0.5 else frozenset()
            out.append(IndexWrite(item_id, rng.normal(size=DIM), terms))
    return out


def oracle(writes: list[IndexWrite]) -> dict[str, tuple[np.ndarray, frozenset[str]]]:
    held: dict[str, tuple[np.ndarray, frozenset[str]]] = {}
    for w in writes:
        if w.centroid is None:
            held.pop(w.item_id, None)
        else:
            held[w.item_id] = (w.centroid / np.linalg.norm(w.centroid), w.terms)
    return held


@pytest.mark.parametrize("seed", range(5))
def test_a_batch_leaves_what_the_writes_one_by_one_leave(seed: int) -> None:
    rng = np.random.default_rng(seed)
    first, second = random_writes(rng, 40, 60), random_writes(rng, 40, 120)
    index = FlatCentroidIndex(DIM)
    write_batch(index, first)
    version = index.version
    index.write_batch(second)
    assert index.version > version
    expected = oracle(first + second)
    assert sorted(index.item_ids()) == sorted(expected)
    for item_id, (row, terms) in expected.items():
        np.testing.assert_allclose(index.get(item_id), row, rtol=1e-6)  # type: ignore[arg-type]
        assert index.terms_of(item_id) == terms
    query = l2_normalize(rng.normal(size=(1, DIM))).astype(np.float32)
    for where in (None, frozenset({"t=1"})):
        exact = sorted(
            ((-float(row @ query[0]), item_id) for item_id, (row, t) in expected.items()
             if where is None or where <= t),
        )  # fmt: skip
        found = index.search(query, 5, where)[0]
        assert [i for i, _ in found] == [i for _, i in exact[:5]]
        np.testing.assert_allclose([s for _, s in found], [-s for s, _ in exact[:5]], atol=1e-5)


def test_a_bad_row_in_a_batch_changes_nothing() -> None:
    index = FlatCentroidIndex(DIM)
    index.upsert("a", np.ones(DIM))
    version = index.version
    bad = np.ones(DIM)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        index.write_batch(
            [IndexWrite("a", None), IndexWrite("b", np.ones(DIM)), IndexWrite("c", bad)]
        )
    with pytest.raises(ValueError):
        index.write_batch([IndexWrite("b", np.ones(DIM - 1))])
    assert index.item_ids() == ["a"] and index.version == version


def test_a_batch_is_written_in_one_hold_of_the_write_lock() -> None:
    """No read falls between the writes of one batch: a reader sampling the index while
    batches of appends go in sees whole batches only."""
    index = FlatCentroidIndex(DIM)
    size, batches = 20, 100
    seen: list[int] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            seen.append(len(index.item_ids()))  # under the read lock

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for b in range(batches):
            index.write_batch([IndexWrite(f"n{b}-{j}", np.ones(DIM)) for j in range(size)])
            time.sleep(0.0005)  # lets the reader in between batches
    finally:
        done.set()
        thread.join(5)
    assert len(index) == size * batches
    assert len(set(seen)) > 10  # the reader ran while the batches went in
    assert [n for n in seen if n % size] == []


def test_an_index_without_batches_gets_the_writes_one_by_one() -> None:
    index = IvfCentroidIndex(DIM, min_train_items=10**6, background_retrain=False)
    assert not isinstance(index, BatchWrites)
    writes = random_writes(np.random.default_rng(9), 20, 60)
    write_batch(index, writes)
    expected = oracle(writes)
    assert sorted(index.item_ids()) == sorted(expected)
    for item_id, (row, terms) in expected.items():
        np.testing.assert_allclose(index.get(item_id), row, rtol=1e-6)  # type: ignore[arg-type]
        assert index.terms_of(item_id) == terms
