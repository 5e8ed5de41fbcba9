"""Measure a running service on a labelled folder, through its public HTTP API.

    python deploy/evaluate_service.py ROOT --url http://127.0.0.1:8000 [--prefix run1:]

``ROOT/gallery/<item>/*`` is enrolled (one request per item), every ``ROOT/query/<item>/*`` is
searched, and Recall@1, Recall@5 and MRR (over the top ``--k`` results; a miss counts 0) are
printed as JSON. Items are enrolled under ``<prefix><item>`` and deleted afterwards unless
``--keep``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _items(split_dir: Path) -> dict[str, list[Path]]:
    if not split_dir.is_dir():
        raise SystemExit(f"missing folder: {split_dir}")
    items = {d.name: _images(d) for d in sorted(split_dir.iterdir()) if d.is_dir()}
    return {k: v for k, v in items.items() if v}


def evaluate(root: Path, url: str, *, prefix: str, k: int, keep: bool) -> dict[str, Any]:
    gallery, queries = _items(root / "gallery"), _items(root / "query")
    if not gallery or not queries:
        raise SystemExit(f"{root} needs gallery/<item>/ and query/<item>/ folders with images")
    ranks: list[int | None] = []
    with httpx.Client(base_url=url, timeout=120) as client:
        t0 = time.perf_counter()
        for item, paths in gallery.items():
            files = [("images", (p.name, p.read_bytes())) for p in paths]
            r = client.post(f"/items/{prefix}{item}/images", files=files)
            r.raise_for_status()
        enroll_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for item, paths in queries.items():
            for p in paths:
                r = client.post(
                    "/search", params={"k": k}, files={"image": (p.name, p.read_bytes())}
                )
                r.raise_for_status()
                ids = [hit["item_id"] for hit in r.json()["results"]]
                target = f"{prefix}{item}"
                ranks.append(ids.index(target) + 1 if target in ids else None)
        search_s = time.perf_counter() - t0
        if not keep:
            for item in gallery:
                client.delete(f"/items/{prefix}{item}")
    n = len(ranks)
    return {
        "queries": n,
        "gallery_items": len(gallery),
        "gallery_images": sum(len(v) for v in gallery.values()),
        "recall@1": sum(r is not None and r <= 1 for r in ranks) / n,
        "recall@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "mrr": sum(1.0 / r for r in ranks if r is not None) / n,
        "k": k,
        "enroll_seconds": round(enroll_s, 3),
        "search_seconds": round(search_s, 3),
    }


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
    result = evaluate(args.root, args.url, prefix=args.prefix, k=args.k, keep=args.keep)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
