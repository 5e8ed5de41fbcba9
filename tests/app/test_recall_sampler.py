"""The recall sampler on a real trained IVF index: the recall@10 it exports equals a brute-force
recall computed here; a full queue drops and counts samples without ever holding a search up;
rate 0 (and an exact index) samples nothing; the retriever closes its thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from app.metrics import RECALL_RECENT_SAMPLES, ServiceMetrics
from app.recall_sampler import RECALL_K, RecallSampler, recall_sampler_for
from app.service_state import build_retriever
from app.settings import Settings
from index.exact_searchable import ExactSearchable
from index.flat_centroid_index import FlatCentroidIndex
from index.ivf_centroid_index import IvfCentroidIndex
from index.milvus_centroid_index import MilvusCentroidIndex
from tests.index.centroid_index_congruence import brute_force
from tests.one_faiss_thread import one_faiss_thread


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread() -> Iterator[None]:
    # Many small FAISS calls: OpenMP's spinning threads cost more than the work (see there).
    with one_faiss_thread():
        yield


DIM = 24


def clustered(rng: np.random.Generator, n: int, clusters: int) -> npt.NDArray[np.float32]:
    """``(n, DIM)`` unit rows around ``clusters`` random centres (neighbours to find)."""
    centres = rng.normal(size=(clusters, DIM))
    x = centres[rng.integers(0, clusters, n)] + rng.normal(scale=0.45, size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def trained_ivf(
    rows: npt.NDArray[np.float32], index_type: type[IvfCentroidIndex]
) -> IvfCentroidIndex:
    # One list probed of 32: recall well below 1, so a sampler that always said 1 would fail.
    index = index_type(DIM, nlist=32, nprobe=1, min_train_items=100, background_retrain=False)
    index.rebuild((f"item-{i:04d}", row) for i, row in enumerate(rows))
    assert index.trained
    return index


def sample_value(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_exported_recall_equals_brute_force_recall() -> None:
    rng = np.random.default_rng(3)
    rows = clustered(rng, 2000, 40)
    index = trained_ivf(rows, IvfCentroidIndex)
    gallery = {f"item-{i:04d}": row for i, row in enumerate(rows)}
    metrics = ServiceMetrics()
    n = RECALL_RECENT_SAMPLES + 20  # past the recent window
    sampler = RecallSampler(index, metrics, rate=1.0, queue_size=n)
    held_out = clustered(rng, n, 40)
    want: list[float] = []
    for i, q in enumerate(held_out):
        k = (3, 10, 25)[i % 3]  # fewer than 10: the sampler searches again at 10
        hits = index.search(q[np.newaxis, :], k)[0]
        sampler.offer(q[np.newaxis, :], k, hits)
        served = hits[:RECALL_K] if k >= RECALL_K else index.search(q[np.newaxis, :], 10)[0]
        exact = {item for item, _ in brute_force(gallery, q, RECALL_K)}
        want.append(len(exact & {item for item, _ in served}) / RECALL_K)
    assert sampler.wait_idle(30)
    sampler.close()
    assert sample_value(metrics, "retrieval_recall_samples_total", outcome="measured") == n
    assert sample_value(metrics, "retrieval_index_recall_at_10_count") == n
    assert sample_value(metrics, "retrieval_index_recall_at_10_sum") == pytest.approx(sum(want))
    recent = want[-RECALL_RECENT_SAMPLES:]
    assert sample_value(metrics, "retrieval_index_recall_at_10_recent") == pytest.approx(
        sum(recent) / len(recent)
    )
    # The histogram's buckets hold what was measured.
    assert sample_value(metrics, "retrieval_index_recall_at_10_bucket", le="0.9") == sum(
        w <= 0.9 for w in want
    )
    assert 0.3 < sum(want) / n < 0.97  # approximate indeed, and not useless


class GatedIvf(IvfCentroidIndex):
    """The real index; its exact searches wait for ``gate`` (``entered`` says one is waiting)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gate = threading.Event()
        self.entered = threading.Event()

    def exact_search(
        self, queries: npt.NDArray[np.floating], k: int
    ) -> list[list[tuple[str, float]]]:
        self.entered.set()
        assert self.gate.wait(30)
        return super().exact_search(queries, k)


def test_a_full_queue_drops_and_counts_without_holding_a_search_up() -> None:
    rng = np.random.default_rng(4)
    index = trained_ivf(clustered(rng, 500, 20), GatedIvf)
    assert isinstance(index, GatedIvf)
    metrics = ServiceMetrics()
    sampler = RecallSampler(index, metrics, rate=1.0, queue_size=2)
    queries = clustered(rng, 8, 20)
    hits = index.search(queries[:1], 10)[0]
    sampler.offer(queries[:1], 10, hits)
    assert index.entered.wait(10)  # the thread is stuck measuring the first
    took = []
    for q in queries[1:]:
        start = time.perf_counter()
        sampler.offer(q[np.newaxis, :], 10, hits)
        took.append(time.perf_counter() - start)
    assert max(took) < 0.05, took
    assert sample_value(metrics, "retrieval_recall_samples_total", outcome="dropped") == 5
    index.gate.set()
    assert sampler.wait_idle(10)
    assert sample_value(metrics, "retrieval_recall_samples_total", outcome="measured") == 3
    sampler.close()


def test_a_rate_samples_about_that_fraction() -> None:
    rng = np.random.default_rng(5)
    index = trained_ivf(clustered(rng, 500, 20), IvfCentroidIndex)
    metrics = ServiceMetrics()
    sampler = RecallSampler(index, metrics, rate=0.25, queue_size=1000, seed=11)
    q = clustered(rng, 1, 20)
    hits = index.search(q, 10)[0]
    for _ in range(400):
        sampler.offer(q, 10, hits)
    assert sampler.wait_idle(30)
    sampler.close()
    measured = sample_value(metrics, "retrieval_recall_samples_total", outcome="measured")
    assert 60 <= measured <= 140, measured  # binomial(400, 0.25): mean 100, sd 8.7


def test_rate_zero_or_an_exact_index_samples_nothing(tmp_path: Path, tiny_model_path: Path) -> None:
    ivf = trained_ivf(clustered(np.random.default_rng(6), 300, 10), IvfCentroidIndex)
    metrics = ServiceMetrics()
    assert recall_sampler_for(ivf, metrics, rate=0.0, queue_size=8) is None
    assert recall_sampler_for(FlatCentroidIndex(DIM), metrics, rate=1.0, queue_size=8) is None
    # Milvus's FLAT index is exact too: it offers no exact_search to compare with.
    assert not issubclass(MilvusCentroidIndex, ExactSearchable)
    with pytest.raises(ValueError, match="rate"):
        RecallSampler(ivf, metrics, rate=0.0, queue_size=8)
    base: dict[str, Any] = {"model_path": tiny_model_path, "data_dir": tmp_path, "allow_gpu": False}
    off = build_retriever(Settings(**base, index="ivf", recall_sample_rate=0), metrics)
    assert off.recall_sampler is None
    off.close()
    on = build_retriever(Settings(**base, index="ivf"), metrics)
    sampler = on.recall_sampler
    assert sampler is not None and sampler.running
    on.close()  # the retriever closes the sampler's thread
    assert not sampler.running
