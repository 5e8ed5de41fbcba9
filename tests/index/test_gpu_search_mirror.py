"""GpuSearchMirror copy/refresh logic. No GPU here, so (only) the faiss GPU calls are mocked:
the "GPU index" is the CPU snapshot FAISS would have copied to the device."""

from __future__ import annotations

import time
from typing import Any

import faiss
import numpy as np
import pytest

from index.centroid_math import l2_normalize
from index.flat_centroid_index import FlatCentroidIndex
from index.gpu_search_mirror import GpuSearchMirror, gpu_available


class FakeGpu:
    def __init__(self) -> None:
        self.copies: list[tuple[int, int]] = []

    def index_cpu_to_gpu(self, resources: Any, device: int, index: Any) -> Any:
        self.copies.append((device, index.ntotal))
        return index


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> FakeGpu:
    gpu = FakeGpu()
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", gpu.index_cpu_to_gpu, raising=False)
    return gpu


def unit(*v: float) -> np.ndarray:
    return l2_normalize(np.array(v, dtype=np.float64))


def test_refuses_without_a_gpu() -> None:
    if gpu_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(RuntimeError):
        GpuSearchMirror(FlatCentroidIndex(2))


def test_copies_once_and_answers_like_the_cpu_index(fake_gpu: FakeGpu) -> None:
    cpu = FlatCentroidIndex(3)
    for name, v in {"a": (1, 0, 0), "b": (0, 1, 0), "c": (1, 1, 0)}.items():
        cpu.upsert(name, np.array(v, dtype=np.float64))
    mirror = GpuSearchMirror(cpu, device=2, refresh_interval_ms=0)
    assert fake_gpu.copies == [(2, 3)]
    q = np.stack([unit(1, 0.2, 0), unit(0, 1, 0)])
    got = mirror.search(q, 2)
    want = cpu.search(q, 2)
    assert [[i for i, _ in h] for h in got] == [[i for i, _ in h] for h in want]
    assert fake_gpu.copies == [(2, 3)]  # unchanged CPU index: no new copy
    assert mirror.version == cpu.version


def test_refresh_is_debounced_and_maps_slots_with_its_snapshot(fake_gpu: FakeGpu) -> None:
    cpu = FlatCentroidIndex(2)
    cpu.upsert("a", unit(1, 0))
    cpu.upsert("b", unit(0, 1))
    mirror = GpuSearchMirror(cpu, refresh_interval_ms=300)
    # Removing "a" moves "b" into slot 0 on the CPU; the stale copy must still say "a" for it.
    cpu.remove("a")
    cpu.upsert("c", unit(-1, 0))
    hits = mirror.search(unit(1, 0)[None, :], 1)
    assert hits == [[("a", pytest.approx(1.0))]]
    assert len(fake_gpu.copies) == 1
    time.sleep(0.35)
    hits = mirror.search(unit(1, 0)[None, :], 3)
    assert len(fake_gpu.copies) == 2
    assert [i for i, _ in hits[0]] == ["b", "c"]
    assert mirror.version == cpu.version
    cpu.upsert("d", unit(1, 0))
    assert mirror.refresh(force=True)
    assert mirror.search(unit(1, 0)[None, :], 1)[0][0][0] == "d"
    assert not mirror.refresh(force=True)


def test_very_wide_searches_fall_back_to_the_cpu_index(fake_gpu: FakeGpu) -> None:
    cpu = FlatCentroidIndex(2)
    cpu.rebuild((f"i{n:04d}", unit(1, n / 3000)) for n in range(2500))
    mirror = GpuSearchMirror(cpu)
    got = mirror.search(unit(1, 0)[None, :], 2100)
    assert got == cpu.search(unit(1, 0)[None, :], 2100)


def test_filtered_searches_bypass_the_copy_and_see_the_latest_writes(fake_gpu: FakeGpu) -> None:
    """The GPU copy holds no terms: a filtered search is the CPU index's, current even while
    the copy is stale, and costs no copy; an empty filter is the mirror's unfiltered search."""
    cpu = FlatCentroidIndex(2)
    cpu.upsert("a", unit(1, 0), frozenset({"c=x"}))
    cpu.upsert("b", unit(1, 0.1), frozenset({"c=y"}))
    mirror = GpuSearchMirror(cpu, refresh_interval_ms=60_000)
    cpu.upsert("c", unit(1, 0.05), frozenset({"c=y"}))  # after the copy, within the interval
    q = unit(1, 0)[None, :]
    got = mirror.search(q, 5, frozenset({"c=y"}))
    assert got == cpu.search(q, 5, frozenset({"c=y"}))
    assert [i for i, _ in got[0]] == ["c", "b"]
    assert len(fake_gpu.copies) == 1
    assert [i for i, _ in mirror.search(q, 5, frozenset())[0]] == ["a", "b"]  # the stale copy
