"""Embedded store: one SQLite file, for a single service instance.

Durability: WAL journal with ``synchronous=FULL``, so every commit is fsynced before it returns
and an HTTP 2xx sent after it survives a power loss (https://sqlite.org/pragma.html#pragma_synchronous).
Writes use ``BEGIN IMMEDIATE`` so a write transaction takes the write lock up front instead of
failing half-way on upgrade. One connection is shared by all threads behind a lock; other
processes on the same file wait up to ``BUSY_TIMEOUT_S`` for the lock, then get
``StoreUnavailableError``.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from store.embedding_codec import (
    check_embedding,
    f32_bytes,
    f32_from,
    f64_bytes,
    f64_from,
    sum_in_order,
)
from store.errors import (
    ImageNotFoundError,
    ItemNotFoundError,
    ModelMismatchError,
    StoreError,
    StoreUnavailableError,
)
from store.records import (
    DeleteOutcome,
    EnrollOutcome,
    ImageRecord,
    ItemRecord,
    ItemState,
    ItemSummary,
    ModelIdentity,
    NewImage,
)

SCHEMA_VERSION = 1

# How long a write waits for another process's write lock before giving up (a 503 for the
# caller, who may retry); well under typical HTTP client timeouts.
BUSY_TIMEOUT_S = 5.0

# Rows per query when streaming all items or images, bounding memory during a rebuild.
PAGE_ROWS = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS model_identity (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    dim INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    image_count INTEGER NOT NULL,
    embedding_sum BLOB NOT NULL  -- (D,) float64, little-endian
);
CREATE TABLE IF NOT EXISTS images (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- enrollment order
    image_id TEXT NOT NULL UNIQUE,
    item_id TEXT NOT NULL REFERENCES items(item_id),
    content_hash TEXT NOT NULL,
    embedding BLOB NOT NULL,  -- (D,) float32, little-endian
    UNIQUE (item_id, content_hash)
);
CREATE INDEX IF NOT EXISTS images_by_item ON images (item_id, seq);
CREATE INDEX IF NOT EXISTS images_by_hash ON images (content_hash);
"""

T = TypeVar("T")


class SqliteStore:
    backend = "sqlite"

    def __init__(self, path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._identity: ModelIdentity | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout_s,
                isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE)
                check_same_thread=False,  # shared across threads, serialised by self._lock
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._write(self._create_schema)
        except (sqlite3.OperationalError, OSError) as exc:
            raise StoreUnavailableError(f"cannot open SQLite store {self.path}: {exc}") from exc

    # -- model identity -----------------------------------------------------------------------

    def ping(self) -> None:
        self._read(lambda c: c.execute("SELECT version FROM schema_version").fetchone())

    def get_model_identity(self) -> ModelIdentity | None:
        row = self._read(
            lambda c: c.execute("SELECT name, version, dim FROM model_identity").fetchone()
        )
        return None if row is None else ModelIdentity(str(row[0]), str(row[1]), int(row[2]))

    def claim_model_identity(self, identity: ModelIdentity) -> None:
        def claim(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT name, version, dim FROM model_identity").fetchone()
            if row is None:
                c.execute(
                    "INSERT INTO model_identity VALUES (1, ?, ?, ?)",
                    (identity.name, identity.version, identity.dim),
                )
                return
            stored = ModelIdentity(str(row[0]), str(row[1]), int(row[2]))
            if stored != identity:
                raise ModelMismatchError(stored, identity)

        self._write(claim)
        self._identity = identity

    def reset_model_identity(self) -> None:
        def reset(c: sqlite3.Connection) -> None:
            (images,) = c.execute("SELECT COUNT(*) FROM images").fetchone()
            if images:
                raise StoreError(
                    f"cannot reset the model identity: the store holds {images} images"
                )
            c.execute("DELETE FROM model_identity")

        self._write(reset)
        self._identity = None

    # -- writes -------------------------------------------------------------------------------

    def enroll(self, item_id: str, images: Sequence[NewImage]) -> EnrollOutcome:
        if not images:
            raise ValueError("enroll needs at least one image")

        def enroll(c: sqlite3.Connection) -> EnrollOutcome:
            row = c.execute(
                "SELECT image_count, embedding_sum FROM items WHERE item_id = ?", (item_id,)
            ).fetchone()
            count = 0 if row is None else int(row[0])
            total = None if row is None else f64_from(row[1])
            dim = self._expected_dim(c, total, images)
            image_ids: list[str] = []
            created: list[bool] = []
            seen: dict[str, str] = {}
            for image in images:
                emb = check_embedding(image.embedding, dim)
                existing = seen.get(image.content_hash)
                if existing is None:
                    hit = c.execute(
                        "SELECT image_id FROM images WHERE item_id = ? AND content_hash = ?",
                        (item_id, image.content_hash),
                    ).fetchone()
                    existing = None if hit is None else str(hit[0])
                if existing is not None:
                    image_ids.append(existing)
                    created.append(False)
                    continue
                if row is None and count == 0:
                    # The item row must exist before its images (foreign key).
                    c.execute(
                        "INSERT INTO items VALUES (?, 0, ?)",
                        (item_id, f64_bytes(np.zeros(dim))),
                    )
                image_id = uuid.uuid4().hex
                c.execute(
                    "INSERT INTO images (image_id, item_id, content_hash, embedding)"
                    " VALUES (?, ?, ?, ?)",
                    (image_id, item_id, image.content_hash, f32_bytes(emb)),
                )
                total = emb.astype(np.float64) if total is None else total + emb
                count += 1
                seen[image.content_hash] = image_id
                image_ids.append(image_id)
                created.append(True)
            if total is None:
                raise AssertionError("unreachable: a new item always gets a first image")
            if any(created):
                c.execute(
                    "UPDATE items SET image_count = ?, embedding_sum = ? WHERE item_id = ?",
                    (count, f64_bytes(total), item_id),
                )
            return EnrollOutcome(ItemState(item_id, count, total), image_ids, created)

        return self._write(enroll)

    def delete_image(self, item_id: str, image_id: str) -> DeleteOutcome:
        def delete(c: sqlite3.Connection) -> DeleteOutcome:
            item = c.execute(
                "SELECT embedding_sum FROM items WHERE item_id = ?", (item_id,)
            ).fetchone()
            if item is None:
                raise ItemNotFoundError(f"item {item_id!r} not found")
            dim = len(f64_from(item[0]))
            hit = c.execute(
                "SELECT content_hash FROM images WHERE item_id = ? AND image_id = ?",
                (item_id, image_id),
            ).fetchone()
            if hit is None:
                raise ImageNotFoundError(f"image {image_id!r} not found in item {item_id!r}")
            c.execute("DELETE FROM images WHERE image_id = ?", (image_id,))
            rest = [
                f32_from(r[0])
                for r in c.execute(
                    "SELECT embedding FROM images WHERE item_id = ? ORDER BY seq", (item_id,)
                )
            ]
            released = self._released(c, [str(hit[0])])
            if not rest:
                c.execute("DELETE FROM items WHERE item_id = ?", (item_id,))
                return DeleteOutcome(_gone(item_id, dim), released)
            total = sum_in_order(rest, dim)
            c.execute(
                "UPDATE items SET image_count = ?, embedding_sum = ? WHERE item_id = ?",
                (len(rest), f64_bytes(total), item_id),
            )
            return DeleteOutcome(ItemState(item_id, len(rest), total), released)

        return self._write(delete)

    def delete_item(self, item_id: str) -> DeleteOutcome:
        def delete(c: sqlite3.Connection) -> DeleteOutcome:
            row = c.execute(
                "SELECT embedding_sum FROM items WHERE item_id = ?", (item_id,)
            ).fetchone()
            if row is None:
                raise ItemNotFoundError(f"item {item_id!r} not found")
            hashes = [
                str(r[0])
                for r in c.execute(
                    "SELECT content_hash FROM images WHERE item_id = ? ORDER BY seq", (item_id,)
                )
            ]
            c.execute("DELETE FROM images WHERE item_id = ?", (item_id,))
            c.execute("DELETE FROM items WHERE item_id = ?", (item_id,))
            dim = len(f64_from(row[0]))
            return DeleteOutcome(_gone(item_id, dim), self._released(c, hashes))

        return self._write(delete)

    # -- reads --------------------------------------------------------------------------------

    def get_item(self, item_id: str) -> ItemRecord | None:
        def get(c: sqlite3.Connection) -> ItemRecord | None:
            if c.execute("SELECT 1 FROM items WHERE item_id = ?", (item_id,)).fetchone() is None:
                return None
            ids = c.execute(
                "SELECT image_id FROM images WHERE item_id = ? ORDER BY seq", (item_id,)
            ).fetchall()
            return ItemRecord(item_id, [str(r[0]) for r in ids])

        return self._read(get)

    def list_items(self, limit: int, cursor: str | None) -> tuple[list[ItemSummary], str | None]:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        rows = self._read(
            lambda c: c.execute(
                "SELECT item_id, image_count FROM items WHERE item_id > ? ORDER BY item_id LIMIT ?",
                (cursor if cursor is not None else "", limit + 1),
            ).fetchall()
        )
        page = [ItemSummary(str(r[0]), int(r[1])) for r in rows[:limit]]
        return page, (page[-1].item_id if len(rows) > limit else None)

    def iter_item_states(self) -> Iterator[ItemState]:
        after = ""
        while True:
            rows = self._fetch_all(
                "SELECT item_id, image_count, embedding_sum FROM items"
                " WHERE item_id > ? ORDER BY item_id LIMIT ?",
                (after, PAGE_ROWS),
            )
            for item_id, count, blob in rows:
                yield ItemState(str(item_id), int(count), f64_from(blob))
            if len(rows) < PAGE_ROWS:
                return
            after = str(rows[-1][0])

    def iter_images(self) -> Iterator[ImageRecord]:
        after = 0
        while True:
            rows = self._fetch_all(
                "SELECT seq, image_id, item_id, content_hash, embedding FROM images"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, PAGE_ROWS),
            )
            for _, image_id, item_id, content_hash, blob in rows:
                yield ImageRecord(str(image_id), str(item_id), str(content_hash), f32_from(blob))
            if len(rows) < PAGE_ROWS:
                return
            after = int(rows[-1][0])

    def is_hash_referenced(self, content_hash: str) -> bool:
        row = self._read(
            lambda c: c.execute(
                "SELECT 1 FROM images WHERE content_hash = ? LIMIT 1", (content_hash,)
            ).fetchone()
        )
        return row is not None

    def counts(self) -> tuple[int, int]:
        def count(c: sqlite3.Connection) -> tuple[int, int]:
            (items,) = c.execute("SELECT COUNT(*) FROM items").fetchone()
            (images,) = c.execute("SELECT COUNT(*) FROM images").fetchone()
            return int(items), int(images)

        return self._read(count)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- internals ----------------------------------------------------------------------------

    def _create_schema(self, c: sqlite3.Connection) -> None:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                c.execute(statement)
        row = c.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            c.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        elif int(row[0]) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {row[0]}, this code reads {SCHEMA_VERSION}"
            )

    def _expected_dim(
        self,
        c: sqlite3.Connection,
        total: npt.NDArray[np.float64] | None,
        images: Sequence[NewImage],
    ) -> int:
        """The claimed model's dim, else the item's, else the first image's."""
        if self._identity is None:
            row = c.execute("SELECT name, version, dim FROM model_identity").fetchone()
            if row is not None:
                self._identity = ModelIdentity(str(row[0]), str(row[1]), int(row[2]))
        if self._identity is not None:
            return self._identity.dim
        if total is not None:
            return int(total.shape[0])
        return int(np.asarray(images[0].embedding).reshape(-1).shape[0])

    @staticmethod
    def _released(c: sqlite3.Connection, hashes: Sequence[str]) -> list[str]:
        out: list[str] = []
        for h in dict.fromkeys(hashes):
            if c.execute("SELECT 1 FROM images WHERE content_hash = ? LIMIT 1", (h,)).fetchone():
                continue
            out.append(h)
        return out

    def _fetch_all(self, sql: str, params: tuple[object, ...]) -> list[Any]:
        return self._read(lambda c: c.execute(sql, params).fetchall())

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock, _unavailable_on_operational_error(self.path):
            return fn(self._conn)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock, _unavailable_on_operational_error(self.path):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._conn)
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result


def _gone(item_id: str, dim: int) -> ItemState:
    return ItemState(item_id, 0, np.zeros(dim, dtype=np.float64))


@contextmanager
def _unavailable_on_operational_error(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailableError(f"SQLite store {path}: {exc}") from exc
    except sqlite3.ProgrammingError as exc:
        # Raised by a closed connection: the store is not usable any more.
        raise StoreUnavailableError(f"SQLite store {path}: {exc}") from exc
