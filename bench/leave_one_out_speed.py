"""What one ``GET /quality`` computation costs.

By default its numeric part: the leave-one-image-out ranks of N sampled images against every
centroid (``index/leave_one_out.py``), by gallery size. Random Gaussian items (5 images each,
the default model's 1280 dims unless told), their sums and centroids made here, N queries drawn
among their images; the ranking alone is timed. The noise is set so that R@1 is far from 1:
many queries have competitors near their own score, where the float32 scan's band is rechecked
in float64.

``--store ITEMS`` times the whole computation as the service runs it instead: a real SQLite
store of ITEMS items (4 images each) built in a temporary directory, a flat index loaded from
it, and ``QualityCache`` reading through a real store lane (first computation, then a second
one on warm lane threads).

Run: ``.venv/bin/python -m bench.leave_one_out_speed [--dim 1280] [--sizes 1000,10000,100000]
[--queries 2000] [--store 10000]``. The 10^5-item gallery takes about 1 GB (its centroids and
sums); enrolling the 10^4-item store about 40 s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np

from app.gallery_quality import QualityCache
from app.metrics import ServiceMetrics
from app.store_lane import StoreLane
from index.centroid_math import centroid_from_sum, l2_normalize
from index.flat_centroid_index import FlatCentroidIndex
from index.leave_one_out import centroid_chunks_from_sums, leave_one_out_ranks
from store.records import ModelIdentity, NewImage
from store.sqlite_store import SqliteStore

IMAGES_PER_ITEM = 5
# An image's noise norm around its unit centre.
NOISE = 3.5


def measure(
    items: int, dim: int, queries: int, noise: float, seed: int = 0
) -> tuple[float, float, int]:
    """``(seconds, R@1, queries)`` of one run on a fresh gallery of ``items``."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.normal(size=(items, dim)))
    n = min(queries, items * IMAGES_PER_ITEM)
    owners = rng.choice(items, size=n, replace=True).astype(np.int64)
    # Each item's images: its centre plus noise; the queries are one image each of their item,
    # the sums hold the query and IMAGES_PER_ITEM - 1 others.
    noise = noise / np.sqrt(dim)  # per component: a noise vector's norm is about `noise`
    query_rows = (centres[owners] + noise * rng.normal(size=(n, dim))).astype(np.float32)
    sums = IMAGES_PER_ITEM * centres.astype(np.float64)
    sums += noise * np.sqrt(IMAGES_PER_ITEM) * rng.normal(size=(items, dim))
    np.add.at(sums, owners, query_rows - centres[owners])
    counts = np.full(items, IMAGES_PER_ITEM, dtype=np.int64)
    ids = [f"item-{i:07d}" for i in range(items)]
    start = time.perf_counter()
    ranks = leave_one_out_ranks(
        query_rows, owners, ids, sums, counts, centroid_chunks_from_sums(ids, sums)
    )
    seconds = time.perf_counter() - start
    return seconds, float(np.mean(ranks == 1)), n


def measure_store(items: int, dim: int, queries: int, noise: float) -> None:
    """Build the store, then print the first and a warm computation's seconds."""
    rng = np.random.default_rng(0)
    model = ModelIdentity("gaussian", "1", dim)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "store.sqlite3", durable=False)
        store.claim_model_identity(model)
        start = time.perf_counter()
        for n in range(items):
            centre = l2_normalize(rng.normal(size=dim))
            rows = (centre + noise / np.sqrt(dim) * rng.normal(size=(4, dim))).astype(np.float32)
            images = [NewImage(hashlib.sha256(r.tobytes()).hexdigest(), r) for r in rows]
            store.enroll(f"item-{n:07d}", images)
        print(f"store of {items} items x 4 images built in {time.perf_counter() - start:.1f} s")
        index = FlatCentroidIndex(dim)
        index.rebuild(
            (s.item_id, centroid_from_sum(s.embedding_sum)) for s in store.iter_item_states()
        )

        async def computations() -> None:
            metrics = ServiceMetrics()
            lane = StoreLane(4, 16, 5.0, metrics)
            cache = QualityCache(sample_images=queries, ttl_s=0, metrics=metrics)
            try:
                for turn in ("first", "warm"):
                    report = await cache.report(store, index, lane, model)
                    if turn == "warm":  # the stale answer came back; wait for its successor
                        while (latest := await cache.report(store, index, lane, model)) is report:
                            await asyncio.sleep(0.01)
                        report = latest
                    result = report.quality.result
                    print(
                        f"{turn}: {report.seconds:.2f} s for {result.queried_images} queries, "
                        f"R@1 {result.r_at_1:.3f}, MRR {result.mrr:.3f}"
                    )
            finally:
                lane.close()

        asyncio.run(computations())
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="gallery items, comma-separated"
    )
    parser.add_argument("--queries", type=int, default=2000, help="sampled images")
    parser.add_argument("--noise", type=float, default=NOISE, help="an image's noise norm")
    parser.add_argument(
        "--store", type=int, default=0, help="time the whole computation on a SQLite store"
    )
    args = parser.parse_args()
    if args.store:
        measure_store(args.store, args.dim, args.queries, args.noise)
        return
    print(f"dim {args.dim}, up to {args.queries} queries, {IMAGES_PER_ITEM} images per item")
    print(f"{'items':>9} {'queries':>8} {'seconds':>8} {'ms/1k items':>12} {'R@1':>6}")
    for size in (int(s) for s in args.sizes.split(",")):
        seconds, r1, n = measure(size, args.dim, args.queries, args.noise)
        print(f"{size:>9} {n:>8} {seconds:>8.2f} {1e3 * seconds / size * 1e3:>12.1f} {r1:>6.3f}")


if __name__ == "__main__":
    main()
