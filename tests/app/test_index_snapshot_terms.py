"""An index snapshot keeps every item's filter terms: taken from an index (a ``RowExport`` one
in chunks, another item by item) and loaded into a fresh one, the terms and every filtered
search are the same as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.index_applier import IndexApplier
from app.index_snapshots import IndexSnapshots
from app.metrics import ServiceMetrics
from app.striped_lock import StripedLock
from index.centroid_index import CentroidIndex
from index.centroid_math import l2_normalize
from index.flat_centroid_index import FlatCentroidIndex
from index.ivf_centroid_index import IvfCentroidIndex
from store.records import ModelIdentity
from store.sqlite_store import SqliteStore

DIM = 6
IDENTITY = ModelIdentity("m", "1", DIM)


def snapshots(path: Path, store: SqliteStore, index: CentroidIndex) -> IndexSnapshots:
    return IndexSnapshots(
        path=path,
        store=store,
        applier=IndexApplier(index, ServiceMetrics()),
        item_locks=StripedLock(),
        identity=IDENTITY,
        metrics=ServiceMetrics(),
        interval_s=3600,
        min_changes=10**9,
    )


@pytest.mark.parametrize("make_index", [FlatCentroidIndex, IvfCentroidIndex])
def test_terms_survive_a_snapshot(tmp_path: Path, make_index: type[CentroidIndex]) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3")
    rng = np.random.default_rng(2)
    index = make_index(DIM)  # type: ignore[call-arg]
    for i in range(60):
        terms = frozenset({f"mod={i % 3}", f"id={i}"}) if i % 5 else frozenset()
        index.upsert(f"i{i:02d}", rng.normal(size=DIM), terms)
    index.remove("i07")  # the flat index moves its last row, and its terms, into the gap
    assert snapshots(tmp_path / "snap.bin", store, index).take() == 59

    fresh = make_index(DIM)  # type: ignore[call-arg]
    loaded = snapshots(tmp_path / "snap.bin", store, fresh).load()
    assert loaded is not None and loaded.items == 59
    for item_id in index.item_ids():
        assert fresh.terms_of(item_id) == index.terms_of(item_id)
    q = l2_normalize(rng.normal(size=(4, DIM)))
    for where in (frozenset({"mod=1"}), frozenset({"mod=2", "id=8"}), frozenset({"id=5"})):
        assert fresh.search(q, 10, where) == index.search(q, 10, where)
    assert len(fresh.search(q, 100, frozenset({"mod=1"}))[0]) == sum(
        1 for i in range(60) if i % 5 and i % 3 == 1 and i != 7
    )
    store.close()
