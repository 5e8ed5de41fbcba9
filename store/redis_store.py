"""Redis store: shared by several service replicas, as durable as the Redis server is configured.

Keys (all under ``{namespace}:``; the item id always comes last, so ids may contain ``:``):

* ``model`` – JSON model identity;
* ``migration`` – the model migration's record (``store/store_meta.py``), JSON, when one runs;
* ``items`` – sorted set of item ids, all scores 0, so ``ZRANGEBYLEX`` pages them by id;
* ``schema`` – the layout version (``SCHEMA_VERSION``); absent in a namespace of schema 1
  (before attributes and unit sums), which the first call of a ``RedisStore`` upgrades;
* ``meta:{item}`` – hash ``count`` (int), ``sum`` ((D,) float64 bytes), ``ver`` (int; absent
  for items written before versions: 0), ``usum`` ((D,) float64 bytes: the sum of the
  L2-normalised embeddings) and ``attrs`` (the attributes, compact JSON; absent: {});
* ``emb:{item}`` – hash image id → (D,) float32 bytes;
* ``byhash:{item}`` / ``hashof:{item}`` – content hash ↔ image id within the item;
* ``order:{item}`` – list of image ids in enrollment order;
* ``quarantine:{item}`` – set of the item's image ids held out of its sums (schema 3; absent:
  none);
* ``ref:{content_hash}`` – how many images (of any item) have those bytes;
* ``counts`` – hash ``items``, ``images``;
* ``version`` – the write counter: each write takes the next number (``store/item_versions.py``);
* ``changes`` – a stream of change records, one per write, appended in the write's transaction:
  ``item``, ``ver``, ``count``, and for a live item ``sum``, ``usum`` and ``attrs`` (the item's
  state after the write; count 0: deleted), and one ``meta`` record (the key) per
  ``set_meta``, capped near ``change_feed_maxlen`` entries; replicas tail it
  (``store/change_feed.py``);
* ``idem:{scope}:{key}`` – hash ``fp``, ``status``, ``media``, ``body``, ``headers`` (JSON),
  ``exp`` (Unix seconds):
  a write's recorded answer (``store/idempotency.py``), expiring with the record.

Every write to an item changes ``meta:{item}``, so each write WATCHes it, reads the item, asks
the write plan (``store/write_plan.py``), then queues the plan's mutations in one MULTI/EXEC,
retrying (reading and planning again) if another client wrote the item meanwhile: writes are
atomic per item across replicas. Deletes also WATCH the ``ref`` keys they may release.
Durability is the server's: ``persistence_info`` reports it (``appendfsync always`` is needed
for "2xx survives power loss").
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, assert_never

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

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

# 1: before attributes and unit sums (no ``schema`` key); 2: ``meta`` has ``usum`` and
# ``attrs``, and change records carry them; 3: ``quarantine:{item}`` (nothing to convert: a
# schema-2 namespace holds none). Code of schema 2 refuses a schema-3 namespace: it would sum
# quarantined images back in.
SCHEMA_VERSION = 3

# The ``meta`` fields an ``ItemState`` is read from, in ``_state_from``'s order.
STATE_FIELDS = ["count", "sum", "ver", "attrs", "usum"]

# An unreachable Redis must fail a request within a few seconds (then HTTP 503), not hang.
SOCKET_TIMEOUT_S = 2.0

# A WATCH conflict means another writer touched the item; with tens of concurrent writers on
# one item, a transaction succeeds within a few dozen attempts. Beyond this, give up (503).
MAX_TRANSACTION_ATTEMPTS = 1000

# Item ids per ZRANGEBYLEX page while streaming all items.
PAGE_ITEMS = 500

# ``compact`` waits this long for the server's AOF rewrite.
AOF_REWRITE_TIMEOUT_S = 300.0

# ``dump_namespace`` starts again this often when writes keep coming in during its SCAN.
DUMP_ATTEMPTS = 100

# Change records kept for replicas (approximately: ``XADD MAXLEN ~``). Each holds an item's two
# sums, 2 x D x 8 bytes (20 KiB at D = 1280), and its attributes (at most their size limit):
# 10,000 records are about 200 MiB of Redis memory. A replica
# that falls further behind than this rebuilds its index from the store.
CHANGE_FEED_MAXLEN = 10_000
# ``compact`` also drops change records older than this: a replica that far behind rebuilds.
CHANGE_FEED_RETENTION_S = 600.0

T = TypeVar("T")


class RedisStore:
    backend = "redis"

    def __init__(
        self,
        url: str,
        namespace: str = "cr",
        change_feed_maxlen: int = CHANGE_FEED_MAXLEN,
        change_feed_retention_s: float = CHANGE_FEED_RETENTION_S,
    ) -> None:
        self.namespace = namespace
        self.change_feed_maxlen = change_feed_maxlen
        self.change_feed_retention_s = change_feed_retention_s
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            # One quick retry covers a pooled connection the server closed (e.g. restart)
            # without turning an outage into seconds of back-off. It never resends a write:
            # every write transaction WATCHes first, and redis-py then answers a failed EXEC
            # with WatchError instead of retrying, which ``_exec`` turns into
            # StoreOutcomeUnknownError (the EXEC may have been applied).
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
        )
        self._identity: ModelIdentity | None = None
        # Set once this instance has seen the namespace at ``SCHEMA_VERSION`` (or upgraded
        # it); checked by ``_call`` before the first command, since the constructor never
        # talks to the server (it may not be up yet).
        self._schema_ready = False
        self._schema_recorded = False  # the ``schema`` key is known to be set

    # -- keys ---------------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    # -- model identity -----------------------------------------------------------------------

    def ping(self) -> None:
        self._call(self._client.ping)

    def get_model_identity(self) -> ModelIdentity | None:
        raw = self._call(lambda: self._client.get(self._key("model")))
        return None if raw is None else _identity_from_json(raw)

    def claim_model_identity(self, identity: ModelIdentity) -> None:
        payload = json.dumps(
            {"name": identity.name, "version": identity.version, "dim": identity.dim}
        )
        self._call(lambda: self._client.set(self._key("model"), payload, nx=True))
        stored = self.get_model_identity()
        if stored != identity:
            if stored is None:
                raise StoreError("the model identity vanished while being claimed; retry")
            raise ModelMismatchError(stored, identity)
        self._identity = identity

    def reset_model_identity(self) -> None:
        def reset(pipe: Any) -> None:
            pipe.watch(self._key("counts"))
            images = int(pipe.hget(self._key("counts"), "images") or 0)
            if images:
                raise StoreError(
                    f"cannot reset the model identity: the store holds {images} images"
                )
            pipe.multi()
            pipe.delete(self._key("model"))
            _exec(pipe)

        self._transaction(reset)
        self._identity = None

    def get_meta(self, key: str) -> str | None:
        check_meta_key(key)
        raw = self._call(lambda: self._client.get(self._key(key)))
        return None if raw is None else _text(raw)

    def set_meta(self, key: str, value: str | None) -> None:
        """In one MULTI/EXEC with a ``meta`` record on the change feed, so every replica
        tailing it learns of the change at once (``store/change_feed.py``)."""
        check_meta_key(key)

        def write() -> None:
            with self._client.pipeline(transaction=True) as pipe:
                if value is None:
                    pipe.delete(self._key(key))
                else:
                    pipe.set(self._key(key), value)
                pipe.xadd(
                    self._key("changes"),
                    {"meta": key},
                    maxlen=self.change_feed_maxlen,
                    approximate=True,
                )
                pipe.execute()

        self._call(write)

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
        claimed_dim = self._claimed_dim()
        wanted = hashes_to_look_up(images)

        def enroll(pipe: Any) -> EnrollOutcome:
            self._replay_if_recorded(pipe, idempotency)
            pipe.watch(self._key("meta", item_id))
            stored = self._totals(pipe, item_id)
            found = pipe.hmget(self._key("byhash", item_id), wanted) if wanted else []
            known = {h: _text(i) for h, i in zip(wanted, found, strict=True) if i is not None}
            if stored is None and known:
                # Created by another writer between the two reads: its commit also changed the
                # WATCHed meta, so this attempt could not commit anyway; read again.
                raise redis.WatchError(f"item {item_id!r} changed while it was read")
            plan = plan_enroll(
                item_id,
                images,
                stored=stored,
                known=known,
                claimed_dim=claimed_dim,
                attributes_patch=attributes_patch,
                max_attributes_bytes=max_attributes_bytes,
                image_ids=image_ids,
                judge=judge,
            )
            return self._apply(pipe, plan, idempotency)

        return self._transaction(enroll)

    def patch_attributes(
        self,
        item_id: str,
        patch: Attributes,
        max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES,
        idempotency: IdempotencyClaim[PatchOutcome] | None = None,
    ) -> ItemState:
        def patch_attributes(pipe: Any) -> PatchOutcome:
            self._replay_if_recorded(pipe, idempotency)
            pipe.watch(self._key("meta", item_id))
            plan = plan_patch_attributes(
                item_id,
                patch,
                stored=self._totals(pipe, item_id),
                max_attributes_bytes=max_attributes_bytes,
            )
            return self._apply(pipe, plan, idempotency)

        return self._transaction(patch_attributes).item

    def delete_image(
        self,
        item_id: str,
        image_id: str,
        idempotency: IdempotencyClaim[DeleteOutcome] | None = None,
    ) -> DeleteOutcome:
        def delete(pipe: Any) -> DeleteOutcome:
            self._replay_if_recorded(pipe, idempotency)
            pipe.watch(self._key("meta", item_id))
            stored = self._totals(pipe, item_id)
            held = self._held(pipe, item_id)
            # Only the removed image's reference count: watching the item's other hashes too
            # would abort this delete whenever another item enrolls the same bytes.
            removed = [i.content_hash for i in held if i.image_id == image_id]
            refs = self._watch_refs(pipe, removed)
            plan = plan_delete_image(item_id, image_id, stored=stored, held=held, refs=refs)
            return self._apply(pipe, plan, idempotency)

        return self._transaction(delete)

    def set_image_quarantine(
        self,
        item_id: str,
        image_id: str,
        quarantined: bool,
        idempotency: IdempotencyClaim[PatchOutcome] | None = None,
    ) -> ItemState:
        def set_quarantine(pipe: Any) -> PatchOutcome:
            self._replay_if_recorded(pipe, idempotency)
            pipe.watch(self._key("meta", item_id))
            plan = plan_set_image_quarantine(
                item_id,
                image_id,
                quarantined,
                stored=self._totals(pipe, item_id),
                held=self._held(pipe, item_id),
            )
            return self._apply(pipe, plan, idempotency)

        return self._transaction(set_quarantine).item

    def delete_item(
        self, item_id: str, idempotency: IdempotencyClaim[DeleteOutcome] | None = None
    ) -> DeleteOutcome:
        def delete(pipe: Any) -> DeleteOutcome:
            self._replay_if_recorded(pipe, idempotency)
            pipe.watch(self._key("meta", item_id))
            stored = self._totals(pipe, item_id)
            _, hashes = self._held_hashes(pipe, item_id)
            refs = self._watch_refs(pipe, hashes)
            plan = plan_delete_item(item_id, stored=stored, held_hashes=hashes, refs=refs)
            return self._apply(pipe, plan, idempotency)

        return self._transaction(delete)

    # -- reads --------------------------------------------------------------------------------

    def instance_id(self) -> str:
        def read() -> str:
            self._client.set(self._key("instance"), uuid.uuid4().hex, nx=True)
            return _text(self._client.get(self._key("instance")))

        return self._call(read)

    def schema_version(self) -> int:
        return int(self._call(lambda: self._client.get(self._key("schema"))) or 1)

    def last_version(self) -> int:
        return int(self._call(lambda: self._client.get(self._key("version"))) or 0)

    def get_idempotency_record(self, key: str) -> IdempotencyRecord | None:
        record = self._call(lambda: self._idempotency_record(self._client, key))
        return record if record is not None and record.live(time.time()) else None

    def get_item(self, item_id: str) -> ItemRecord | None:
        def read() -> ItemRecord | None:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hmget(self._key("meta", item_id), ["count", "attrs"])
                pipe.lrange(self._key("order", item_id), 0, -1)
                pipe.smembers(self._key("quarantine", item_id))
                (count, attrs), order, held_out = pipe.execute()
            if count is None:
                return None
            ids = [i.decode() for i in order]
            out = {i.decode() for i in held_out}
            return ItemRecord(
                item_id,
                ids,
                attributes_from_json(attrs),
                quarantined_image_ids=[i for i in ids if i in out],
            )

        return self._call(read)

    def get_item_state(self, item_id: str) -> ItemState | None:
        fields: list[Any] = self._call(
            lambda: self._client.hmget(self._key("meta", item_id), STATE_FIELDS)
        )
        return None if fields[1] is None else _state_from(item_id, fields)

    def image_content_hash(self, item_id: str, image_id: str) -> str:
        def read() -> list[Any]:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hget(self._key("hashof", item_id), image_id)
                pipe.exists(self._key("meta", item_id))
                result: list[Any] = pipe.execute()
                return result

        content_hash, exists = self._call(read)
        if content_hash is not None:
            return _text(content_hash)
        if not exists:
            raise ItemNotFoundError(f"item {item_id!r} not found")
        raise ImageNotFoundError(f"item {item_id!r} has no image {image_id!r}")

    def list_items(
        self, limit: int, cursor: str | None, where: AttributeFilter | None = None
    ) -> tuple[list[ItemSummary], str | None]:
        """See ``Store.list_items``; with ``where``, pages of ``PAGE_ITEMS`` ids (one pipeline of
        ``HMGET`` each) are read in id order and filtered here."""
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        scan = limit + 1 if where is None else max(limit + 1, PAGE_ITEMS)
        found: list[ItemSummary] = []
        after = cursor
        while True:
            listed = self._item_ids_after(after, scan)
            ids, fields = self._fields_of(listed, ["count", "attrs"])
            for item_id, (count, raw) in zip(ids, fields, strict=True):
                attributes = attributes_from_json(raw)
                if where is None or where.matches(attributes):
                    found.append(ItemSummary(item_id, int(count or 0), attributes))
            if len(found) > limit or len(listed) < scan:
                break
            after = listed[-1]
        page = found[:limit]
        return page, (page[-1].item_id if len(found) > limit else None)

    def iter_item_states(self) -> Iterator[ItemState]:
        after: str | None = None
        while True:
            listed = self._item_ids_after(after, PAGE_ITEMS)
            ids, fields = self._fields_of(listed, STATE_FIELDS)
            for item_id, values in zip(ids, fields, strict=True):
                yield _state_from(item_id, values)
            if len(listed) < PAGE_ITEMS:
                return
            after = listed[-1]

    def iter_images(self) -> Iterator[ImageRecord]:
        after: str | None = None
        while True:
            ids = self._item_ids_after(after, PAGE_ITEMS)
            for item_id in ids:
                yield from self._item_images(item_id)
            if len(ids) < PAGE_ITEMS:
                return
            after = ids[-1]

    def item_images(self, item_ids: Sequence[str]) -> dict[str, list[ImageRecord]]:
        wanted = list(dict.fromkeys(item_ids))
        if not wanted:
            return {}

        def read() -> list[Any]:
            # MULTI/EXEC: every item as of one moment, each read whole.
            with self._client.pipeline(transaction=True) as pipe:
                for item_id in wanted:
                    self._queue_image_reads(pipe, item_id)
                result: list[Any] = pipe.execute()
                return result

        replies = self._call(read)
        return {
            item_id: _image_records(item_id, *replies[4 * n : 4 * n + 4])
            for n, item_id in enumerate(wanted)
        }

    def is_hash_referenced(self, content_hash: str) -> bool:
        return bool(self._call(lambda: self._client.exists(self._key("ref", content_hash))))

    def counts(self) -> tuple[int, int]:
        items, images = self._call(
            lambda: self._client.hmget(self._key("counts"), ["items", "images"])
        )
        return int(items or 0), int(images or 0)

    def persistence_info(self) -> dict[str, str]:
        """``appendonly`` and ``appendfsync`` of the server, or ``"unknown"`` if CONFIG is off."""
        try:
            raw: dict[Any, Any] = self._call(lambda: self._client.config_get("append*"))
        except redis.ResponseError:
            return {"appendonly": "unknown", "appendfsync": "unknown"}
        config = {_text(k): _text(v) for k, v in raw.items()}
        return {name: config.get(name, "unknown") for name in ("appendonly", "appendfsync")}

    def compact(self, timeout_s: float = AOF_REWRITE_TIMEOUT_S) -> None:
        """With the server's AOF on, rewrite it (``BGREWRITEAOF``) and wait until done.

        A delete removes every key of the item at once, but the append-only file keeps every
        command ever written until it is rewritten; Redis does that itself as it grows
        (``auto-aof-rewrite-percentage``), this does it now. The whole server's AOF is
        rewritten, other namespaces included. Without AOF there is nothing to give back but the
        change records older than ``change_feed_retention_s``, which go first in any case (the
        newest ones stay: a replica a little behind still needs them).
        """
        # Records of the last millisecond count as older than a retention of 0 too.
        oldest_kept_ms = int((time.time() - self.change_feed_retention_s) * 1000) + 1
        self._call(
            lambda: self._client.xtrim(
                self._key("changes"), minid=f"{max(0, oldest_kept_ms)}-0", approximate=False
            )
        )
        if not _flag(self._persistence().get("aof_enabled")):
            return
        try:
            self._call(self._client.bgrewriteaof)
        except redis.ResponseError as exc:
            if "in progress" not in str(exc):
                raise StoreError(f"BGREWRITEAOF refused: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        while True:
            info = self._persistence()
            if not _flag(info.get("aof_rewrite_in_progress")) and not _flag(
                info.get("aof_rewrite_scheduled")
            ):
                break
            if time.monotonic() > deadline:
                raise StoreUnavailableError(f"the AOF rewrite took longer than {timeout_s:g} s")
            time.sleep(0.05)
        if _text(info.get("aof_last_bgrewrite_status", "ok")) != "ok":
            raise StoreError("the AOF rewrite failed (see the Redis server's log)")

    def disk_bytes(self) -> int | None:
        """The server's append-only file size, or None when it keeps none."""
        info = self._persistence()
        if not _flag(info.get("aof_enabled")):
            return None
        return int(info.get("aof_current_size", 0))

    def namespace_keys(self) -> list[str]:
        """Every key of this namespace, by SCAN (for tests and maintenance)."""
        return self._call(
            lambda: sorted(
                _text(k)
                for k in self._client.scan_iter(
                    match=_glob_escape(self.namespace) + ":*", count=1000
                )
            )
        )

    def dump_namespace(self, attempts: int = DUMP_ATTEMPTS) -> NamespaceDump:
        """Every key of the namespace and its ``DUMP`` payload, as of one moment.

        Every store write changes ``counts`` (or ``model``), so both are WATCHed, the keys are
        listed by SCAN (which misses nothing when no key changes meanwhile), and all are dumped
        in one MULTI/EXEC: the EXEC fails, and the dump starts again, if any write came in
        between. The whole namespace passes through this process's memory at once, and a
        stream of writes faster than one SCAN can starve it: ``StoreUnavailableError`` after
        ``attempts``.
        """
        watched = [self._key("counts"), self._key("model")]

        def dump(pipe: Any) -> NamespaceDump:
            pipe.watch(*watched)
            keys = sorted(
                {
                    _text(k)
                    for k in pipe.scan_iter(match=_glob_escape(self.namespace) + ":*", count=1000)
                }
            )
            pipe.multi()
            for key in keys:
                pipe.dump(key)
                pipe.pexpiretime(key)  # idempotency records expire; -1: no expiry
            pipe.hmget(self._key("counts"), ["items", "images"])
            pipe.get(self._key("model"))
            *answers, (items, images), model = pipe.execute()
            payloads, expiries = answers[0::2], answers[1::2]
            return NamespaceDump(
                entries=[(k, p) for k, p in zip(keys, payloads, strict=True) if p is not None],
                expire_at_ms={k: int(e) for k, e in zip(keys, expiries, strict=True) if int(e) > 0},
                items=int(items or 0),
                images=int(images or 0),
                model=None if model is None else _identity_from_json(model),
            )

        for _ in range(attempts):
            try:
                with self._client.pipeline(transaction=True) as pipe:
                    return self._call(lambda: dump(pipe))
            except redis.WatchError:
                time.sleep(0.01)
        raise StoreUnavailableError(
            f"no moment without writes to dump the namespace in {attempts} attempts"
        )

    def restore_namespace(
        self,
        source_namespace: str,
        dump: Sequence[tuple[str, bytes]],
        expire_at_ms: Mapping[str, int] | None = None,
    ) -> None:
        """Replace this namespace by ``dump`` (from ``dump_namespace`` of ``source_namespace``),
        renamed into this namespace, in one MULTI/EXEC: all or nothing. Keys of
        ``expire_at_ms`` (source key → Unix ms) keep their expiry; those expired by now are
        left out."""
        prefix = source_namespace + ":"
        old = self.namespace_keys()
        expiries = expire_at_ms or {}
        now_ms = int(time.time() * 1000)

        def restore() -> None:
            with self._client.pipeline(transaction=True) as pipe:
                if old:
                    pipe.delete(*old)
                for key, payload in dump:
                    if not key.startswith(prefix):
                        raise StoreError(f"{key!r} is not a key of namespace {source_namespace!r}")
                    target = self._key(key.removeprefix(prefix))
                    expiry = expiries.get(key)
                    if expiry is None:
                        pipe.restore(target, 0, payload, replace=True)
                    elif expiry > now_ms:
                        pipe.restore(target, expiry, payload, replace=True, absttl=True)
                pipe.set(self._key("instance"), uuid.uuid4().hex)  # a restored store is new
                pipe.execute()

        try:
            self._call(restore)
        except redis.ResponseError as exc:
            raise StoreError(f"Redis refused the restore: {exc}") from exc
        self._identity = None
        self._schema_ready = False  # a dump of an older schema is upgraded by the next call

    def close(self) -> None:
        self._client.close()

    def _persistence(self) -> dict[str, Any]:
        info: dict[str, Any] = self._call(lambda: self._client.info("persistence"))
        return info

    # -- internals ----------------------------------------------------------------------------

    def _claimed_dim(self) -> int | None:
        if self._identity is None:
            self._identity = self.get_model_identity()
        return None if self._identity is None else self._identity.dim

    # The readers below run on a pipeline in WATCH mode: each command executes at once, and
    # the EXEC that applies the plan fails if a watched key changed since.

    def _totals(self, pipe: Any, item_id: str) -> ItemTotals | None:
        fields = pipe.hmget(self._key("meta", item_id), STATE_FIELDS)
        if fields[1] is None:
            return None
        state = _state_from(item_id, fields)
        unit_sum = state.unit_sum
        if unit_sum is None:
            # Written by code of schema 1 after the upgrade (a replica not yet replaced):
            # computed here from the embeddings, so this write stores it.
            unit_sum = unit_sum_in_order(
                [h.embedding for h in self._held(pipe, item_id) if not h.quarantined],
                state.embedding_sum.shape[0],
            )
        return ItemTotals(
            state.count,
            state.embedding_sum,
            unit_sum,
            version=state.version,
            attributes=state.attributes,
        )

    def _held_hashes(self, pipe: Any, item_id: str) -> tuple[list[bytes], list[str]]:
        """The item's image ids (as stored) in enrollment order, and their content hashes."""
        order: list[bytes] = pipe.lrange(self._key("order", item_id), 0, -1)
        if not order:
            return [], []
        hashes = pipe.hmget(self._key("hashof", item_id), order)
        _changed_between_reads(item_id, hashes)
        return order, [_text(h) for h in hashes]

    def _held(self, pipe: Any, item_id: str) -> list[HeldImage]:
        order, hashes = self._held_hashes(pipe, item_id)
        if not order:
            return []
        embs = pipe.hmget(self._key("emb", item_id), order)
        _changed_between_reads(item_id, embs)
        held_out = pipe.smembers(self._key("quarantine", item_id))
        return [
            HeldImage(_text(i), h, f32_from(e), quarantined=i in held_out)
            for i, h, e in zip(order, hashes, embs, strict=True)
        ]

    def _idempotency_record(self, reader: Any, key: str) -> IdempotencyRecord | None:
        """The record under ``key`` from ``reader`` (the client, or a pipeline in WATCH mode)."""
        fp, status, media, body, exp, raw_headers = reader.hmget(
            self._key("idem", key), ["fp", "status", "media", "body", "exp", "headers"]
        )
        if fp is None:
            return None
        headers = tuple((str(n), str(v)) for n, v in json.loads(raw_headers or b"[]"))
        response = StoredResponse(
            int(status), bytes(body), None if not media else _text(media), headers
        )
        return IdempotencyRecord(_text(fp), response, float(exp))

    def _replay_if_recorded(self, pipe: Any, claim: IdempotencyClaim[Any] | None) -> None:
        """WATCHes the key too: a concurrent retry that records it first aborts this EXEC, and
        this write's next attempt replays that answer."""
        if claim is not None:
            pipe.watch(self._key("idem", claim.key))
            replay_if_recorded(self._idempotency_record(pipe, claim.key), claim.fingerprint)

    def _watch_refs(self, pipe: Any, hashes: Sequence[str]) -> dict[str, int]:
        """How many images hold each hash; WATCHed, so a plan releasing one stays right."""
        unique = list(dict.fromkeys(hashes))
        if not unique:
            return {}
        keys = [self._key("ref", h) for h in unique]
        pipe.watch(*keys)
        return {h: int(r or 0) for h, r in zip(unique, pipe.mget(keys), strict=True)}

    def _apply(
        self, pipe: Any, plan: WritePlan[OutcomeT], claim: IdempotencyClaim[OutcomeT] | None
    ) -> OutcomeT:

        def next_version() -> int:
            # Taken after the transaction's WATCHes: a write committing later than another
            # write to this item has read that one's state, so it takes a larger number.
            try:
                return int(pipe.incr(self._key("version")))
            except redis.ResponseError as exc:  # -OOM under maxmemory: nothing written yet
                raise StoreUnavailableError(f"Redis refused the write: {exc}") from exc

        plan = to_commit(plan, next_version, claim)
        if not plan.mutations:
            pipe.reset()  # nothing to write; drop the WATCH
            return plan.outcome
        pipe.multi()
        for mutation in plan.mutations:
            self._queue(pipe, mutation)
        if not self._schema_recorded:  # the first write to a namespace of no item
            pipe.set(self._key("schema"), SCHEMA_VERSION, nx=True)
        _exec(pipe)
        self._schema_recorded = True
        return plan.outcome

    def _queue(self, pipe: Any, m: Mutation) -> None:
        counts = self._key("counts")
        match m:
            case CreateItem():
                pipe.zadd(self._key("items"), {m.item_id: 0})
                pipe.hincrby(counts, "items", 1)
            case PutImage():
                pipe.hset(self._key("emb", m.item_id), m.image_id, f32_bytes(m.embedding))
                pipe.hset(self._key("byhash", m.item_id), m.content_hash, m.image_id)
                pipe.hset(self._key("hashof", m.item_id), m.image_id, m.content_hash)
                pipe.rpush(self._key("order", m.item_id), m.image_id)
                if m.quarantined:
                    pipe.sadd(self._key("quarantine", m.item_id), m.image_id)
                # Relative, so enrollments need not WATCH it; deletes that may release it do.
                pipe.incr(self._key("ref", m.content_hash))
                pipe.hincrby(counts, "images", 1)
            case SetItemTotals():
                pipe.hset(
                    self._key("meta", m.item_id),
                    mapping={
                        "count": m.count,
                        "sum": f64_bytes(m.embedding_sum),
                        "usum": f64_bytes(m.unit_sum),
                    },
                )
            case SetImageQuarantine():
                held_out = self._key("quarantine", m.item_id)
                if m.quarantined:
                    pipe.sadd(held_out, m.image_id)
                else:
                    pipe.srem(held_out, m.image_id)
            case SetAttributes():
                pipe.hset(self._key("meta", m.item_id), "attrs", attributes_json(m.attributes))
            case RemoveImage():
                pipe.hdel(self._key("emb", m.item_id), m.image_id)
                pipe.hdel(self._key("hashof", m.item_id), m.image_id)
                pipe.hdel(self._key("byhash", m.item_id), m.content_hash)
                pipe.lrem(self._key("order", m.item_id), 0, m.image_id)
                pipe.srem(self._key("quarantine", m.item_id), m.image_id)
                pipe.decr(self._key("ref", m.content_hash))
                pipe.hincrby(counts, "images", -1)
            case DeleteItem():
                pipe.delete(
                    *(
                        self._key(k, m.item_id)
                        for k in ("meta", "emb", "byhash", "hashof", "order", "quarantine")
                    )
                )
                pipe.zrem(self._key("items"), m.item_id)
                pipe.hincrby(counts, "items", -1)
                for content_hash in m.content_hashes:
                    pipe.decr(self._key("ref", content_hash))
                if m.content_hashes:
                    pipe.hincrby(counts, "images", -len(m.content_hashes))
            case ReleaseHash():
                # Deleted rather than left at 0: ``is_hash_referenced`` asks whether it exists.
                pipe.delete(self._key("ref", m.content_hash))
            case RecordChange():
                state = m.state
                if state.count > 0:  # a deleted item's meta is gone with it
                    meta: dict[str, int | bytes] = {"ver": state.version}
                    if state.unit_sum is not None:
                        # Also for a write that sets no totals (attributes only): an item a
                        # schema-1 writer left without ``usum`` has it from ``_totals`` now.
                        meta["usum"] = f64_bytes(state.unit_sum)
                    pipe.hset(self._key("meta", state.item_id), mapping=meta)
                record: dict[str, str | int | bytes] = {
                    "item": state.item_id,
                    "ver": state.version,
                    "count": state.count,
                }
                if state.count > 0:  # a deletion needs no sums
                    record["sum"] = f64_bytes(state.embedding_sum)
                    record["attrs"] = attributes_json(state.attributes)
                    if state.unit_sum is not None:
                        record["usum"] = f64_bytes(state.unit_sum)
                pipe.xadd(
                    self._key("changes"), record, maxlen=self.change_feed_maxlen, approximate=True
                )
            case RecordResponse():
                key = self._key("idem", m.key)
                fields = {
                    "fp": m.fingerprint,
                    "status": m.response.status,
                    "media": m.response.media_type or "",
                    "body": m.response.body,
                    "exp": repr(m.expires_at),
                    "headers": json.dumps(m.response.headers),
                }
                pipe.hset(key, mapping=fields)
                # Redis drops it at expiry; ``exp`` is also checked on read, so a copy restored
                # without its TTL still counts as expired.
                pipe.pexpireat(key, int(m.expires_at * 1000) + 1)
            case _:
                assert_never(m)

    def _item_ids_after(self, after: str | None, n: int) -> list[str]:
        low = "-" if after is None else "(" + after
        raw = self._call(lambda: self._client.zrangebylex(self._key("items"), low, "+", 0, n))
        return [_text(r) for r in raw]

    def _fields_of(
        self, ids: list[str], fields: list[str]
    ) -> tuple[list[str], list[list[bytes | None]]]:
        """``ids`` and their ``meta`` fields (None where a field is absent), minus deleted ones
        (no ``fields[0]``), in one pipeline."""

        def read() -> list[list[bytes | None]]:
            with self._client.pipeline(transaction=True) as pipe:
                for item_id in ids:
                    pipe.hmget(self._key("meta", item_id), fields)
                result: list[list[bytes | None]] = pipe.execute()
                return result

        values = self._call(read) if ids else []
        # An item deleted between the two round trips has no meta any more.
        kept = [(i, v) for i, v in zip(ids, values, strict=True) if v[0] is not None]
        return [i for i, _ in kept], [v for _, v in kept]

    def _item_images(self, item_id: str) -> list[ImageRecord]:
        return self.item_images([item_id])[item_id]

    def _queue_image_reads(self, pipe: Any, item_id: str) -> None:
        """The four reads ``_image_records`` takes, queued on ``pipe``."""
        pipe.lrange(self._key("order", item_id), 0, -1)
        pipe.hgetall(self._key("emb", item_id))
        pipe.hgetall(self._key("hashof", item_id))
        pipe.smembers(self._key("quarantine", item_id))

    def _transaction(self, fn: Callable[[Any], T]) -> T:
        for _ in range(MAX_TRANSACTION_ATTEMPTS):
            pipe = self._client.pipeline(transaction=True)
            try:
                return self._call(partial(fn, pipe))
            except redis.WatchError:
                continue
            finally:
                _release(pipe)
        raise StoreUnavailableError(
            f"gave up after {MAX_TRANSACTION_ATTEMPTS} conflicting concurrent writes"
        )

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            if not self._schema_ready:
                self._upgrade_schema()
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailableError(f"Redis unreachable: {exc}") from exc

    def _upgrade_schema(self) -> None:
        """Bring the namespace to ``SCHEMA_VERSION`` if it is older; refuse a newer one.

        Schema 1 → 2: every item without ``usum`` gets it, computed from its stored embeddings
        in enrollment order, one WATCHed transaction per item (so replicas upgrading at once,
        or writing meanwhile, never clobber each other); attributes start empty (no ``attrs``);
        versions stay. Then ``schema`` is set. Once per namespace, O(images x D) reads; the
        item ids are paged by ``PAGE_ITEMS``, checked for ``usum`` in one pipeline per page. A
        namespace with no item is left as it is (a read writes nothing); its first write sets
        ``schema`` (``_apply``). Schema 2 → 3 converts nothing (it adds ``quarantine:{item}``
        sets, of which a schema-2 namespace has none): only ``schema`` is raised.
        """
        raw = self._client.get(self._key("schema"))
        stored = 1 if raw is None else int(raw)
        if stored > SCHEMA_VERSION:
            raise StoreError(
                f"Redis namespace {self.namespace!r} has schema version {stored}, this code "
                f"reads {SCHEMA_VERSION}"
            )
        items = self._key("items")
        if stored < 2 and self._client.zcard(items):
            low = "-"
            while True:
                ids = [_text(r) for r in self._client.zrangebylex(items, low, "+", 0, PAGE_ITEMS)]
                with self._client.pipeline(transaction=False) as pipe:
                    for item_id in ids:
                        pipe.hexists(self._key("meta", item_id), "usum")
                    has = pipe.execute() if ids else []
                for item_id, present in zip(ids, has, strict=True):
                    if not present:
                        self._fill_unit_sum(item_id)
                if len(ids) < PAGE_ITEMS:
                    break
                low = "(" + ids[-1]
        if stored < SCHEMA_VERSION and self._client.zcard(items):
            # Schema 2 -> 3 adds keys only: nothing to convert.
            self._client.set(self._key("schema"), SCHEMA_VERSION)
            stored = SCHEMA_VERSION
        self._schema_recorded = stored == SCHEMA_VERSION
        self._schema_ready = True

    def _fill_unit_sum(self, item_id: str) -> None:
        meta = self._key("meta", item_id)
        for _ in range(MAX_TRANSACTION_ATTEMPTS):
            pipe: Any
            with self._client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(meta)
                    raw_sum, present = pipe.hmget(meta, ["sum", "usum"])
                    if raw_sum is None or present is not None:
                        return  # deleted, or filled by someone else meanwhile
                    embeddings = [h.embedding for h in self._held(pipe, item_id)]
                    unit_sum = unit_sum_in_order(embeddings, f64_from(raw_sum).shape[0])
                    pipe.multi()
                    pipe.hset(meta, "usum", f64_bytes(unit_sum))
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue
        raise StoreUnavailableError(f"could not upgrade item {item_id!r}: too many conflicts")


@dataclass(frozen=True)
class NamespaceDump:
    """A namespace as of one moment: its keys' ``DUMP`` payloads and what they hold."""

    entries: list[tuple[str, bytes]]  # (key with its namespace prefix, DUMP payload)
    expire_at_ms: dict[str, int]  # key → its expiry (Unix ms), for keys that have one
    items: int
    images: int
    model: ModelIdentity | None


def _release(pipe: Any) -> None:
    """``pipe.reset()``, which hands its connection back to the pool, without letting a failure
    of its own replace the write's outcome.

    redis-py's reset sends UNWATCH and handles only a ConnectionError: a timeout (the stalled
    server that just failed the write) escaped it as an unwrapped error (a 500 instead of the
    write's 503) and kept the connection out of the pool. That connection is dropped instead.
    """
    try:
        pipe.reset()
    except redis.RedisError:
        connection = pipe.connection
        if connection is not None:
            connection.disconnect()
            pipe.connection_pool.release(connection)
            pipe.connection = None
        pipe.watching = False


def _exec(pipe: Any) -> None:
    """EXEC the transaction queued on ``pipe`` (in WATCH mode), telling a refused one (nothing
    applied) from one whose answer was lost (maybe applied).

    redis-py reports a connection lost during EXEC on a watching pipeline as a WatchError (so
    that nobody resends it), chained to the connection error; a real WATCH conflict has no such
    cause. Once EXEC may have reached the server, no error says it was not applied, except an
    EXECABORT (the server discarded the queued commands): StoreUnavailableError.
    """
    try:
        pipe.execute()
    except redis.WatchError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, (redis.ConnectionError, redis.TimeoutError)):
            raise StoreOutcomeUnknownError(f"Redis connection lost during EXEC: {cause}") from exc
        raise
    except redis.exceptions.ExecAbortError as exc:
        raise StoreUnavailableError(f"Redis discarded the transaction: {exc}") from exc
    except redis.ResponseError as exc:
        # A command refused while queued (``-OOM`` under ``maxmemory``, ``-READONLY`` on a
        # replica) makes the server discard the whole transaction; redis-py then raises that
        # command's error from its EXECABORT handler.
        if isinstance(exc.__context__, redis.exceptions.ExecAbortError):
            raise StoreUnavailableError(f"Redis discarded the transaction: {exc}") from exc
        raise StoreOutcomeUnknownError(
            f"Redis failed during EXEC ({type(exc).__name__}): {exc}"
        ) from exc
    except redis.RedisError as exc:
        raise StoreOutcomeUnknownError(
            f"Redis failed during EXEC ({type(exc).__name__}): {exc}"
        ) from exc


def _state_from(item_id: str, fields: Sequence[Any]) -> ItemState:
    """An ``ItemState`` from the ``STATE_FIELDS`` of a live item's ``meta``."""
    raw_count, raw_sum, raw_ver, raw_attrs, raw_usum = fields
    return ItemState(
        item_id,
        int(raw_count),
        f64_from(raw_sum),
        int(raw_ver or 0),
        attributes=attributes_from_json(raw_attrs),
        unit_sum=None if raw_usum is None else f64_from(raw_usum),
    )


def _identity_from_json(raw: bytes | str) -> ModelIdentity:
    fields = json.loads(raw)
    return ModelIdentity(str(fields["name"]), str(fields["version"]), int(fields["dim"]))


def _flag(value: object) -> bool:
    return _text(value) not in ("0", "None", "")


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a SCAN MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _changed_between_reads(item_id: str, values: Sequence[object]) -> None:
    """In a WATCHed write's reads: an image listed in the item's order whose hash or embedding
    is gone was removed by another writer between two of them. That writer's commit changed
    the WATCHed meta, so this attempt could not commit anyway: read and plan again."""
    if any(v is None for v in values):
        raise redis.WatchError(f"item {item_id!r} changed while it was read")


def _image_records(
    item_id: str,
    order: list[bytes],
    embs: dict[bytes, bytes],
    hashes: dict[bytes, bytes],
    held_out: set[bytes],
) -> list[ImageRecord]:
    """One item's images from the replies to ``_queue_image_reads``, in enrollment order."""
    return [
        ImageRecord(
            i.decode(), item_id, hashes[i].decode(), f32_from(embs[i]), quarantined=i in held_out
        )
        for i in order
    ]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
