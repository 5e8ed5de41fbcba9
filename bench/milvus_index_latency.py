"""Milvus Lite next to the FAISS flat index: load, upsert (single and batch) and search latency.

Both indexes get the same ``--items`` unit-norm rows (i.i.d. Gaussian: the latency of an
exact index does not depend on the data) and then, in one run and in the same order:

* ``rebuild`` of the whole gallery (seconds);
* single-query top-``--k`` searches, p50/p99 in ms, and 16-query batches, p50/p99 per batch;
* single upserts of existing items (replacing a row), p50/p99 in ms;
* batch upserts of ``--batch`` existing items (FAISS: that many single upserts; Milvus: one
  ``upsert_many``), p50/p99 per batch in ms;
* the two searches again: Milvus keeps upserted rows in a growing segment, searched by a
  slower path than the sealed, indexed rows of the rebuild, until it seals them.

Milvus Lite runs in its own server process on a database file in a temporary directory
(removed at the end), reached over a local socket, like standalone Milvus minus the network;
it is not a measure of a Milvus cluster.

Run: ``.venv/bin/python -m bench.milvus_index_latency --items 10000 --dim 1280``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from bench.centroid_index_updates import timed
from index.centroid_index import CentroidIndex
from index.centroid_math import l2_normalize
from index.flat_centroid_index import FlatCentroidIndex
from index.milvus_centroid_index import MilvusCentroidIndex


def p50_p99(ms: npt.NDArray[np.float64]) -> str:
    return f"{np.percentile(ms, 50):9.3f} {np.percentile(ms, 99):9.3f}"


def measure(
    name: str,
    index: CentroidIndex,
    batch_upsert: Callable[[list[tuple[str, npt.NDArray[np.float32]]]], None],
    rows: npt.NDArray[np.float32],
    args: argparse.Namespace,
) -> None:
    n = rows.shape[0]
    rng = np.random.default_rng(1)
    fresh = l2_normalize(rng.normal(size=(args.reps, rows.shape[1])).astype(np.float32))
    targets = rng.integers(0, n, size=(args.reps, args.batch))
    queries = l2_normalize(rng.normal(size=(args.reps, 16, rows.shape[1])).astype(np.float32))

    start = time.perf_counter()
    index.rebuild((f"item{i:07d}", rows[i]) for i in range(n))
    load_s = time.perf_counter() - start
    assert len(index) == n

    def single(r: int) -> None:
        index.upsert(f"item{targets[r, 0]:07d}", fresh[r])

    def batch(r: int) -> None:
        ids = dict.fromkeys(f"item{t:07d}" for t in targets[r])  # distinct, order kept
        batch_upsert([(item, fresh[(r + j) % args.reps]) for j, item in enumerate(ids)])

    def search_one(r: int) -> None:
        index.search(queries[r, :1], args.k)

    def search_16(r: int) -> None:
        index.search(queries[r], args.k)

    # Printed cell by cell, so a slow backend shows where it is.
    print(f"{name:<12} | {load_s:8.2f}", end="", flush=True)
    for fn in (search_one, search_16, single, batch, search_one, search_16):
        print(f" | {p50_p99(timed(fn, args.reps))}", end="", flush=True)
    print()


def _upsert_each(index: CentroidIndex, items: list[tuple[str, npt.NDArray[np.float32]]]) -> None:
    for item, row in items:
        index.upsert(item, row)


def _measure_flat(rows: npt.NDArray[np.float32], args: argparse.Namespace) -> None:
    flat = FlatCentroidIndex(args.dim)
    measure("faiss flat", flat, lambda items: _upsert_each(flat, items), rows, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.milvus_index_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--items", type=int, default=10_000, help="gallery size (default 10000)")
    parser.add_argument("--dim", type=int, default=1280, help="centroid dimension (default 1280)")
    parser.add_argument("--reps", type=int, default=200, help="timed calls per row (default 200)")
    parser.add_argument("--batch", type=int, default=100, help="items per batch (default 100)")
    parser.add_argument("--k", type=int, default=10, help="top-k of the searches (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="FAISS OpenMP threads (default 2)")
    return parser


def main() -> None:
    args = _parser().parse_args()
    faiss.omp_set_num_threads(args.threads)
    rows = l2_normalize(
        np.random.default_rng(0).normal(size=(args.items, args.dim)).astype(np.float32)
    )
    print(
        f"items={args.items} dim={args.dim} k={args.k} batch={args.batch} reps={args.reps}, "
        f"faiss {faiss.__version__} ({args.threads} threads); times in ms, load in s"
    )
    print(
        "index        |  load s  | search 1  p50  p99  | search 16 p50  p99  | "
        "upsert 1  p50  p99  | upsert batch p50 p99 | after the upserts: search 1, search 16"
    )
    # Measured in a function of its own, so the flat index is freed before Milvus loads.
    _measure_flat(rows, args)
    from pymilvus import MilvusClient

    with tempfile.TemporaryDirectory(prefix="milvus-bench-") as tmp:
        client = MilvusClient(str(Path(tmp) / "bench.db"))
        try:
            milvus = MilvusCentroidIndex(client, "bench", args.dim, timeout=60.0)
            measure("milvus lite", milvus, milvus.upsert_many, rows, args)
        finally:
            client.close()


if __name__ == "__main__":
    main()
