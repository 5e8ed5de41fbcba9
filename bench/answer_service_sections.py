"""The service-level figures of ``python -m bench.answers``, measured over HTTP on real photos.

* **Two-stage latency.** Two services on the same gallery (the 2×2-quarters folder: items cut
  from one photo, four views each), one with ``RETRIEVAL_RANKING=two_stage`` (the default),
  one with ``centroid``, both running at once; one client sends every query view to each in
  turn (alternating which goes first), so both see the same machine load. Printed: each one's
  search p50 / p99 and the p50 ratio (target ≤ 1.2×), and each one's R@1 over HTTP.
* **Filtered search against brute force.** One service (the defaults) holds ``filter_items``
  single-image items (random views of the shipped photos); each item carries one attribute
  per selectivity, ``sel_<share>`` = ``"1"`` on exactly that share of the items (at least one)
  and ``"0"`` elsewhere. For each selectivity the query views are searched with
  ``filter=sel_<share>:1`` and the answer compared with a brute force written here: the
  query's and the items' embeddings made in this process by the same ONNX model and decode,
  cosine to every matching item's normalised embedding, best ``k`` by (score desc, item id).
  With one image per item the fused two-stage score equals the centroid score, so the brute
  force is the same for either ranking. An answer counts as exact when its ids and order are
  the brute force's, or differ only among scores closer than ``TIE_TOLERANCE`` (float32 sums
  in another order).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from artifact.onnx_embedder import OnnxEmbedder
from bench.answer_folders import FolderRecipe, embed_blobs, folder_files
from bench.service_process import service_process

SELECTIVITIES = (0.001, 0.01, 0.1, 0.5, 1.0)
TIE_TOLERANCE = 1e-4
P50_TARGET = 1.2
# Anonymous on loopback, no rate limit in the way; the rest are the defaults under test.
SERVICE_ENV = {"RETRIEVAL_API_KEYS": "", "RETRIEVAL_LOG_LEVEL": "warning"}


def _files(views: Sequence[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"v{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]


@contextmanager
def _service(model: Path, env: dict[str, str]) -> Iterator[httpx.Client]:
    with tempfile.TemporaryDirectory(prefix="bench-answers-") as tmp:
        full_env = {**SERVICE_ENV, **env}
        with (
            service_process(model.resolve(), Path(tmp) / "data", env=full_env) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            yield client


def _enroll(client: httpx.Client, item_id: str, views: Sequence[bytes], **form: str) -> None:
    r = client.post(f"/items/{item_id}/images", files=_files(views), data=form)
    if r.status_code not in (200, 201):
        raise RuntimeError(f"enrolling {item_id}: {r.status_code} {r.text[:300]}")


def _search(client: httpx.Client, view: bytes, k: int, **params: Any) -> list[dict[str, Any]]:
    r = client.post("/search", params={"k": k, **params}, files=_files([view]))
    if r.status_code != 200:
        raise RuntimeError(f"search: {r.status_code} {r.text[:300]}")
    results: list[dict[str, Any]] = r.json()["results"]
    return results


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@dataclass(frozen=True)
class LatencyRow:
    ranking: str
    p50_ms: float
    p99_ms: float
    r_at_1: float
    searches: int


def two_stage_latency(
    model: Path, seed: int, photos: tuple[str, ...] | None, rounds: int = 2
) -> tuple[list[str], dict[str, Any]]:
    """Search p50 of the two rankings side by side (module docstring); ``rounds`` passes over
    the query views."""
    recipe = FolderRecipe("quarters-2x2", grid=(2, 2), seed=seed, **_photos(photos))
    files = folder_files(recipe)
    gv, qv = recipe.gallery_views, recipe.query_views
    modes = ("two_stage", "centroid")
    times: dict[str, list[float]] = {m: [] for m in modes}
    right: dict[str, int] = dict.fromkeys(modes, 0)
    with ExitStack() as stack:
        clients = {m: stack.enter_context(_service(model, {"RETRIEVAL_RANKING": m})) for m in modes}
        for i, item in enumerate(files.items):
            for client in clients.values():
                _enroll(client, item, files.gallery[i * gv : (i + 1) * gv])
        for client in clients.values():  # warm-up: first requests pay one-off costs
            for view in files.queries[:5]:
                _search(client, view, 10)
        for r in range(rounds):
            for j, view in enumerate(files.queries):
                order = modes if (j + r) % 2 == 0 else modes[::-1]
                for m in order:
                    t = time.perf_counter()
                    results = _search(clients[m], view, 10)
                    times[m].append(time.perf_counter() - t)
                    if r == 0:
                        right[m] += bool(results) and results[0]["item_id"] == files.items[j // qv]
    rows = [
        LatencyRow(
            m,
            _percentile(times[m], 50) * 1e3,
            _percentile(times[m], 99) * 1e3,
            right[m] / len(files.queries),
            len(times[m]),
        )
        for m in modes
    ]
    ratio = rows[0].p50_ms / rows[1].p50_ms
    verdict = "PASS" if ratio <= P50_TARGET else "MISS"
    lines = [
        f"{len(files.items)} items x {gv} views, {len(files.queries)} query views x {rounds}, "
        "two services at once, requests alternated",
        f"{'ranking':<10} {'p50 ms':>7} {'p99 ms':>7} {'R@1':>6} {'searches':>8}",
        *(
            f"{row.ranking:<10} {row.p50_ms:7.2f} {row.p99_ms:7.2f} {row.r_at_1:6.3f} "
            f"{row.searches:8d}"
            for row in rows
        ),
        f"p50 two-stage / centroid: {ratio:.2f} (target <= {P50_TARGET}) {verdict}",
    ]
    return lines, {
        "rows": [row.__dict__ for row in rows],
        "p50_ratio": ratio,
        "pass": ratio <= P50_TARGET,
    }


def _photos(photos: tuple[str, ...] | None) -> dict[str, Any]:
    return {} if photos is None else {"photos": photos}


def selectivity_key(share: float) -> str:
    return "sel_" + f"{share:g}".replace(".", "_")


def _marked(n: int, share: float, rng: random.Random) -> set[int]:
    return set(rng.sample(range(n), max(1, round(share * n))))


def brute_force_top_k(
    query: npt.NDArray[np.float32],
    items: Sequence[str],
    unit_rows: npt.NDArray[np.float32],
    allowed: set[int],
    k: int,
) -> list[tuple[str, float]]:
    """The ``k`` best of ``allowed`` (indices into ``items``) by cosine of ``query`` (raw, any
    length) with ``unit_rows`` ``(N, D)`` float32 unit rows; ties by item id."""
    q = query.astype(np.float64) / np.linalg.norm(query)
    scored = [(items[i], float(unit_rows[i].astype(np.float64) @ q)) for i in allowed]
    scored.sort(key=lambda t: (-t[1], t[0]))
    return scored[:k]


def same_up_to_ties(
    got: Sequence[tuple[str, float]], expected: Sequence[tuple[str, float]]
) -> bool:
    """Equal lists, or equal scores (within ``TIE_TOLERANCE``) where only near-equal scores
    swapped places or crossed the k-th place."""
    if [g[0] for g in got] == [e[0] for e in expected]:
        return True
    if len(got) != len(expected):
        return False
    return all(abs(g[1] - e[1]) <= TIE_TOLERANCE for g, e in zip(got, expected, strict=True))


@dataclass(frozen=True)
class FilterRow:
    share: float
    matching: int
    searches: int
    exact: int
    worst_score_gap: float
    p50_ms: float


def filtered_search(
    model: Path, seed: int, items: int, queries: int, k: int = 10
) -> tuple[list[str], dict[str, Any]]:
    """Filtered search over HTTP against the brute force (module docstring)."""
    rng = random.Random(seed)
    photos = FolderRecipe("probe").photos
    recipe = FolderRecipe(
        "filter-items",
        gallery_views=-(-items // len(photos)),
        query_views=max(1, -(-queries // len(photos))),
        seed=seed,
    )
    files = folder_files(recipe)
    blobs = files.gallery[:items]
    ids = [f"it{i:05d}" for i in range(len(blobs))]
    query_blobs = rng.sample(files.queries, min(queries, len(files.queries)))
    embedder = OnnxEmbedder(model, allow_gpu=False, allow_spinning=False)
    raw = embed_blobs(embedder, blobs)
    unit = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)
    query_rows = embed_blobs(embedder, query_blobs)
    marks = {share: _marked(len(ids), share, rng) for share in SELECTIVITIES}
    rows: list[FilterRow] = []
    with _service(model, {}) as client:
        for i, (item_id, blob) in enumerate(zip(ids, blobs, strict=True)):
            attributes = {selectivity_key(s): "1" if i in marks[s] else "0" for s in SELECTIVITIES}
            _enroll(client, item_id, [blob], attributes=json.dumps(attributes))
        for share in SELECTIVITIES:
            exact, worst, times = 0, 0.0, []
            flt = f"{selectivity_key(share)}:1"
            for view, q in zip(query_blobs, query_rows, strict=True):
                t = time.perf_counter()
                results = _search(client, view, k, filter=flt)
                times.append(time.perf_counter() - t)
                got = [(h["item_id"], float(h["score"])) for h in results]
                expected = brute_force_top_k(q, ids, unit, marks[share], k)
                exact += same_up_to_ties(got, expected)
                if len(got) == len(expected):
                    gaps = [abs(g[1] - e[1]) for g, e in zip(got, expected, strict=True)]
                    worst = max([worst, *gaps])
                else:
                    worst = float("inf")
            rows.append(
                FilterRow(
                    share,
                    len(marks[share]),
                    len(query_blobs),
                    exact,
                    worst,
                    statistics.median(times) * 1e3,
                )
            )
    ok = all(r.exact == r.searches for r in rows)
    lines = [
        f"{len(ids)} single-image items, {len(query_blobs)} queries per filter, k={k}",
        f"{'selectivity':>11} {'matching':>8} {'exact':>9} {'max |score diff|':>16} {'p50 ms':>7}",
        *(
            f"{r.share * 100:10.1f}% {r.matching:8d} {r.exact:4d}/{r.searches:<4d} "
            f"{r.worst_score_gap:16.2e} {r.p50_ms:7.2f}"
            for r in rows
        ),
        f"filtered answers equal to the brute force: {'PASS' if ok else 'MISS'}",
    ]
    return lines, {"rows": [r.__dict__ for r in rows], "pass": ok}


def run_two_stage_latency(args: argparse.Namespace) -> tuple[list[str], Any]:
    photos = tuple(args.photos) if args.photos else None
    return two_stage_latency(args.model, args.seed, photos)


def run_filtered_search(args: argparse.Namespace) -> tuple[list[str], Any]:
    return filtered_search(args.model, args.seed, args.filter_items, args.filter_queries)
