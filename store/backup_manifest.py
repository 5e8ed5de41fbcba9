"""What a backup directory holds, written last so that its presence marks a complete backup.

Layout of a backup directory::

    manifest.json          this record
    store.sqlite3          the SQLite store (backend "sqlite"), or
    redis-namespace.jsonl  one {"key", "dump"} line per key of the namespace (backend "redis";
                           "dump" is the base64 of its DUMP payload)
    blobs/ab/cd/<sha256>   every blob the store references (when the store kept blobs)
    blobs/thumbnails/ab/cd/<sha256>
                           the thumbnails made so far of those blobs, keyed by their original's
                           hash (store/thumbnail_blobs.py)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from store.errors import StoreError
from store.fsync_dir import fsync_dir
from store.records import ModelIdentity

FORMAT = "centroid-retrieval-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SQLITE_NAME = "store.sqlite3"
REDIS_NAME = "redis-namespace.jsonl"
BLOBS_NAME = "blobs"


@dataclass(frozen=True)
class BackupManifest:
    backend: str  # "sqlite" or "redis"
    created_at: str  # ISO 8601, UTC
    items: int
    images: int
    model: ModelIdentity | None
    namespace: str | None  # the Redis namespace the keys were dumped from
    blobs_kept: bool  # False: the store kept no blobs, so the backup has none to check
    referenced_hashes: int
    blobs_copied: int
    missing_blobs: list[str] = field(default_factory=list)  # referenced, absent at backup time
    # Thumbnails copied beside them; one never made is not missing (it is made on request).
    thumbnails_copied: int = 0

    def write(self, directory: Path) -> None:
        payload = {"format": FORMAT, "version": FORMAT_VERSION, **asdict(self)}
        tmp = directory / (MANIFEST_NAME + ".tmp")
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / MANIFEST_NAME)
        fsync_dir(directory)

    @classmethod
    def read(cls, directory: Path) -> BackupManifest:
        path = directory / MANIFEST_NAME
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise StoreError(f"{directory} is not a complete backup: no {MANIFEST_NAME}") from None
        except ValueError as exc:
            raise StoreError(f"{path} is not valid JSON: {exc}") from exc
        if raw.get("format") != FORMAT or raw.get("version") != FORMAT_VERSION:
            raise StoreError(
                f"{path} is not a {FORMAT} version {FORMAT_VERSION} manifest "
                f"(format {raw.get('format')!r}, version {raw.get('version')!r})"
            )
        model = raw["model"]
        return cls(
            backend=str(raw["backend"]),
            created_at=str(raw["created_at"]),
            items=int(raw["items"]),
            images=int(raw["images"]),
            model=None if model is None else ModelIdentity(**model),
            namespace=raw["namespace"],
            blobs_kept=bool(raw["blobs_kept"]),
            referenced_hashes=int(raw["referenced_hashes"]),
            blobs_copied=int(raw["blobs_copied"]),
            missing_blobs=[str(h) for h in raw["missing_blobs"]],
            # Absent from a manifest written before thumbnails existed.
            thumbnails_copied=int(raw.get("thumbnails_copied", 0)),
        )
