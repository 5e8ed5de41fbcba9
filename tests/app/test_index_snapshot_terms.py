"""An index snapshot keeps every item's filter terms and attributes: taken from an index (a
``RowExport`` one in chunks, another item by item) and loaded into a fresh one, the terms, the
attributes results return and every filtered search are the same as before."""

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


def snapshots(
    path: Path, store: SqliteStore, index: CentroidIndex, applier: IndexApplier | None = None
) -> IndexSnapshots:
    return IndexSnapshots(
        path=path,
        store=store,
        applier=applier or IndexApplier(index, ServiceMetrics()),
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


def test_attributes_survive_a_snapshot(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3")
    index = FlatCentroidIndex(DIM)
    applier = IndexApplier(index, ServiceMetrics())
    rng = np.random.default_rng(3)
    held = {}
    for i in range(30):
        index.upsert(f"i{i:02d}", rng.normal(size=DIM))
        if i % 4:
            held[f"i{i:02d}"] = {"sku": i, "name": f"Zürich {i}", "tags": [i, {"x": None}]}
            applier.attributes.set(f"i{i:02d}", held[f"i{i:02d}"])
    assert snapshots(tmp_path / "snap.bin", store, index, applier).take() == 30

    fresh_applier = IndexApplier(FlatCentroidIndex(DIM), ServiceMetrics())
    fresh_applier.attributes.set("stale", {"gone": True})  # replaced, not merged
    fresh = snapshots(tmp_path / "snap.bin", store, fresh_applier.index, fresh_applier)
    assert fresh.load() is not None
    for i in range(30):
        assert fresh_applier.attributes.get(f"i{i:02d}") == held.get(f"i{i:02d}", {})
    assert fresh_applier.attributes.get("stale") == {}
    assert len(fresh_applier.attributes) == len(held)
    assert fresh_applier.attributes.memory_bytes() == applier.attributes.memory_bytes()
    store.close()
