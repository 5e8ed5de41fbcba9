"""Instance vs centroid retrieval on the same embeddings: the CTL paper's Table 2 in small.

For one set of query/gallery embeddings, prints side by side: mAP and Rank-1 (instance
protocol vs centroid-level evaluation), the time to search every query (best of N runs; FAISS
``IndexFlatIP`` over all gallery images vs the service's ``FlatCentroidIndex`` over item
centroids, same queries, same k), and the size of the serialised gallery index, with ratios.

    python -m bench.instance_vs_centroid --synthetic
    python -m bench.instance_vs_centroid --npz embeddings.npz

The ``.npz`` holds ``q_emb (Q, D)``, ``q_items (Q,)``, ``q_cams (Q,)``, ``g_emb (G, D)``,
``g_items (G,)``, ``g_cams (G,)``, ``g_distractor (G,) bool``. Other scripts call
:func:`run_comparison` directly.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index.centroid_math import centroids_by_label, l2_normalize
from index.flat_centroid_index import FlatCentroidIndex
from model.evaluation.centroid_evaluation import centroid_metrics
from model.evaluation.ranking_metrics import instance_metrics

# Norms of the synthetic embedding parts (item centre = 1). With noise this large the item
# signal is a few standard deviations of the random cosine at D = 1280, so single images
# confuse items while a 6-image mean mostly does not; chosen so neither protocol saturates.
SYNTHETIC_CAMERA_NORM = 0.7
SYNTHETIC_NOISE_NORM = 2.6

# Depth of the timed searches: a result page plus room for re-ranking, the same for both
# indexes (clipped to the index size).
DEFAULT_SEARCH_K = 100
DEFAULT_REPEATS = 3


def _best_time(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _centroid_items(
    g_emb: npt.NDArray[np.floating], g_items: npt.ArrayLike, g_distractor: npt.ArrayLike
) -> tuple[list[str], npt.NDArray[np.float32]]:
    """Item ids and centroids as centroid evaluation forms them: one per labelled item, one per
    distractor image."""
    items = np.asarray(g_items)
    distractor = np.asarray(g_distractor, dtype=bool)
    labels = np.array(
        [
            f"d{j:09d}" if d else f"i{v}"
            for j, (v, d) in enumerate(zip(items, distractor, strict=True))
        ]
    )
    unique, centroids = centroids_by_label(g_emb, labels)
    return [str(u) for u in unique], centroids


def run_comparison(
    q_emb: npt.ArrayLike,
    q_items: npt.ArrayLike,
    q_cams: npt.ArrayLike,
    g_emb: npt.ArrayLike,
    g_items: npt.ArrayLike,
    g_cams: npt.ArrayLike,
    g_distractor: npt.ArrayLike,
    *,
    cross_camera: bool = True,
    search_k: int = DEFAULT_SEARCH_K,
    repeats: int = DEFAULT_REPEATS,
) -> dict[str, Any]:
    """Compare instance and centroid retrieval on raw embeddings ``(Q, D)`` / ``(G, D)``.

    Returns ``{"instance": {...}, "centroid": {...}, "ratios": {...}, "num_queries",
    "dim", "cross_camera"}``; each side holds ``map``, ``rank1``, ``num_valid_queries``,
    ``entries`` (rows in its index), ``search_seconds`` (best of ``repeats``, all queries) and
    ``index_bytes`` (``faiss.serialize_index`` size). The centroid side also holds
    ``raw_faiss_seconds``: the same centroid search through a bare ``IndexFlatIP``, i.e.
    without ``FlatCentroidIndex``'s exact tie handling and Python result lists. Ratios are
    instance / centroid.
    """
    q = np.asarray(q_emb, dtype=np.float32)
    g = np.asarray(g_emb, dtype=np.float32)
    dim = g.shape[1]
    q_unit = l2_normalize(q)

    inst = instance_metrics(q, q_items, q_cams, g, g_items, g_cams, cross_camera=cross_camera)
    cent = centroid_metrics(
        q, q_items, q_cams, g, g_items, g_cams, g_distractor, cross_camera=cross_camera
    )

    flat = faiss.IndexFlatIP(dim)
    flat.add(l2_normalize(g))
    k_inst = min(search_k, flat.ntotal)
    inst_seconds = _best_time(lambda: flat.search(q_unit, k_inst), repeats)
    inst_bytes = int(faiss.serialize_index(flat).nbytes)

    ids, centroids = _centroid_items(g, g_items, g_distractor)
    index = FlatCentroidIndex(dim)
    index.rebuild(zip(ids, centroids, strict=True))
    if len(index) != cent.num_items:
        raise RuntimeError(f"{len(index)} centroids timed but {cent.num_items} evaluated")
    k_cent = min(search_k, len(index))
    cent_seconds = _best_time(lambda: index.search(q_unit, k_cent), repeats)
    raw_centroids = index.snapshot()[0]
    raw_seconds = _best_time(lambda: raw_centroids.search(q_unit, k_cent), repeats)
    cent_bytes = int(faiss.serialize_index(raw_centroids).nbytes)

    return {
        "num_queries": int(q.shape[0]),
        "dim": int(dim),
        "cross_camera": cross_camera,
        "instance": {
            "map": inst.map,
            "rank1": inst.cmc[1],
            "num_valid_queries": inst.num_valid_queries,
            "entries": int(flat.ntotal),
            "search_seconds": inst_seconds,
            "index_bytes": inst_bytes,
        },
        "centroid": {
            "map": cent.map,
            "rank1": cent.cmc[1],
            "num_valid_queries": cent.num_valid_queries,
            "entries": len(index),
            "search_seconds": cent_seconds,
            "raw_faiss_seconds": raw_seconds,
            "index_bytes": cent_bytes,
        },
        "ratios": {
            "entries": flat.ntotal / len(index),
            "search_seconds": inst_seconds / cent_seconds,
            "raw_faiss_search_seconds": inst_seconds / raw_seconds,
            "index_bytes": inst_bytes / cent_bytes,
        },
    }


def synthetic_embeddings(
    *,
    items: int = 500,
    images_per_item: int = 8,
    queries_per_item: int = 2,
    distractors: int = 1000,
    dim: int = 1280,
    cameras: int = 6,
    seed: int = 0,
) -> dict[str, npt.NDArray[Any]]:
    """Clustered stand-in for model outputs, keyed like the ``.npz`` input.

    Each image is item centre + camera offset + noise, all isotropic Gaussian with norms ≈ 1,
    ``SYNTHETIC_CAMERA_NORM`` and ``SYNTHETIC_NOISE_NORM``.
    Of an item's ``images_per_item`` images the first ``queries_per_item`` are queries, the
    rest gallery; ``distractors`` extra gallery images are noise around no centre.
    """
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(dim)
    centres = rng.normal(scale=scale, size=(items, dim))
    cam_offsets = rng.normal(scale=SYNTHETIC_CAMERA_NORM * scale, size=(cameras, dim))
    labels = np.repeat(np.arange(items), images_per_item)
    cams = rng.integers(0, cameras, labels.shape[0])
    emb = (
        centres[labels]
        + cam_offsets[cams]
        + rng.normal(scale=SYNTHETIC_NOISE_NORM * scale, size=(len(labels), dim))
    )
    is_query = np.tile(np.arange(images_per_item) < queries_per_item, items)
    d_cams = rng.integers(0, cameras, distractors)
    d_emb = cam_offsets[d_cams] + rng.normal(
        scale=SYNTHETIC_NOISE_NORM * scale, size=(distractors, dim)
    )
    return {
        "q_emb": emb[is_query].astype(np.float32),
        "q_items": labels[is_query],
        "q_cams": cams[is_query],
        "g_emb": np.vstack([emb[~is_query], d_emb]).astype(np.float32),
        "g_items": np.concatenate([labels[~is_query], np.full(distractors, -1)]),
        "g_cams": np.concatenate([cams[~is_query], d_cams]),
        "g_distractor": np.concatenate(
            [np.zeros(int((~is_query).sum()), dtype=bool), np.ones(distractors, dtype=bool)]
        ),
    }


def format_report(result: dict[str, Any]) -> str:
    inst, cent, ratios = result["instance"], result["centroid"], result["ratios"]
    rows = [
        ("", "instance", "centroid", "inst/cent"),
        ("gallery entries", f"{inst['entries']}", f"{cent['entries']}", f"{ratios['entries']:.2f}"),
        ("mAP", f"{inst['map']:.4f}", f"{cent['map']:.4f}", ""),
        ("Rank-1", f"{inst['rank1']:.4f}", f"{cent['rank1']:.4f}", ""),
        (
            "search all queries (s)",
            f"{inst['search_seconds']:.4f}",
            f"{cent['search_seconds']:.4f}",
            f"{ratios['search_seconds']:.2f}",
        ),
        (
            "  same, bare IndexFlatIP (s)",
            f"{inst['search_seconds']:.4f}",
            f"{cent['raw_faiss_seconds']:.4f}",
            f"{ratios['raw_faiss_search_seconds']:.2f}",
        ),
        (
            "index bytes",
            f"{inst['index_bytes']}",
            f"{cent['index_bytes']}",
            f"{ratios['index_bytes']:.2f}",
        ),
    ]
    header = (
        f"{result['num_queries']} queries, D={result['dim']}, "
        f"cross_camera={result['cross_camera']} "
        f"(valid queries: instance {inst['num_valid_queries']}, "
        f"centroid {cent['num_valid_queries']})"
    )
    lines = [header] + [f"{a:<30}{b:>14}{c:>14}{d:>12}" for a, b, c, d in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instance_vs_centroid", description=__doc__.split("\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--npz", help="embeddings file (see module docstring for its keys)")
    source.add_argument("--synthetic", action="store_true", help="clustered random embeddings")
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--images-per-item", type=int, default=8)
    parser.add_argument("--distractors", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--search-k", type=int, default=DEFAULT_SEARCH_K)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument(
        "--same-camera-ok",
        action="store_true",
        help="no cross-camera protocol (fashion datasets without camera ids)",
    )
    args = parser.parse_args(argv)
    if args.synthetic:
        data = synthetic_embeddings(
            items=args.items,
            images_per_item=args.images_per_item,
            distractors=args.distractors,
            dim=args.dim,
            seed=args.seed,
        )
    else:
        with np.load(args.npz) as npz:
            data = {key: npz[key] for key in npz.files}
    result = run_comparison(
        data["q_emb"],
        data["q_items"],
        data["q_cams"],
        data["g_emb"],
        data["g_items"],
        data["g_cams"],
        data["g_distractor"],
        cross_camera=not args.same_camera_ok,
        search_k=args.search_k,
        repeats=args.repeats,
    )
    print(format_report(result))


if __name__ == "__main__":
    main()
