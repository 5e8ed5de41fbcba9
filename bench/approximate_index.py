"""Flat vs IVF centroid index, side by side in one run, on clustered synthetic vectors::

    python -m bench.approximate_index --items 100000 --dim 1280 [--nprobe 32] [--refine 4]

Index level only (no store, no service). Printed for ``FlatCentroidIndex`` and
``IvfCentroidIndex``: build time (IVF: k-means on a sample plus adding every row), single-query
top-10 search p50/p99, recall@10 against the flat index's exact answer, the latency of one
item's update (upsert of an existing item with a new vector) p50/p99, ``memory_bytes()`` and
the growth of the process's resident set while the index was built.

Data: ``items / --items-per-cluster`` random unit centres; every item is a centre plus
Gaussian noise whose norm is about ``--spread`` (then re-normalised), so each item has close
neighbours, as items of one product or identity do (i.i.d. high-dimensional vectors have
none). Queries are held-out draws of the same kind (a centre of a random gallery item plus
fresh noise), never gallery rows. Rows are generated chunk by chunk and never held twice: the
indexes own the only full copy, and the flat index is dropped once its figures and the exact
answers are taken, so the peak is one index at a time.

This is the synthetic protocol. The issue's target protocol (>= 10^4 real embeddings of crops
of the shipped photos through the default model, expanded by noise scaled to the measured
within-item spread) is a later step and will reuse ``measure`` with those vectors.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from bench.process_memory import MiB, rss_bytes
from index.centroid_index import CentroidIndex
from index.flat_centroid_index import FlatCentroidIndex
from index.ivf_centroid_index import IvfCentroidIndex

CHUNK_ROWS = 8192
K = 10


@dataclass(frozen=True)
class IndexFigures:
    """One index's row of the printed table; times in milliseconds unless named ``_s``."""

    name: str
    build_s: float
    search_p50_ms: float
    search_p99_ms: float
    recall_at_10: float
    update_p50_ms: float
    update_p99_ms: float
    memory_bytes: int
    rss_growth_bytes: int


class ClusteredVectors:
    """Deterministic clustered unit rows: chunk ``c`` is always the same ``(rows, dim)`` float32."""

    def __init__(
        self, items: int, dim: int, items_per_cluster: int, spread: float, seed: int
    ) -> None:
        self.items, self.dim, self.spread, self.seed = items, dim, spread, seed
        n_clusters = max(1, items // items_per_cluster)
        rng = np.random.default_rng((seed, 0))
        centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        # Per-coordinate sigma giving a noise vector of norm ~ spread.
        # (A Python float, so float32 rows stay float32 under NumPy's promotion rules.)
        self.sigma = float(spread / np.sqrt(dim))

    def draw(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
        """``(n, dim)`` float32 unit rows around random centres."""
        x = self.centres[rng.integers(0, self.centres.shape[0], size=n)]
        x = x + self.sigma * rng.standard_normal((n, self.dim), dtype=np.float32)
        out: npt.NDArray[np.float32] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(
            np.float32, copy=False
        )
        return out

    def chunk(self, c: int) -> npt.NDArray[np.float32]:
        n = min(CHUNK_ROWS, self.items - c * CHUNK_ROWS)
        return self.draw(np.random.default_rng((self.seed, 1, c)), n)

    def items_iter(self) -> Iterator[tuple[str, npt.NDArray[np.float32]]]:
        for c in range((self.items + CHUNK_ROWS - 1) // CHUNK_ROWS):
            rows = self.chunk(c)
            for j in range(rows.shape[0]):
                yield f"item{c * CHUNK_ROWS + j:08d}", rows[j]

    def queries(self, n: int) -> npt.NDArray[np.float32]:
        """Held-out ``(n, dim)`` queries (a different stream from every gallery chunk)."""
        return self.draw(np.random.default_rng((self.seed, 2)), n)


def percentile_ms(samples_s: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples_s) * 1e3, q))


def timed_calls(fn: Callable[[int], object], n: int) -> list[float]:
    """Wall seconds of ``fn(i)`` for ``i in range(n)``, after one untimed warm-up call."""
    fn(0)
    out = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def measure(
    name: str,
    make: Callable[[], CentroidIndex],
    data: ClusteredVectors,
    queries: npt.NDArray[np.float32],
    truth: list[set[str]] | None,
    search_reps: int,
    update_reps: int,
) -> tuple[IndexFigures, list[set[str]]]:
    """Build ``make()`` from ``data``, time it, and score it against ``truth`` (its own answer
    when None: the exact index). Returns the figures and the top-10 id sets it gave."""
    gc.collect()
    rss_before = rss_bytes(os.getpid())
    index = make()
    start = time.perf_counter()
    index.rebuild(data.items_iter())
    build_s = time.perf_counter() - start
    rss_growth = rss_bytes(os.getpid()) - rss_before
    answers = [{i for i, _ in hits} for hits in index.search(queries, K)]
    reference = answers if truth is None else truth
    recall = sum(len(a & t) for a, t in zip(answers, reference, strict=True)) / (K * len(answers))
    nq = queries.shape[0]
    search = timed_calls(lambda i: index.search(queries[i % nq : i % nq + 1], K), search_reps)
    rng = np.random.default_rng((data.seed, 3))
    fresh = data.draw(rng, update_reps + 1)
    targets = rng.integers(0, data.items, size=update_reps + 1)
    update = timed_calls(lambda i: index.upsert(f"item{targets[i]:08d}", fresh[i]), update_reps)
    figures = IndexFigures(
        name=name,
        build_s=build_s,
        search_p50_ms=percentile_ms(search, 50),
        search_p99_ms=percentile_ms(search, 99),
        recall_at_10=recall,
        update_p50_ms=percentile_ms(update, 50),
        update_p99_ms=percentile_ms(update, 99),
        memory_bytes=index.memory_bytes(),
        rss_growth_bytes=rss_growth,
    )
    return figures, answers


def run(
    items: int,
    dim: int,
    *,
    nlist: int | None,
    nprobe: int,
    refine: int,
    codes: str,
    items_per_cluster: int,
    spread: float,
    queries: int,
    flat_search_reps: int,
    search_reps: int,
    update_reps: int,
    seed: int,
) -> tuple[IndexFigures, IndexFigures, int]:
    """Flat then IVF on the same data; returns both rows and the IVF's ``nlist``."""
    data = ClusteredVectors(items, dim, items_per_cluster, spread, seed)
    q = data.queries(queries)
    flat, truth = measure(
        "flat", lambda: FlatCentroidIndex(dim), data, q, None, flat_search_reps, update_reps
    )
    gc.collect()
    built: list[IvfCentroidIndex] = []

    def make_ivf() -> CentroidIndex:
        index = IvfCentroidIndex(
            dim,
            nlist=nlist,
            nprobe=nprobe,
            refine=refine,
            codes=codes,  # type: ignore[arg-type]
            min_train_items=min(items, 20_000),
            background_retrain=False,
            seed=seed,
        )
        built.append(index)
        return index

    ivf, _ = measure("ivf", make_ivf, data, q, truth, search_reps, update_reps)
    return flat, ivf, built[0].nlist


def format_table(rows: list[IndexFigures]) -> str:
    head = (
        f"{'index':<5} | {'build s':>8} | {'search p50':>10} {'p99 ms':>8} | {'recall@10':>9} | "
        f"{'update p50':>10} {'p99 ms':>8} | {'memory MiB':>10} {'RSS +MiB':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.name:<5} | {r.build_s:8.2f} | {r.search_p50_ms:10.3f} {r.search_p99_ms:8.3f} | "
            f"{r.recall_at_10:9.4f} | {r.update_p50_ms:10.4f} {r.update_p99_ms:8.4f} | "
            f"{r.memory_bytes / MiB:10.1f} {r.rss_growth_bytes / MiB:9.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.approximate_index", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default ~sqrt(N))")
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--refine", type=int, default=4)
    parser.add_argument("--codes", choices=["fp16", "sq8", "flat"], default="fp16")
    parser.add_argument("--items-per-cluster", type=int, default=100)
    parser.add_argument("--spread", type=float, default=0.5, help="noise norm per item")
    parser.add_argument("--queries", type=int, default=200, help="held-out queries for recall")
    parser.add_argument("--flat-search-reps", type=int, default=30)
    parser.add_argument("--search-reps", type=int, default=300)
    parser.add_argument("--update-reps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2, help="FAISS OpenMP threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(args.threads)
    flat, ivf, nlist = run(
        args.items,
        args.dim,
        nlist=args.nlist,
        nprobe=args.nprobe,
        refine=args.refine,
        codes=args.codes,
        items_per_cluster=args.items_per_cluster,
        spread=args.spread,
        queries=args.queries,
        flat_search_reps=args.flat_search_reps,
        search_reps=args.search_reps,
        update_reps=args.update_reps,
        seed=args.seed,
    )
    print(
        f"items={args.items} dim={args.dim} clusters of {args.items_per_cluster}, "
        f"noise norm {args.spread}; IVF nlist={nlist} nprobe={args.nprobe} "
        f"refine={args.refine} codes={args.codes}; faiss {faiss.__version__}, "
        f"{args.threads} threads; {args.queries} held-out queries"
    )
    print(format_table([flat, ivf]))
    print(
        f"ivf/flat: search p50 {ivf.search_p50_ms / flat.search_p50_ms:.3f}x, "
        f"update p50 {ivf.update_p50_ms / flat.update_p50_ms:.1f}x, "
        f"memory {ivf.memory_bytes / flat.memory_bytes:.2f}x"
    )


if __name__ == "__main__":
    main()
