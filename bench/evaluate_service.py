"""Measure a running service on a labelled folder, through its public HTTP API.

    python -m bench.evaluate_service ROOT --url http://127.0.0.1:8000 [--prefix run1:]

``ROOT/gallery/<item>/*`` is enrolled and every ``ROOT/query/<item>/*`` is searched; Recall@1,
Recall@5 and MRR (over the top ``--k`` results; a miss counts 0) are printed as JSON on stdout.

- Enrollment goes in chunks that respect the service's own limits, read from ``GET /info``
  (files and bytes per request), so an item of any size can be enrolled.
- Items are enrolled under ``<prefix><item>``. A folder name that is not a valid item id
  (``[A-Za-z0-9._:-]{1,128}`` with the prefix) is mapped to one deterministically: invalid
  characters become ``_`` and a short hash of the original name is appended; the JSON lists
  the mapping under ``renamed_items``.
- A file the service rejects (not an image, corrupt, too many pixels, larger than a request may
  be) is reported on stderr with the service's problem detail, skipped and counted; skipped
  query files are left out of the metrics. Any other failure stops the run with a message.
- Enrolled items are deleted afterwards unless ``--keep``.
- A service with API keys: a key with the read and write scopes in the environment as
  ``CENTROID_RETRIEVAL_API_KEY=cr_...`` is sent as ``Authorization: Bearer``.

Chunking, id mapping and refused-file handling are the client package's (``client/``), the same
code as ``centroid-retrieval enroll-folder``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from client.api_key_header import api_key_headers
from client.file_outcome import Outcome
from client.image_folders import item_folders
from client.item_ids import ItemIdError, map_item_ids
from client.item_uploader import REJECTED_STATUSES, ItemUploader
from client.problem_detail import problem_detail
from client.service_error import ServiceError
from client.service_limits import ServiceLimits, read_limits
from client.upload_chunks import fits_alone, oversize_detail


class FileRejectedError(Exception):
    """The service refused one file (already reported on stderr); the run goes on."""


@dataclass
class Tally:
    skipped_gallery: int = 0
    skipped_query: int = 0
    enroll_requests: int = 0
    # item id → images it has after our last successful enrollment (deduplicated by the service).
    image_counts: dict[str, int] = field(default_factory=dict)


def _items(split_dir: Path) -> dict[str, list[Path]]:
    try:
        return item_folders(split_dir)
    except NotADirectoryError as exc:
        raise SystemExit(str(exc)) from None


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def enroll_item(
    client: httpx.Client, item_id: str, paths: list[Path], limits: ServiceLimits, tally: Tally
) -> None:
    uploader = ItemUploader(client, limits, item_id)
    try:
        for batch in uploader.upload(paths):
            for outcome in batch:
                if outcome.outcome is Outcome.REJECTED:
                    tally.skipped_gallery += 1
                    _warn(f"skipped {outcome.path}: {outcome.reason}")
    finally:
        tally.enroll_requests += uploader.requests
        if uploader.image_count is not None:
            tally.image_counts[item_id] = uploader.image_count


def search_rank(
    client: httpx.Client, path: Path, target: str, k: int, limits: ServiceLimits
) -> int | None:
    """1-based rank of ``target`` among the results, ``None`` when it is not among them.

    Raises :class:`FileRejectedError` when the file cannot be or was not accepted as a query.
    """
    size = path.stat().st_size
    if not fits_alone(path, size, limits):
        _warn(f"skipped {path}: {oversize_detail(size, limits)}")
        raise FileRejectedError(path)
    r = client.post("/search", params={"k": k}, files={"image": (path.name, path.read_bytes())})
    if r.status_code in REJECTED_STATUSES:
        _warn(f"skipped {path}: HTTP {r.status_code}: {problem_detail(r)}")
        raise FileRejectedError(path)
    if r.status_code != 200:
        raise ServiceError.for_response(r, f"searching with {path}")
    ids = [hit["item_id"] for hit in r.json()["results"]]
    return ids.index(target) + 1 if target in ids else None


def evaluate(root: Path, url: str, *, prefix: str, k: int, keep: bool) -> dict[str, Any]:
    wall_t0 = time.perf_counter()
    gallery, queries = _items(root / "gallery"), _items(root / "query")
    if not gallery or not queries:
        raise SystemExit(f"{root} needs gallery/<item>/ and query/<item>/ folders with images")
    try:
        ids = map_item_ids(sorted(set(gallery) | set(queries)), prefix)
    except ItemIdError as exc:
        raise SystemExit(str(exc)) from None
    tally = Tally()
    ranks: list[int | None] = []
    enroll_s = search_s = 0.0
    with httpx.Client(base_url=url, timeout=120, headers=api_key_headers()) as client:
        limits = read_limits(client)
        if limits.assumed:
            _warn(f"note: /info reports no limits; assuming the service's defaults {limits}")
        if k > limits.max_k:
            _warn(f"note: --k {k} is over the service's max_k; using k={limits.max_k}")
            k = limits.max_k
        try:
            t0 = time.perf_counter()
            for item, paths in gallery.items():
                enroll_item(client, ids[item], paths, limits, tally)
            enroll_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for item, paths in queries.items():
                for p in paths:
                    try:
                        ranks.append(search_rank(client, p, ids[item], k, limits))
                    except FileRejectedError:
                        # Left out of the metrics: a file the service cannot read says
                        # nothing about retrieval quality; it is counted instead.
                        tally.skipped_query += 1
            search_s = time.perf_counter() - t0
        finally:
            if not keep:
                _delete_items(client, tally.image_counts)
    if not ranks:
        raise SystemExit("no query image could be searched (see the messages above)")
    n = len(ranks)
    return {
        "queries": n,
        "items": len(tally.image_counts),
        "gallery_items": len(gallery),
        "gallery_images": sum(len(v) for v in gallery.values()),
        "enrolled_images": sum(tally.image_counts.values()),
        "query_items": len(queries),
        "queries_without_gallery_item": sum(
            len(paths) for item, paths in queries.items() if ids[item] not in tally.image_counts
        ),
        "skipped_files": tally.skipped_gallery + tally.skipped_query,
        "skipped_gallery_files": tally.skipped_gallery,
        "skipped_query_files": tally.skipped_query,
        "recall@1": sum(r is not None and r <= 1 for r in ranks) / n,
        "recall@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "mrr": sum(1.0 / r for r in ranks if r is not None) / n,
        "k": k,
        "enroll_requests": tally.enroll_requests,
        "limits": {
            "max_images_per_request": limits.max_images_per_request,
            "max_request_bytes": limits.max_request_bytes,
        },
        "renamed_items": {name: ids[name] for name in ids if ids[name] != prefix + name},
        "kept_items": keep,
        "enroll_seconds": round(enroll_s, 3),
        "search_seconds": round(search_s, 3),
        "wall_seconds": round(time.perf_counter() - wall_t0, 3),
    }


def _delete_items(client: httpx.Client, item_ids: dict[str, int]) -> None:
    # Best effort: runs on the way out of a failed run too, where the service may be gone.
    for item_id in item_ids:
        try:
            r = client.delete(f"/items/{item_id}")
        except httpx.TransportError as exc:
            _warn(f"could not delete {item_id}: {exc}")
            continue
        if r.status_code not in (204, 404):
            _warn(f"could not delete {item_id}: HTTP {r.status_code}: {problem_detail(r)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("root", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--prefix", default=f"eval-{uuid.uuid4().hex[:8]}:")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="do not delete the enrolled items")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("--k must be at least 1")
    try:
        result = evaluate(args.root, args.url, prefix=args.prefix, k=args.k, keep=args.keep)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:
        print(f"error: cannot talk to the service at {args.url}: {exc}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
