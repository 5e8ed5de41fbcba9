"""Embedded store: one SQLite file, for a single service instance.

Durability: WAL journal with ``synchronous=FULL``, so every commit is fsynced before it returns
and an HTTP 2xx sent after it survives a power loss (https://sqlite.org/pragma.html#pragma_synchronous).
Writes use ``BEGIN IMMEDIATE`` so a write transaction takes the write lock up front instead of
failing half-way on upgrade; inside it, enroll and deletes read the item, ask the write plan
(``store/write_plan.py``) and execute its mutations. One connection is shared by all threads
behind a lock; other processes on the same file wait up to ``BUSY_TIMEOUT_S`` for the lock,
then get ``StoreUnavailableError``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, assert_never

import numpy as np

from store.change_log import ChangedItem, ChangeLogGapError
from store.embedding_codec import f32_bytes, f32_from, f64_bytes, f64_from, unit_sum_in_order
from store.errors import (
    ImageNotFoundError,
    ItemNotFoundError,
    ModelMismatchError,
    StoreError,
    StoreOutcomeUnknownError,
    StoreUnavailableError,
)
from store.idempotency import (
    IdempotencyClaim,
    IdempotencyRecord,
    replay_if_recorded,
)
from store.item_attributes import (
    DEFAULT_MAX_ATTRIBUTES_BYTES,
    AttributeFilter,
    Attributes,
    attributes_from_json,
    attributes_json,
)
from store.item_versions import to_commit
from store.mutations import (
    CreateItem,
    DeleteItem,
    Mutation,
    PutImage,
    RecordChange,
    RecordResponse,
    ReleaseHash,
    RemoveImage,
    SetAttributes,
    SetImageQuarantine,
    SetItemTotals,
    StoredResponse,
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
    PatchOutcome,
)
from store.store_meta import check_meta_key
from store.write_plan import (
    EnrollJudge,
    HeldImage,
    ItemTotals,
    OutcomeT,
    WritePlan,
    hashes_to_look_up,
    plan_delete_image,
    plan_delete_item,
    plan_enroll,
    plan_patch_attributes,
    plan_set_image_quarantine,
)

# 1: before item attributes and unit sums; 2: the items table has ``attributes`` and
# ``unit_sum``; 3: the images table has ``quarantined``. A schema-1 file is upgraded when opened
# (``_create_schema``): its unit sums are computed from the stored embeddings, its attributes
# start empty; a schema-2 file gains the column as 0 (nothing to fill). Older code refuses a
# newer file: schema 1 would not keep unit sums, schema 2 would sum quarantined images back in.
SCHEMA_VERSION = 3

# How long a write waits for another process's write lock before giving up (a 503 for the
# caller, who may retry); well under typical HTTP client timeouts.
BUSY_TIMEOUT_S = 5.0

# Rows per query when streaming all items or images, bounding memory during a rebuild.
PAGE_ROWS = 1000

# Change-log rows kept (about 60 bytes each): how many writes an index snapshot may be behind
# and still catch up by replay instead of a rebuild.
CHANGE_LOG_ROWS = 1_000_000

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
    embedding_sum BLOB NOT NULL,  -- (D,) float64, little-endian
    -- store/item_versions.py (a column added to older files by _create_schema)
    version INTEGER NOT NULL DEFAULT 0,
    -- Schema 2 (added to schema-1 files by _create_schema): a JSON object, compact, keys sorted
    attributes TEXT NOT NULL DEFAULT '{}',
    -- (D,) float64 sum of the L2-normalised embeddings, NULL only until the upgrade fills it
    unit_sum BLOB
);
CREATE TABLE IF NOT EXISTS images (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- enrollment order
    image_id TEXT NOT NULL UNIQUE,
    item_id TEXT NOT NULL REFERENCES items(item_id),
    content_hash TEXT NOT NULL,
    embedding BLOB NOT NULL,  -- (D,) float32, little-endian
    -- Schema 3: 1 = held out of its item's sums (store/write_plan.py, "Quarantine")
    quarantined INTEGER NOT NULL DEFAULT 0,
    UNIQUE (item_id, content_hash)
);
CREATE INDEX IF NOT EXISTS images_by_item ON images (item_id, seq);
CREATE INDEX IF NOT EXISTS images_by_hash ON images (content_hash);
-- Added without a schema version bump: a store written before it simply gains the empty table.
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    media_type TEXT,
    body BLOB NOT NULL,
    expires_at REAL NOT NULL,  -- Unix seconds
    headers TEXT NOT NULL DEFAULT '[]'  -- JSON [[name, value], ...]
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at);
CREATE TABLE IF NOT EXISTS write_counter (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    value INTEGER NOT NULL  -- the last version handed out (store/item_versions.py)
);
-- One row per committed write, in the same transaction (store/change_log.py): which item it
-- changed. The newest CHANGE_LOG_ROWS are kept.
CREATE TABLE IF NOT EXISTS changes (
    version INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL,
    committed_at REAL NOT NULL  -- Unix seconds
);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

T = TypeVar("T")


class SqliteStore:
    backend = "sqlite"

    def __init__(
        self,
        path: Path,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        *,
        change_log_rows: int = CHANGE_LOG_ROWS,
        durable: bool = True,
    ) -> None:
        """``durable=False`` skips the fsync of each commit (``synchronous=NORMAL`` in WAL
        mode): for bulk loads and benchmarks only, a power loss may drop the last commits."""
        if change_log_rows < 1:
            raise ValueError(f"change_log_rows must be >= 1, got {change_log_rows}")
        self.path = Path(path)
        self.change_log_rows = change_log_rows
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
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._open_schema()
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

    def get_meta(self, key: str) -> str | None:
        check_meta_key(key)
        row = self._read(
            lambda c: c.execute("SELECT value FROM store_meta WHERE key = ?", (key,)).fetchone()
        )
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        check_meta_key(key)

        def write(c: sqlite3.Connection) -> None:
            if value is None:
                c.execute("DELETE FROM store_meta WHERE key = ?", (key,))
            else:
                c.execute("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", (key, value))

        self._write(write)

    # -- writes -------------------------------------------------------------------------------

    def enroll(
        self,
        item_id: str,
        images: Sequence[NewImage],
        idempotency: IdempotencyClaim[EnrollOutcome] | None = None,
        attributes_patch: Attributes | None = None,
        max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES,
        image_ids: Sequence[str] | None = None,
        judge: EnrollJudge | None = None,
    ) -> EnrollOutcome:
        def enroll(c: sqlite3.Connection) -> EnrollOutcome:
            self._replay_if_recorded(c, idempotency)
            known: dict[str, str] = {}
            for content_hash in hashes_to_look_up(images):
                hit = c.execute(
                    "SELECT image_id FROM images WHERE item_id = ? AND content_hash = ?",
                    (item_id, content_hash),
                ).fetchone()
                if hit is not None:
                    known[content_hash] = str(hit[0])
            plan = plan_enroll(
                item_id,
                images,
                stored=self._totals(c, item_id),
                known=known,
                claimed_dim=self._claimed_dim(c),
                attributes_patch=attributes_patch,
                max_attributes_bytes=max_attributes_bytes,
                image_ids=image_ids,
                judge=judge,
            )
            return self._apply(c, plan, idempotency)

        return self._write(enroll)

    def patch_attributes(
        self,
        item_id: str,
        patch: Attributes,
        max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES,
        idempotency: IdempotencyClaim[PatchOutcome] | None = None,
    ) -> ItemState:
        def patch_attributes(c: sqlite3.Connection) -> PatchOutcome:
            self._replay_if_recorded(c, idempotency)
            plan = plan_patch_attributes(
                item_id,
                patch,
                stored=self._totals(c, item_id),
                max_attributes_bytes=max_attributes_bytes,
            )
            return self._apply(c, plan, idempotency)

        return self._write(patch_attributes).item

    def delete_image(
        self,
        item_id: str,
        image_id: str,
        idempotency: IdempotencyClaim[DeleteOutcome] | None = None,
    ) -> DeleteOutcome:
        def delete(c: sqlite3.Connection) -> DeleteOutcome:
            self._replay_if_recorded(c, idempotency)
            plan = plan_delete_image(
                item_id,
                image_id,
                stored=self._totals(c, item_id),
                held=self._held(c, item_id),
                refs=self._refs(c, item_id),
            )
            return self._apply(c, plan, idempotency)

        return self._write(delete)

    def set_image_quarantine(
        self,
        item_id: str,
        image_id: str,
        quarantined: bool,
        idempotency: IdempotencyClaim[PatchOutcome] | None = None,
    ) -> ItemState:
        def set_quarantine(c: sqlite3.Connection) -> PatchOutcome:
            self._replay_if_recorded(c, idempotency)
            plan = plan_set_image_quarantine(
                item_id,
                image_id,
                quarantined,
                stored=self._totals(c, item_id),
                held=self._held(c, item_id),
            )
            return self._apply(c, plan, idempotency)

        return self._write(set_quarantine).item

    def delete_item(
        self, item_id: str, idempotency: IdempotencyClaim[DeleteOutcome] | None = None
    ) -> DeleteOutcome:
        def delete(c: sqlite3.Connection) -> DeleteOutcome:
            self._replay_if_recorded(c, idempotency)
            hashes = [
                str(r[0])
                for r in c.execute(
                    "SELECT content_hash FROM images WHERE item_id = ? ORDER BY seq", (item_id,)
                )
            ]
            plan = plan_delete_item(
                item_id,
                stored=self._totals(c, item_id),
                held_hashes=hashes,
                refs=self._refs(c, item_id),
            )
            return self._apply(c, plan, idempotency)

        return self._write(delete)

    # -- reads --------------------------------------------------------------------------------

    def schema_version(self) -> int:
        row = self._read(lambda c: c.execute("SELECT version FROM schema_version").fetchone())
        return int(row[0])

    def last_version(self) -> int:
        return self._read(self._last_version)

    def instance_id(self) -> str:
        row = self._read(
            lambda c: c.execute("SELECT value FROM store_meta WHERE key = 'instance'").fetchone()
        )
        return str(row[0])

    def changed_since(self, version: int) -> list[ChangedItem]:
        """Every item written after ``version``, once each, with its state now (None: it is
        gone); ``ChangeLogGapError`` if rows after ``version`` were trimmed (or predate the
        log), ``ValueError`` if ``version`` is ahead of the store's last write."""

        def read(c: sqlite3.Connection) -> list[ChangedItem]:
            last = self._last_version(c)
            if version > last:
                raise ValueError(f"version {version} is ahead of the store's last write {last}")
            if version == last:
                return []
            (oldest,) = c.execute("SELECT MIN(version) FROM changes").fetchone()
            if oldest is None or int(oldest) > version + 1:
                raise ChangeLogGapError(
                    f"change log starts at {oldest}: writes after {version} are not all in it"
                )
            rows = c.execute(
                f"SELECT c.item_id, {_STATE_COLUMNS} FROM"
                " (SELECT DISTINCT item_id FROM changes WHERE version > ?) AS c"
                " LEFT JOIN items AS i ON i.item_id = c.item_id",
                (version,),
            ).fetchall()
            return [
                ChangedItem(str(row[0]), None if row[1] is None else _state(str(row[0]), row[1:]))
                for row in rows
            ]

        return self._read(read)

    def get_idempotency_record(self, key: str) -> IdempotencyRecord | None:
        record = self._read(lambda c: self._idempotency_record(c, key))
        return record if record is not None and record.live(time.time()) else None

    def get_item(self, item_id: str) -> ItemRecord | None:
        def get(c: sqlite3.Connection) -> ItemRecord | None:
            row = c.execute("SELECT attributes FROM items WHERE item_id = ?", (item_id,)).fetchone()
            if row is None:
                return None
            ids = c.execute(
                "SELECT image_id, quarantined FROM images WHERE item_id = ? ORDER BY seq",
                (item_id,),
            ).fetchall()
            return ItemRecord(
                item_id,
                [str(r[0]) for r in ids],
                attributes_from_json(row[0]),
                quarantined_image_ids=[str(r[0]) for r in ids if r[1]],
            )

        return self._read(get)

    def get_item_state(self, item_id: str) -> ItemState | None:
        totals = self._read(lambda c: self._totals(c, item_id))
        return None if totals is None else totals.state(item_id)

    def image_content_hash(self, item_id: str, image_id: str) -> str:
        def read(c: sqlite3.Connection) -> str:
            row = c.execute(
                "SELECT content_hash FROM images WHERE image_id = ? AND item_id = ?",
                (image_id, item_id),
            ).fetchone()
            if row is not None:
                return str(row[0])
            if c.execute("SELECT 1 FROM items WHERE item_id = ?", (item_id,)).fetchone() is None:
                raise ItemNotFoundError(f"item {item_id!r} not found")
            raise ImageNotFoundError(f"item {item_id!r} has no image {image_id!r}")

        return self._read(read)

    def list_items(
        self, limit: int, cursor: str | None, where: AttributeFilter | None = None
    ) -> tuple[list[ItemSummary], str | None]:
        """See ``Store.list_items``; with ``where``, pages of ``PAGE_ROWS`` rows are read in
        id order and filtered here (the rendering rules are Python's, not SQLite's JSON)."""
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        after = cursor if cursor is not None else ""
        scan = limit + 1 if where is None else max(limit + 1, PAGE_ROWS)
        found: list[ItemSummary] = []
        while True:
            rows = self._fetch_all(
                "SELECT item_id, image_count, attributes FROM items WHERE item_id > ?"
                " ORDER BY item_id LIMIT ?",
                (after, scan),
            )
            for item_id, count, raw in rows:
                attributes = attributes_from_json(raw)
                if where is None or where.matches(attributes):
                    found.append(ItemSummary(str(item_id), int(count), attributes))
            if len(found) > limit or len(rows) < scan:
                break
            after = str(rows[-1][0])
        page = found[:limit]
        return page, (page[-1].item_id if len(found) > limit else None)

    def iter_item_states(self) -> Iterator[ItemState]:
        after = ""
        while True:
            rows = self._fetch_all(
                f"SELECT item_id, {_STATE_COLUMNS} FROM items AS i"
                " WHERE item_id > ? ORDER BY item_id LIMIT ?",
                (after, PAGE_ROWS),
            )
            for row in rows:
                yield _state(str(row[0]), row[1:])
            if len(rows) < PAGE_ROWS:
                return
            after = str(rows[-1][0])

    def iter_images(self) -> Iterator[ImageRecord]:
        after = 0
        while True:
            rows = self._fetch_all(
                "SELECT seq, image_id, item_id, content_hash, embedding, quarantined FROM images"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, PAGE_ROWS),
            )
            for _, image_id, item_id, content_hash, blob, held_out in rows:
                yield ImageRecord(
                    str(image_id),
                    str(item_id),
                    str(content_hash),
                    f32_from(blob),
                    quarantined=bool(held_out),
                )
            if len(rows) < PAGE_ROWS:
                return
            after = int(rows[-1][0])

    def item_images(self, item_ids: Sequence[str]) -> dict[str, list[ImageRecord]]:
        wanted = list(dict.fromkeys(item_ids))
        found: dict[str, list[ImageRecord]] = {i: [] for i in wanted}
        if not wanted:
            return found
        marks = ",".join("?" * len(wanted))
        rows = self._fetch_all(
            "SELECT image_id, item_id, content_hash, embedding, quarantined FROM images"
            f" WHERE item_id IN ({marks}) ORDER BY item_id, seq",
            tuple(wanted),
        )
        for image_id, item_id, content_hash, blob, held_out in rows:
            found[str(item_id)].append(
                ImageRecord(
                    str(image_id),
                    str(item_id),
                    str(content_hash),
                    f32_from(blob),
                    quarantined=bool(held_out),
                )
            )
        return found

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

    def disk_bytes(self) -> int:
        """The store file and its WAL."""
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    def compact(self) -> None:
        """VACUUM, then checkpoint the WAL with TRUNCATE.

        Deleted rows leave free pages that SQLite reuses but never gives back, and the WAL
        keeps the size of its busiest moment. VACUUM rewrites the file with only live pages:
        it needs up to the database's size again in free disk, and holds the write lock for its
        duration (other processes' writes wait ``BUSY_TIMEOUT_S``, then get 503), which a
        maintenance command can afford. ``auto_vacuum=INCREMENTAL`` would free pages without
        the pause, but only the trailing ones, it leaves the file fragmented, and switching an
        existing store to it takes a VACUUM anyway. The rewritten pages go through the WAL, so
        the checkpoint after it is what shrinks both files.
        """
        with self._lock, _unavailable_on_operational_error(self.path):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def backup_to(self, target: Path) -> None:
        """Write a consistent copy of the whole database to ``target`` (SQLite's online backup
        API, in one step: one read transaction, so writers go on meanwhile and the copy is the
        database as of one commit), fsynced. ``target`` must not exist."""
        target = Path(target)
        if target.exists():
            raise StoreError(f"{target} exists already")
        dest = sqlite3.connect(target, isolation_level=None)
        try:
            with self._lock, _unavailable_on_operational_error(self.path):
                self._conn.backup(dest)
            # A self-contained file: no WAL beside it for a copy to lose.
            dest.execute("PRAGMA journal_mode=DELETE")
        finally:
            dest.close()
        with open(target, "rb") as f:
            os.fsync(f.fileno())

    def restore_from(self, source: Path) -> None:
        """Replace the whole database by the one in ``source`` (a ``backup_to`` file), through
        the backup API: one transaction on this store's connection, WAL kept consistent."""
        src = sqlite3.connect(f"file:{Path(source).resolve()}?mode=ro", uri=True)
        try:
            with self._lock, _unavailable_on_operational_error(self.path):
                src.backup(self._conn)
        finally:
            src.close()
        self._identity = None
        self._open_schema()  # refuses another schema version
        self._write(self._new_instance)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- internals ----------------------------------------------------------------------------

    def _open_schema(self) -> None:
        """Create or upgrade the schema. A schema-1 file gains the new columns in one
        transaction, then its unit sums are filled a page per transaction (so the WAL stays
        small and an interrupted upgrade resumes where it stopped on the next open), and only
        then is the schema version raised."""
        if self._write(self._create_schema):
            self._fill_unit_sums()
            self._write(
                lambda c: c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            )

    def _create_schema(self, c: sqlite3.Connection) -> bool:
        """The tables and columns, in one transaction; True when unit sums are still to be
        filled (the schema version then stays below ``SCHEMA_VERSION`` until they are)."""
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                c.execute(statement)
        row = c.execute("SELECT version FROM schema_version").fetchone()
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {row[0]}, this code reads {SCHEMA_VERSION}"
            )
        columns = {str(r[1]) for r in c.execute("PRAGMA table_info(items)")}
        if "version" not in columns:
            # A store written before versions: its items are version 0, older than any write.
            c.execute("ALTER TABLE items ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
        if "attributes" not in columns:  # schema 1
            c.execute("ALTER TABLE items ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}'")
        if "unit_sum" not in columns:  # schema 1
            c.execute("ALTER TABLE items ADD COLUMN unit_sum BLOB")
        upgrading = "unit_sum" not in columns or (row is not None and int(row[0]) < 2)
        columns = {str(r[1]) for r in c.execute("PRAGMA table_info(images)")}
        if "quarantined" not in columns:  # schemas 1 and 2
            c.execute("ALTER TABLE images ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0")
        columns = {str(r[1]) for r in c.execute("PRAGMA table_info(idempotency)")}
        if "headers" not in columns:
            c.execute("ALTER TABLE idempotency ADD COLUMN headers TEXT NOT NULL DEFAULT '[]'")
        if c.execute("SELECT value FROM write_counter").fetchone() is None:
            # Versions start again at 1: rows of an earlier count would collide with them.
            c.execute("DELETE FROM changes")
        # Who this store is, for whatever keeps a copy of it (an index snapshot): a restore
        # makes it another store.
        c.execute("INSERT OR IGNORE INTO store_meta VALUES ('instance', ?)", (uuid.uuid4().hex,))
        if row is None:
            c.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        elif int(row[0]) != SCHEMA_VERSION and not upgrading:
            c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        return upgrading

    def _fill_unit_sums(self) -> int:
        """Compute the unit sum of every item that has none (a schema-1 store) from its stored
        embeddings in enrollment order, ``PAGE_ROWS`` items per transaction in item-id order
        (a keyset walk of the primary key: each page starts where the last ended, so the whole
        fill reads the table once): once, on the first open, reading every embedding
        (O(images x D)). Versions stay: the items' centroids and images are unchanged. Returns
        the items filled."""
        filled, after = 0, ""
        while True:
            last, count = self._write(partial(self._fill_unit_sum_page, after=after))
            filled += count
            if last is None:
                return filled
            after = last

    @staticmethod
    def _fill_unit_sum_page(c: sqlite3.Connection, after: str) -> tuple[str | None, int]:
        """Fill the next page after item id ``after``: (the page's last item id, or None when
        nothing was left; items filled)."""
        rows = c.execute(
            "SELECT item_id, embedding_sum FROM items WHERE item_id > ? AND unit_sum IS NULL"
            " ORDER BY item_id LIMIT ?",
            (after, PAGE_ROWS),
        ).fetchall()
        for item_id, blob in rows:
            embeddings = [
                f32_from(r[0])
                for r in c.execute(
                    "SELECT embedding FROM images WHERE item_id = ? ORDER BY seq", (item_id,)
                )
            ]
            unit_sum = unit_sum_in_order(embeddings, f64_from(blob).shape[0])
            c.execute(
                "UPDATE items SET unit_sum = ? WHERE item_id = ?",
                (f64_bytes(unit_sum), item_id),
            )
        return (str(rows[-1][0]) if rows else None), len(rows)

    @staticmethod
    def _new_instance(c: sqlite3.Connection) -> None:
        c.execute("INSERT OR REPLACE INTO store_meta VALUES ('instance', ?)", (uuid.uuid4().hex,))

    def _claimed_dim(self, c: sqlite3.Connection) -> int | None:
        if self._identity is None:
            row = c.execute("SELECT name, version, dim FROM model_identity").fetchone()
            if row is not None:
                self._identity = ModelIdentity(str(row[0]), str(row[1]), int(row[2]))
        return None if self._identity is None else self._identity.dim

    @staticmethod
    def _held(c: sqlite3.Connection, item_id: str) -> list[HeldImage]:
        return [
            HeldImage(str(r[0]), str(r[1]), f32_from(r[2]), quarantined=bool(r[3]))
            for r in c.execute(
                "SELECT image_id, content_hash, embedding, quarantined FROM images"
                " WHERE item_id = ? ORDER BY seq",
                (item_id,),
            )
        ]

    @staticmethod
    def _totals(c: sqlite3.Connection, item_id: str) -> ItemTotals | None:
        row = c.execute(
            f"SELECT {_STATE_COLUMNS} FROM items AS i WHERE item_id = ?", (item_id,)
        ).fetchone()
        if row is None:
            return None
        state = _state(item_id, row)
        assert state.unit_sum is not None  # filled on open
        return ItemTotals(
            state.count,
            state.embedding_sum,
            state.unit_sum,
            version=state.version,
            attributes=state.attributes,
        )

    @staticmethod
    def _last_version(c: sqlite3.Connection) -> int:
        row = c.execute("SELECT value FROM write_counter").fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def _next_version(c: sqlite3.Connection) -> int:
        row = c.execute(
            "INSERT INTO write_counter VALUES (1, 1)"
            " ON CONFLICT (singleton) DO UPDATE SET value = value + 1 RETURNING value"
        ).fetchone()
        return int(row[0])

    @staticmethod
    def _idempotency_record(c: sqlite3.Connection, key: str) -> IdempotencyRecord | None:
        row = c.execute(
            "SELECT fingerprint, status, media_type, body, expires_at, headers FROM idempotency"
            " WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        headers = tuple((str(n), str(v)) for n, v in json.loads(row[5]))
        response = StoredResponse(int(row[1]), bytes(row[3]), row[2], headers)
        return IdempotencyRecord(str(row[0]), response, float(row[4]))

    def _replay_if_recorded(
        self, c: sqlite3.Connection, claim: IdempotencyClaim[Any] | None
    ) -> None:
        if claim is not None:
            replay_if_recorded(self._idempotency_record(c, claim.key), claim.fingerprint)

    @staticmethod
    def _refs(c: sqlite3.Connection, item_id: str) -> dict[str, int]:
        """Images of any item per content hash, for every hash ``item_id`` holds."""
        rows = c.execute(
            "SELECT content_hash, COUNT(*) FROM images WHERE content_hash IN"
            " (SELECT content_hash FROM images WHERE item_id = ?) GROUP BY content_hash",
            (item_id,),
        )
        return {str(h): int(n) for h, n in rows}

    def _apply(
        self,
        c: sqlite3.Connection,
        plan: WritePlan[OutcomeT],
        claim: IdempotencyClaim[OutcomeT] | None,
    ) -> OutcomeT:
        plan = to_commit(plan, lambda: self._next_version(c), claim)
        for mutation in plan.mutations:
            self._apply_one(c, mutation)
        return plan.outcome

    def _apply_one(self, c: sqlite3.Connection, m: Mutation) -> None:
        match m:
            case CreateItem():
                # Inserted before its images, which reference it (foreign key).
                zero = f64_bytes(np.zeros(m.dim))
                c.execute(
                    "INSERT INTO items (item_id, image_count, embedding_sum, unit_sum)"
                    " VALUES (?, 0, ?, ?)",
                    (m.item_id, zero, zero),
                )
            case PutImage():
                c.execute(
                    "INSERT INTO images (image_id, item_id, content_hash, embedding, quarantined)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        m.image_id,
                        m.item_id,
                        m.content_hash,
                        f32_bytes(m.embedding),
                        int(m.quarantined),
                    ),
                )
            case SetItemTotals():
                c.execute(
                    "UPDATE items SET image_count = ?, embedding_sum = ?, unit_sum = ?"
                    " WHERE item_id = ?",
                    (m.count, f64_bytes(m.embedding_sum), f64_bytes(m.unit_sum), m.item_id),
                )
            case SetImageQuarantine():
                c.execute(
                    "UPDATE images SET quarantined = ? WHERE item_id = ? AND image_id = ?",
                    (int(m.quarantined), m.item_id, m.image_id),
                )
            case SetAttributes():
                c.execute(
                    "UPDATE items SET attributes = ? WHERE item_id = ?",
                    (attributes_json(m.attributes), m.item_id),
                )
            case RemoveImage():
                c.execute("DELETE FROM images WHERE image_id = ?", (m.image_id,))
            case DeleteItem():
                c.execute("DELETE FROM images WHERE item_id = ?", (m.item_id,))
                c.execute("DELETE FROM items WHERE item_id = ?", (m.item_id,))
            case ReleaseHash():
                pass  # the images table is the reference count: its last row is gone already
            case RecordChange():
                if m.state.count > 0:  # a deleted item's row is gone with it
                    c.execute(
                        "UPDATE items SET version = ? WHERE item_id = ?",
                        (m.state.version, m.state.item_id),
                    )
                c.execute(
                    "INSERT INTO changes VALUES (?, ?, ?)",
                    (m.state.version, m.state.item_id, time.time()),
                )
                # Usually one row goes: the one that fell out of the window (primary-key range).
                c.execute(
                    "DELETE FROM changes WHERE version <= ?",
                    (m.state.version - self.change_log_rows,),
                )
            case RecordResponse():
                # Expired records go with the next recorded write (indexed by expiry: cheap).
                c.execute("DELETE FROM idempotency WHERE expires_at <= ?", (m.now,))
                c.execute(
                    "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        m.key,
                        m.fingerprint,
                        m.response.status,
                        m.response.media_type,
                        m.response.body,
                        m.expires_at,
                        json.dumps(m.response.headers),
                    ),
                )
            case _:
                assert_never(m)

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
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    # COMMIT refused (SQLITE_BUSY and the like): still ours, nothing applied.
                    self._conn.execute("ROLLBACK")
                    raise
                # SQLite ended the transaction itself (an I/O error while syncing the WAL): the
                # frames may or may not be in the file, and recovery will decide. Rare, but
                # then nobody can say whether the write happened.
                raise StoreOutcomeUnknownError(
                    f"SQLite store {self.path}: COMMIT failed ({exc}); outcome unknown"
                ) from exc
            return result


# The columns of ``items`` (aliased ``i``) an ``ItemState`` is read from, after its id.
_STATE_COLUMNS = "i.image_count, i.embedding_sum, i.version, i.attributes, i.unit_sum"


def _state(item_id: str, row: Sequence[Any]) -> ItemState:
    """An ``ItemState`` from the ``_STATE_COLUMNS`` of one row."""
    count, blob, version, raw_attributes, unit_blob = row
    return ItemState(
        item_id,
        int(count),
        f64_from(blob),
        int(version),
        attributes=attributes_from_json(raw_attributes),
        unit_sum=None if unit_blob is None else f64_from(unit_blob),
    )


@contextmanager
def _unavailable_on_operational_error(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailableError(f"SQLite store {path}: {exc}") from exc
    except sqlite3.ProgrammingError as exc:
        # Raised by a closed connection: the store is not usable any more.
        raise StoreUnavailableError(f"SQLite store {path}: {exc}") from exc
