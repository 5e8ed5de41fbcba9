"""Filtered search cost in FlatCentroidIndex, pre-filter vs widened scan, by selectivity; and
the IVF's filtered recall@k against brute force.

Measures, in one run, on one gallery of clustered unit rows whose items carry one term per
selectivity (a random subset of exactly that share):

* flat: the median single-query time of a top-``k`` search filtered on each term, with the
  pre-filter forced (score the matching rows only), the widened FAISS scan forced, and the
  default rule (``PREFILTER_FRACTION``, ``PREFILTER_MIN_ROWS``) choosing; plus unfiltered;
* IVF (default parameters, trained on the same gallery): median time and recall@k of the same
  filtered searches against the exact answer (``exact_search`` with the filter), by the
  default rule and with the widened IVF search forced.

The crossover of the first two columns is what ``PREFILTER_FRACTION`` is set below
(``index/flat_centroid_index.py`` quotes this tool's figures at 50k x 1280, one thread).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m bench.filtered_index_search [--items 50000]
[--dim 1280] [--k 10]``; 50k x 1280 takes ~0.8 GB (two flat copies and the IVF) and about a
minute.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from index.centroid_math import l2_normalize
from index.flat_centroid_index import FlatCentroidIndex
from index.ivf_centroid_index import IvfCentroidIndex

SHARES = (0.001, 0.01, 0.05, 0.1, 0.2, 0.25, 0.5, 0.75)


def median_ms(fn: Callable[[int], object], reps: int) -> float:
    """Median wall time in milliseconds of ``fn(rep)``, after one untimed call."""
    fn(0)
    times = []
    for r in range(reps):
        start = time.perf_counter()
        fn(r)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def clustered_rows(rng: np.random.Generator, n: int, dim: int) -> npt.NDArray[np.float32]:
    """``(n, dim)`` unit rows around ``n // 50`` random unit centres, noise of norm ~0.7 (i.i.d.
    rows have no neighbours, and an IVF trained on them has no structure to use)."""
    centres = l2_normalize(rng.normal(size=(max(1, n // 50), dim)))
    noise = rng.normal(scale=0.7 / np.sqrt(dim), size=(n, dim))
    return l2_normalize(centres[rng.integers(0, centres.shape[0], size=n)] + noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n, dim, k = args.items, args.dim, args.k
    rows = clustered_rows(rng, n, dim)
    term_sets: list[set[str]] = [set() for _ in range(n)]
    for share in SHARES:
        for i in rng.choice(n, size=max(1, round(share * n)), replace=False).tolist():
            term_sets[i].add(f"share={share}")
    terms = [frozenset(t) for t in term_sets]
    ids = [f"i{i:07d}" for i in range(n)]
    picks = rng.integers(0, n, size=args.queries)
    # Near gallery rows (noise of norm ~0.3), as a re-query of a known item would be.
    noise = rng.normal(scale=0.3 / np.sqrt(dim), size=(args.queries, dim))
    queries = l2_normalize(rows[picks] + noise)

    prefilter = FlatCentroidIndex(dim, prefilter_fraction=1.0)
    prefilter.rebuild(zip(ids, rows, terms, strict=True))
    widened = FlatCentroidIndex(dim, prefilter_fraction=0.0, prefilter_min_rows=0)
    widened.load_rows(ids, rows, terms)
    default = FlatCentroidIndex(dim)
    default.load_rows(ids, rows, terms)
    del rows

    def search_ms(index: FlatCentroidIndex | IvfCentroidIndex, where: frozenset[str]) -> float:
        return median_ms(lambda r: index.search(queries[r : r + 1], k, where), args.queries)

    print(f"flat, {n} x {dim}, k = {k}, one query at a time, median ms")
    print(f"  unfiltered: {search_ms(default, frozenset()):.2f}")
    print(f"  {'matching':>9} {'pre-filter':>11} {'widened':>9} {'default':>9}")
    for share in SHARES:
        where = frozenset({f"share={share}"})
        pre, wide = search_ms(prefilter, where), search_ms(widened, where)
        print(f"  {share:>9.1%} {pre:>11.2f} {wide:>9.2f} {search_ms(default, where):>9.2f}")
    del prefilter, widened

    gallery = _rows_of(default, ids, terms)
    del default
    ivf = IvfCentroidIndex(dim, min_train_items=min(n, 20_000), background_retrain=False)
    ivf.rebuild(gallery)
    wide_ivf = IvfCentroidIndex(
        dim,
        min_train_items=min(n, 20_000),
        background_retrain=False,
        prefilter_fraction=0.0,
        prefilter_min_rows=0,
    )
    wide_ivf.rebuild(gallery)
    del gallery
    print(f"IVF (nlist {ivf.nlist}, default nprobe): median ms and recall@{k} against the exact")
    print("answer, by the default rule and with the widened IVF search forced")
    print(f"  {'matching':>9} {'default ms':>11} {'recall':>7} {'widened ms':>11} {'recall':>7}")
    for share in SHARES:
        where = frozenset({f"share={share}"})
        want = ivf.exact_search(queries, k, where)
        cells = []
        for index in (ivf, wide_ivf):
            got = index.search(queries, k, where)
            found = sum(
                len({i for i, _ in g} & {i for i, _ in w}) for g, w in zip(got, want, strict=True)
            )
            recall = found / max(sum(len(w) for w in want), 1)
            cells.append(f"{search_ms(index, where):>11.2f} {recall:>7.3f}")
        print(f"  {share:>9.1%} {' '.join(cells)}")


def _rows_of(
    index: FlatCentroidIndex, ids: list[str], terms: list[frozenset[str]]
) -> list[tuple[str, npt.NDArray[np.float32], frozenset[str]]]:
    """The gallery back out of ``index`` (the generator's rows were freed)."""
    out = []
    for item_id, item_terms in zip(ids, terms, strict=True):
        row = index.get(item_id)
        assert row is not None
        out.append((item_id, row, item_terms))
    return out


if __name__ == "__main__":
    main()
