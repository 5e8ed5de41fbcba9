"""What one ``GET /quality`` computation costs in its numeric part: the leave-one-image-out
ranks of N sampled images against every centroid (``index/leave_one_out.py``), by gallery size.

Random Gaussian items (5 images each, the default model's 1280 dims unless told), their sums
and centroids made here, N queries drawn among their images; the ranking alone is timed (the
store reads around it are not). Also how many pairs fell in the float32 band and were
recomputed in float64, which is what keeps the float32 scan exact.

Run: ``.venv/bin/python -m bench.leave_one_out_speed [--dim 1280] [--sizes 1000,10000,100000]
[--queries 2000]``. The 10^5-item gallery takes about 1 GB (its centroids and sums).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from index.centroid_math import l2_normalize
from index.leave_one_out import centroid_chunks_from_sums, leave_one_out_ranks

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="gallery items, comma-separated"
    )
    parser.add_argument("--queries", type=int, default=2000, help="sampled images")
    parser.add_argument("--noise", type=float, default=NOISE, help="an image's noise norm")
    args = parser.parse_args()
    print(f"dim {args.dim}, up to {args.queries} queries, {IMAGES_PER_ITEM} images per item")
    print(f"{'items':>9} {'queries':>8} {'seconds':>8} {'ms/1k items':>12} {'R@1':>6}")
    for size in (int(s) for s in args.sizes.split(",")):
        seconds, r1, n = measure(size, args.dim, args.queries, args.noise)
        print(f"{size:>9} {n:>8} {seconds:>8.2f} {1e3 * seconds / size * 1e3:>12.1f} {r1:>6.3f}")


if __name__ == "__main__":
    main()
