"""Update cost of FlatCentroidIndex vs FAISS's own delete, at 1k, 10k and 100k items.

Measures, per index size, in one run:

* ``upsert`` of an existing item (in-place row overwrite) and ``remove`` + re-``upsert``
  (swap-with-last delete, then append) on ``FlatCentroidIndex``;
* the naive way: ``IndexIDMap2(IndexFlatIP)`` with ``remove_ids`` + ``add_with_ids``
  (``remove_ids`` scans every id, so it grows with the index);
* the time of one single-query top-10 search.

Run: ``.venv/bin/python -m bench.centroid_index_updates [--dim 1280] [--sizes ...]``
(1280 is the embedding dim of the default model's backbone). Finishes in well under 2 minutes
on 2 cores; the 100k indexes take 2 x 0.5 GB.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import faiss
import numpy as np
import numpy.typing as npt

from index.centroid_math import l2_normalize
from index.flat_centroid_index import FlatCentroidIndex


def timed(fn: Callable[[int], None], reps: int) -> npt.NDArray[np.float64]:
    """Per-call wall times in milliseconds of ``fn(rep)`` for ``rep in range(reps)``.

    One untimed call first, so thread-pool start-up and first-touch page faults are not timed.
    """
    fn(0)
    out = np.empty(reps)
    for r in range(reps):
        start = time.perf_counter()
        fn(r)
        out[r] = (time.perf_counter() - start) * 1e3
    return out


def stats(ms: npt.NDArray[np.float64]) -> tuple[float, float]:
    return float(ms.mean()), float(np.percentile(ms, 99))


def bench_size(n: int, dim: int, reps: int, naive_reps: int, rng: np.random.Generator) -> None:
    rows = l2_normalize(rng.normal(size=(n, dim)).astype(np.float32))
    fresh = l2_normalize(rng.normal(size=(max(reps, naive_reps), dim)).astype(np.float32))
    targets = rng.integers(0, n, size=max(reps, naive_reps))

    ours = FlatCentroidIndex(dim)
    ours.rebuild((f"item{i}", rows[i]) for i in range(n))
    naive = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    naive.add_with_ids(rows, np.arange(n, dtype=np.int64))

    def ours_upsert(r: int) -> None:
        ours.upsert(f"item{targets[r]}", fresh[r])

    def ours_remove_readd(r: int) -> None:
        item = f"item{targets[r]}"
        ours.remove(item)
        ours.upsert(item, fresh[r])

    def naive_update(r: int) -> None:
        ids = np.array([targets[r]], dtype=np.int64)
        # faiss's wrapper turns an id array into an IDSelector; its stubs know only the latter.
        naive.remove_ids(ids)  # type: ignore[arg-type]
        naive.add_with_ids(fresh[r : r + 1], ids)

    query = fresh[:1]

    def ours_search(_: int) -> None:
        ours.search(query, 10)

    def naive_search(_: int) -> None:
        naive.search(query, 10)

    up = stats(timed(ours_upsert, reps))
    rr = stats(timed(ours_remove_readd, reps))
    nv = stats(timed(naive_update, naive_reps))
    s_ours = stats(timed(ours_search, 20))
    s_naive = stats(timed(naive_search, 20))
    print(
        f"{n:>7} | {up[0]:8.4f} {up[1]:8.4f} | {rr[0]:8.4f} {rr[1]:8.4f} | "
        f"{nv[0]:9.3f} {nv[1]:9.3f} | {nv[0] / up[0]:8.0f}x {nv[0] / rr[0]:8.0f}x | "
        f"{s_ours[0]:8.2f} {s_naive[0]:8.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.centroid_index_updates", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--reps", type=int, default=500, help="updates timed per size (ours)")
    parser.add_argument("--naive-reps", type=int, default=50, help="updates timed (naive)")
    parser.add_argument("--threads", type=int, default=2, help="FAISS OpenMP threads")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"dim={args.dim}, faiss {faiss.__version__}, {args.threads} threads; times in ms")
    print(
        "  items | upsert existing   | remove + re-add   | naive remove_ids+add | "
        "naive/ours          | search k=10"
    )
    print(
        "        |     mean      p99 |     mean      p99 |      mean       p99 | "
        "vs upsert vs rm+add | flat    naive"
    )
    for n in args.sizes:
        bench_size(n, args.dim, args.reps, args.naive_reps, rng)


if __name__ == "__main__":
    main()
