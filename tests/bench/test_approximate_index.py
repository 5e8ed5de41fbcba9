"""bench.approximate_index at tiny sizes: the data is clustered and held out, the flat row is its
own exact answer and the IVF's recall is what its answers give, call times see the scheduler,
and the CLI prints and writes both rows and the targets for either kind of vectors."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.approximate_index import (
    PERTURBED,
    ClusteredVectors,
    IvfParams,
    clustered_set,
    main,
    run,
    timed_calls,
)
from bench.real_embedding_gallery import CropRecipe, real_embeddings
from tests.one_faiss_thread import one_faiss_thread
from tests.tiny_artifact import write_tiny_artifact


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread() -> Iterator[None]:
    # Many small FAISS calls: OpenMP's spinning threads cost more than the work (see there).
    with one_faiss_thread():
        yield


PARAMS = IvfParams(nlist=16, nprobe=4, refine=4, codes="fp16", seed=1)
REPS = dict(flat_search_reps=5, search_reps=20, update_reps=20)


def test_data_is_deterministic_clustered_and_queries_are_held_out() -> None:
    data = ClusteredVectors(3000, 32, items_per_cluster=100, spread=0.3, seed=4)
    again = ClusteredVectors(3000, 32, items_per_cluster=100, spread=0.3, seed=4)
    np.testing.assert_array_equal(data.chunk(0), again.chunk(0))
    rows = np.stack([r for _, r in data.items_iter()])
    assert rows.shape == (3000, 32) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    # Each row sits near one of 30 centres (noise norm ~0.3), far from i.i.d. behaviour.
    nearest = (rows @ data.centres.T).max(axis=1)
    assert data.centres.shape == (30, 32) and nearest.min() > 0.85
    q = data.queries(50)
    assert (q @ rows.T).max() < 1.0 - 1e-4  # no query is a gallery row


def test_run_reports_exact_flat_and_ivf_recall_from_its_answers() -> None:
    result = run(clustered_set(3000, 32, 50, 0.5, 40, seed=1), PARAMS, **REPS)
    flat, ivf = result.flat, result.ivf
    assert result.nlist == 16 and result.all_real is None
    assert flat.recall_at_10 == {PERTURBED: 1.0} and 0.8 <= ivf.recall_at_10[PERTURBED] <= 1.0
    for row in (flat, ivf):
        assert row.build_s > 0 and 0 < row.search.p50_ms <= row.search.p99_ms
        for times in (row.update, row.insert):
            assert times.calls == 20 and 0 < times.p50_ms <= times.p99_ms
        assert row.memory_bytes >= 3000 * 32 * 4
    # One list probed out of 16 on overlapping clusters must lose neighbours: recall is
    # computed, not assumed.
    narrow = run(
        clustered_set(3000, 32, 50, 1.5, 40, seed=1), IvfParams(16, 1, 4, "fp16", 1), **REPS
    )
    assert narrow.ivf.recall_at_10[PERTURBED] < 1.0


def test_call_times_are_wall_clock_beside_the_thread_cpu_time() -> None:
    slept = timed_calls(lambda i: time.sleep(0.002), 10)
    assert slept.calls == 10 and 2.0 <= slept.p50_ms <= slept.p99_ms
    # Sleeping is waiting, not work: a CPU clock that counted it would be the wall clock.
    assert slept.cpu_p99_ms < 1.0
    assert 0 <= slept.preempted <= 10
    seen: list[int] = []
    timed_calls(seen.append, 3)
    assert seen == [3, 0, 1, 2]  # the warm-up call has an index of its own


def _report(out: Path) -> dict[str, object]:
    (report,) = out.glob("approximate-index-*/approximate_index.json")
    assert (report.parent / "summary.txt").is_file()
    loaded: dict[str, object] = json.loads(report.read_text())
    return loaded


def test_main_clustered_prints_both_rows_and_the_targets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["--vectors", "clustered", "--items", "2000", "--dim", "16", "--nlist", "8"]
    reps = ["--flat-search-reps", "3", "--search-reps", "10", "--update-reps", "10"]
    main([*args, "--queries", "20", *reps, "--threads", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "vectors=clustered" in out and "items=2000 dim=16" in out and "nlist=8" in out
    assert re.search(r"^flat\s+\|.*\|\s+1\.0000 \|", out, re.M)
    assert re.search(r"^ivf\s+\|", out, re.M) and "ivf/flat: search p50" in out
    assert "IVF upsert p99, existing item" in out and "IVF upsert p99, new item" in out
    report = _report(tmp_path)
    assert report["vectors"] == "clustered" and report["items"] == 2000
    keys = [t["key"] for t in report["targets"]]  # type: ignore[attr-defined]
    assert keys == ["search_p50_ratio", "recall_at_10", "update_p99", "insert_p99"]


def test_main_real_vectors_prints_the_sizes_and_the_all_real_set(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The tiny artifact stands in for the default model: the CLI's real path (crops, cache,
    # spread, expansion, the all-real set) is what is under test here, not the model.
    model = write_tiny_artifact(tmp_path / "model")
    cache = tmp_path / "cache"
    args = ["--vectors", "real", "--model", str(model), "--cache-dir", str(cache)]
    recipe = ["--regions-per-photo", "1", "--gallery-views", "2", "--query-views", "1"]
    sizes = ["--items", "2000", "--items-per-base", "50", "--nlist", "8", "--queries", "15"]
    reps = ["--flat-search-reps", "3", "--search-reps", "10", "--update-reps", "10"]
    main([*args, *recipe, *sizes, *reps, "--threads", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert (
        "vectors=real: 20 real items (regions of 20 shipped photos) x 2 gallery + 1 held-out" in out
    )
    assert "= 60 crops through tiny-pooled-projection-1-" in out and "embedded in" in out
    assert "40 real views as centres, ~50 items each" in out
    assert "items=2000 dim=32; held-out queries: 15 perturbed, 15 real views" in out
    assert "IVF recall@10, held-out real views" in out
    assert "40 real views as items, 20 held-out real views as queries" in out
    report = _report(tmp_path)
    assert report["vectors"] == "real" and report["all_real"]["items"] == 40  # type: ignore[index]
    (cached,) = cache.glob("real-embeddings-tiny-pooled-projection-1-*.npy")
    assert np.load(cached).shape == (20, 3, 32)
    again = real_embeddings(model, CropRecipe(regions_per_photo=1, gallery_views=2), cache)
    assert again.embed_s == 0 and again.cache_file == cached
