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
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
# The service's item id rule (app/dependencies.py ITEM_ID_PATTERN).
ITEM_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_ITEM_ID = 128
INVALID_ID_CHARS = re.compile(r"[^A-Za-z0-9._:-]")
# 8 hex digits: collisions among one dataset's renamed folders are checked, not assumed away.
NAME_HASH_DIGITS = 8
# Leave room for a readable stem after the prefix in every mapped id.
MAX_PREFIX = 96
# Used only when /info has no limits (an older service): the service's documented defaults.
DEFAULT_LIMITS = {"max_images_per_request": 64, "max_request_bytes": 32 * 1024 * 1024, "max_k": 100}
# Multipart framing per file: boundary line, Content-Disposition and Content-Type headers,
# CRLFs (~150 bytes for httpx) plus the file name, which may be escaped or UTF-8 encoded (up to
# 4 bytes a character). Generous, so a chunk never goes over the body limit by its framing.
PART_OVERHEAD = 512
NAME_BYTES_PER_CHAR = 4
REQUEST_OVERHEAD = 512
# Statuses that mean "this file was refused", as opposed to the service failing.
REJECTED = (413, 415, 422)


class ServiceError(RuntimeError):
    """The service answered something the evaluation cannot continue after."""


class FileRejectedError(Exception):
    """The service refused one file (already reported on stderr); the run goes on."""


@dataclass(frozen=True)
class Limits:
    max_images_per_request: int
    max_request_bytes: int
    max_k: int


@dataclass
class Tally:
    skipped_gallery: int = 0
    skipped_query: int = 0
    enroll_requests: int = 0
    # item id → images it has after our last successful enrollment (deduplicated by the service).
    image_counts: dict[str, int] = field(default_factory=dict)


def item_id_for(folder: str, prefix: str) -> str:
    """The item id a folder is enrolled under: ``prefix + folder`` when valid, else mapped.

    The mapping depends only on the folder name, so gallery and query folders of one item map
    to the same id, run after run.
    """
    candidate = prefix + folder
    if ITEM_ID_RE.fullmatch(candidate):
        return candidate
    # surrogateescape: names that are not valid UTF-8 on disk still hash to a stable value.
    digest = hashlib.sha256(folder.encode("utf-8", "surrogateescape")).hexdigest()
    stem = INVALID_ID_CHARS.sub("_", folder)[: MAX_ITEM_ID - len(prefix) - 1 - NAME_HASH_DIGITS]
    return f"{prefix}{stem}-{digest[:NAME_HASH_DIGITS]}"


def map_item_ids(folders: Sequence[str], prefix: str) -> dict[str, str]:
    if len(prefix) > MAX_PREFIX or INVALID_ID_CHARS.search(prefix):
        raise SystemExit(
            f"--prefix {prefix!r} must be at most {MAX_PREFIX} characters of [A-Za-z0-9._:-]"
        )
    ids = {name: item_id_for(name, prefix) for name in folders}
    owners: dict[str, str] = {}
    for name, item_id in ids.items():
        if item_id in owners:
            raise SystemExit(
                f"folders {owners[item_id]!r} and {name!r} both map to item id {item_id!r}; "
                "rename one of them"
            )
        owners[item_id] = name
    return ids


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _items(split_dir: Path) -> dict[str, list[Path]]:
    if not split_dir.is_dir():
        raise SystemExit(f"missing folder: {split_dir}")
    items = {d.name: _images(d) for d in sorted(split_dir.iterdir()) if d.is_dir()}
    return {k: v for k, v in items.items() if v}


def _detail(response: httpx.Response) -> str:
    """The problem+json ``detail`` (RFC 9457) of an error answer, or the start of its body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return json.dumps(body)[:300]


def _fail(response: httpx.Response, what: str) -> ServiceError:
    return ServiceError(f"{what}: HTTP {response.status_code}: {_detail(response)}")


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_limits(client: httpx.Client) -> Limits:
    r = client.get("/info")
    if r.status_code != 200:
        raise _fail(r, f"GET {client.base_url}info (is the service ready?)")
    limits = r.json().get("limits")
    if not isinstance(limits, dict):
        _warn(f"note: /info reports no limits; assuming the defaults {DEFAULT_LIMITS}")
        limits = DEFAULT_LIMITS
    return Limits(**{key: int(limits.get(key, value)) for key, value in DEFAULT_LIMITS.items()})


def part_bytes(path: Path, size: int) -> int:
    """Upper bound of one file's share of a multipart body."""
    return size + PART_OVERHEAD + NAME_BYTES_PER_CHAR * len(path.name)


def plan_chunks(
    paths: Sequence[Path], limits: Limits, sizes: dict[Path, int]
) -> Iterator[list[Path]]:
    """Consecutive chunks of ``paths`` within both per-request limits (greedy, in order).

    A file too large to go in any request on its own is left out here; the caller reports it.
    """
    budget = limits.max_request_bytes - REQUEST_OVERHEAD
    chunk: list[Path] = []
    used = 0
    for path in paths:
        cost = part_bytes(path, sizes[path])
        if cost > budget:
            continue
        if chunk and (len(chunk) == limits.max_images_per_request or used + cost > budget):
            yield chunk
            chunk, used = [], 0
        chunk.append(path)
        used += cost
    if chunk:
        yield chunk


def enroll_item(
    client: httpx.Client, item_id: str, paths: Sequence[Path], limits: Limits, tally: Tally
) -> None:
    sizes = {p: p.stat().st_size for p in paths}
    budget = limits.max_request_bytes - REQUEST_OVERHEAD
    for p in paths:
        if part_bytes(p, sizes[p]) > budget:
            tally.skipped_gallery += 1
            _warn(
                f"skipped {p}: {sizes[p]} bytes does not fit in one request "
                f"(the service accepts at most {limits.max_request_bytes} bytes per request)"
            )
    for chunk in plan_chunks(paths, limits, sizes):
        _enroll_chunk(client, item_id, chunk, tally)


def _enroll_chunk(client: httpx.Client, item_id: str, chunk: Sequence[Path], tally: Tally) -> None:
    files = [("images", (p.name, p.read_bytes())) for p in chunk]
    tally.enroll_requests += 1
    r = client.post(f"/items/{item_id}/images", files=files)
    if r.status_code == 201:
        tally.image_counts[item_id] = int(r.json()["image_count"])
        return
    if r.status_code not in REJECTED:
        raise _fail(r, f"enrolling {len(chunk)} file(s) of {chunk[0].parent}")
    if len(chunk) > 1:
        # The service rejects a request whole when one file is bad: send the files one by one
        # to enroll the good ones and name the bad ones (re-sending is idempotent by content).
        for p in chunk:
            _enroll_chunk(client, item_id, [p], tally)
        return
    tally.skipped_gallery += 1
    _warn(f"skipped {chunk[0]}: HTTP {r.status_code}: {_detail(r)}")


def search_rank(
    client: httpx.Client, path: Path, target: str, k: int, limits: Limits
) -> int | None:
    """1-based rank of ``target`` among the results, ``None`` when it is not among them.

    Raises :class:`FileRejectedError` when the file cannot be or was not accepted as a query.
    """
    size = path.stat().st_size
    if part_bytes(path, size) > limits.max_request_bytes - REQUEST_OVERHEAD:
        _warn(
            f"skipped {path}: {size} bytes does not fit in one request "
            f"(the service accepts at most {limits.max_request_bytes} bytes per request)"
        )
        raise FileRejectedError(path)
    r = client.post("/search", params={"k": k}, files={"image": (path.name, path.read_bytes())})
    if r.status_code in REJECTED:
        _warn(f"skipped {path}: HTTP {r.status_code}: {_detail(r)}")
        raise FileRejectedError(path)
    if r.status_code != 200:
        raise _fail(r, f"searching with {path}")
    ids = [hit["item_id"] for hit in r.json()["results"]]
    return ids.index(target) + 1 if target in ids else None


def evaluate(root: Path, url: str, *, prefix: str, k: int, keep: bool) -> dict[str, Any]:
    wall_t0 = time.perf_counter()
    gallery, queries = _items(root / "gallery"), _items(root / "query")
    if not gallery or not queries:
        raise SystemExit(f"{root} needs gallery/<item>/ and query/<item>/ folders with images")
    ids = map_item_ids(sorted(set(gallery) | set(queries)), prefix)
    tally = Tally()
    ranks: list[int | None] = []
    enroll_s = search_s = 0.0
    with httpx.Client(base_url=url, timeout=120) as client:
        limits = read_limits(client)
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
            _warn(f"could not delete {item_id}: HTTP {r.status_code}: {_detail(r)}")


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
