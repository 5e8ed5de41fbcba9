"""Redis store: shared by several service replicas, as durable as the Redis server is configured.

Keys (all under ``{namespace}:``; the item id always comes last, so ids may contain ``:``):

* ``model`` – JSON model identity;
* ``items`` – sorted set of item ids, all scores 0, so ``ZRANGEBYLEX`` pages them by id;
* ``meta:{item}`` – hash ``count`` (int) and ``sum`` ((D,) float64 bytes);
* ``emb:{item}`` – hash image id → (D,) float32 bytes;
* ``byhash:{item}`` / ``hashof:{item}`` – content hash ↔ image id within the item;
* ``order:{item}`` – list of image ids in enrollment order;
* ``ref:{content_hash}`` – how many images (of any item) have those bytes;
* ``counts`` – hash ``items``, ``images``.

Every write to an item changes ``meta:{item}``, so each write WATCHes it, reads, then applies
all its changes in one MULTI/EXEC, retrying if another client wrote the item meanwhile: writes
are atomic per item across replicas. Deletes also WATCH the ``ref`` keys they may release.
Durability is the server's: ``persistence_info`` reports it (``appendfsync always`` is needed
for "2xx survives power loss").
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

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

# An unreachable Redis must fail a request within a few seconds (then HTTP 503), not hang.
SOCKET_TIMEOUT_S = 2.0

# A WATCH conflict means another writer touched the item; with tens of concurrent writers on
# one item, a transaction succeeds within a few dozen attempts. Beyond this, give up (503).
MAX_TRANSACTION_ATTEMPTS = 1000

# Item ids per ZRANGEBYLEX page while streaming all items.
PAGE_ITEMS = 500

T = TypeVar("T")


class RedisStore:
    backend = "redis"

    def __init__(self, url: str, namespace: str = "cr") -> None:
        self.namespace = namespace
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            # One quick retry covers a pooled connection the server closed (e.g. restart)
            # without turning an outage into seconds of back-off.
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
        )
        self._identity: ModelIdentity | None = None

    # -- keys ---------------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    # -- model identity -----------------------------------------------------------------------

    def ping(self) -> None:
        self._call(self._client.ping)

    def get_model_identity(self) -> ModelIdentity | None:
        raw = self._call(lambda: self._client.get(self._key("model")))
        if raw is None:
            return None
        fields = json.loads(raw)
        return ModelIdentity(str(fields["name"]), str(fields["version"]), int(fields["dim"]))

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
            pipe.execute()

        self._transaction(reset)
        self._identity = None

    # -- writes -------------------------------------------------------------------------------

    def enroll(self, item_id: str, images: Sequence[NewImage]) -> EnrollOutcome:
        if not images:
            raise ValueError("enroll needs at least one image")
        claimed_dim = self._claimed_dim()
        meta, emb = self._key("meta", item_id), self._key("emb", item_id)
        byhash, hashof = self._key("byhash", item_id), self._key("hashof", item_id)
        order = self._key("order", item_id)

        def enroll(pipe: Any) -> EnrollOutcome:
            pipe.watch(meta)
            raw_count, raw_sum = pipe.hmget(meta, ["count", "sum"])
            count = int(raw_count or 0)
            total = None if raw_sum is None else f64_from(raw_sum)
            if claimed_dim is not None:
                dim = claimed_dim
            elif total is not None:
                dim = int(total.shape[0])
            else:
                dim = int(np.asarray(images[0].embedding).reshape(-1).shape[0])
            unique = list(dict.fromkeys(i.content_hash for i in images))
            known = dict(zip(unique, pipe.hmget(byhash, unique), strict=True))
            ids: dict[str, str] = {h: v.decode() for h, v in known.items() if v is not None}
            image_ids: list[str] = []
            created: list[bool] = []
            new: list[tuple[str, str, bytes]] = []
            for image in images:
                vec = check_embedding(image.embedding, dim)
                if image.content_hash in ids:
                    image_ids.append(ids[image.content_hash])
                    created.append(False)
                    continue
                image_id = uuid.uuid4().hex
                ids[image.content_hash] = image_id
                total = vec.astype(np.float64) if total is None else total + vec
                new.append((image_id, image.content_hash, f32_bytes(vec)))
                image_ids.append(image_id)
                created.append(True)
            if total is None:
                raise AssertionError("unreachable: a new item always gets a first image")
            if not new:
                pipe.reset()
                return EnrollOutcome(ItemState(item_id, count, total), image_ids, created)
            pipe.multi()
            for image_id, content_hash, blob in new:
                pipe.hset(emb, image_id, blob)
                pipe.hset(byhash, content_hash, image_id)
                pipe.hset(hashof, image_id, content_hash)
                pipe.rpush(order, image_id)
                pipe.incr(self._key("ref", content_hash))
            pipe.hset(meta, mapping={"count": count + len(new), "sum": f64_bytes(total)})
            pipe.zadd(self._key("items"), {item_id: 0})
            pipe.hincrby(self._key("counts"), "images", len(new))
            if count == 0:
                pipe.hincrby(self._key("counts"), "items", 1)
            pipe.execute()
            return EnrollOutcome(ItemState(item_id, count + len(new), total), image_ids, created)

        return self._transaction(enroll)

    def delete_image(self, item_id: str, image_id: str) -> DeleteOutcome:
        meta, emb = self._key("meta", item_id), self._key("emb", item_id)
        hashof, order = self._key("hashof", item_id), self._key("order", item_id)

        def delete(pipe: Any) -> DeleteOutcome:
            pipe.watch(meta)
            raw_sum = pipe.hget(meta, "sum")
            if raw_sum is None:
                raise ItemNotFoundError(f"item {item_id!r} not found")
            dim = len(f64_from(raw_sum))
            raw_hash = pipe.hget(hashof, image_id)
            if raw_hash is None:
                raise ImageNotFoundError(f"image {image_id!r} not found in item {item_id!r}")
            content_hash = raw_hash.decode()
            ref_key = self._key("ref", content_hash)
            pipe.watch(ref_key)
            refs = int(pipe.get(ref_key) or 0)
            rest = [i for i in pipe.lrange(order, 0, -1) if i.decode() != image_id]
            total = (
                sum_in_order((f32_from(b) for b in pipe.hmget(emb, rest)), dim) if rest else None
            )
            pipe.multi()
            if total is None:
                self._queue_item_removal(pipe, item_id)
            else:
                pipe.hdel(emb, image_id)
                pipe.hdel(hashof, image_id)
                pipe.hdel(self._key("byhash", item_id), content_hash)
                pipe.lrem(order, 0, image_id)
                pipe.hset(meta, mapping={"count": len(rest), "sum": f64_bytes(total)})
            released = self._queue_unref(pipe, {content_hash: refs}, {content_hash: 1})
            pipe.hincrby(self._key("counts"), "images", -1)
            pipe.execute()
            if total is None:
                return DeleteOutcome(_gone(item_id, dim), released)
            return DeleteOutcome(ItemState(item_id, len(rest), total), released)

        return self._transaction(delete)

    def delete_item(self, item_id: str) -> DeleteOutcome:
        meta, hashof = self._key("meta", item_id), self._key("hashof", item_id)

        def delete(pipe: Any) -> DeleteOutcome:
            pipe.watch(meta)
            raw_sum = pipe.hget(meta, "sum")
            if raw_sum is None:
                raise ItemNotFoundError(f"item {item_id!r} not found")
            dim = len(f64_from(raw_sum))
            held: dict[str, int] = {}
            for raw in pipe.hvals(hashof):
                held[raw.decode()] = held.get(raw.decode(), 0) + 1
            ref_keys = [self._key("ref", h) for h in held]
            if ref_keys:
                pipe.watch(*ref_keys)
            refs = {h: int(r or 0) for h, r in zip(held, pipe.mget(ref_keys), strict=True)}
            pipe.multi()
            self._queue_item_removal(pipe, item_id)
            released = self._queue_unref(pipe, refs, held)
            pipe.hincrby(self._key("counts"), "images", -sum(held.values()))
            pipe.execute()
            return DeleteOutcome(_gone(item_id, dim), released)

        return self._transaction(delete)

    # -- reads --------------------------------------------------------------------------------

    def get_item(self, item_id: str) -> ItemRecord | None:
        def read() -> ItemRecord | None:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.exists(self._key("meta", item_id))
                pipe.lrange(self._key("order", item_id), 0, -1)
                exists, order = pipe.execute()
            return ItemRecord(item_id, [i.decode() for i in order]) if exists else None

        return self._call(read)

    def list_items(self, limit: int, cursor: str | None) -> tuple[list[ItemSummary], str | None]:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        ids, counts = self._page(cursor, limit + 1, ["count"])
        page = [ItemSummary(i, int(c[0])) for i, c in zip(ids, counts, strict=True)]
        more = len(page) > limit
        page = page[:limit]
        return page, (page[-1].item_id if more else None)

    def iter_item_states(self) -> Iterator[ItemState]:
        after: str | None = None
        while True:
            ids, fields = self._page(after, PAGE_ITEMS, ["count", "sum"])
            for item_id, (count, raw_sum) in zip(ids, fields, strict=True):
                yield ItemState(item_id, int(count), f64_from(raw_sum))
            if len(ids) < PAGE_ITEMS:
                return
            after = ids[-1]

    def iter_images(self) -> Iterator[ImageRecord]:
        after: str | None = None
        while True:
            ids = self._item_ids_after(after, PAGE_ITEMS)
            for item_id in ids:
                yield from self._item_images(item_id)
            if len(ids) < PAGE_ITEMS:
                return
            after = ids[-1]

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

    def close(self) -> None:
        self._client.close()

    # -- internals ----------------------------------------------------------------------------

    def _claimed_dim(self) -> int | None:
        if self._identity is None:
            self._identity = self.get_model_identity()
        return None if self._identity is None else self._identity.dim

    def _queue_item_removal(self, pipe: Any, item_id: str) -> None:
        pipe.delete(
            self._key("meta", item_id),
            self._key("emb", item_id),
            self._key("byhash", item_id),
            self._key("hashof", item_id),
            self._key("order", item_id),
        )
        pipe.zrem(self._key("items"), item_id)
        pipe.hincrby(self._key("counts"), "items", -1)

    def _queue_unref(self, pipe: Any, refs: dict[str, int], dropped: dict[str, int]) -> list[str]:
        """Queue the ref-count decrements; return the hashes that reach zero."""
        released: list[str] = []
        for content_hash, n in dropped.items():
            key = self._key("ref", content_hash)
            if refs[content_hash] <= n:
                pipe.delete(key)
                released.append(content_hash)
            else:
                pipe.decrby(key, n)
        return released

    def _item_ids_after(self, after: str | None, n: int) -> list[str]:
        low = "-" if after is None else "(" + after
        raw = self._call(lambda: self._client.zrangebylex(self._key("items"), low, "+", 0, n))
        return [_text(r) for r in raw]

    def _page(
        self, after: str | None, n: int, fields: list[str]
    ) -> tuple[list[str], list[list[bytes]]]:
        """Up to ``n`` item ids after ``after`` and their ``meta`` fields, minus deleted ones."""
        ids = self._item_ids_after(after, n)

        def read() -> list[list[bytes | None]]:
            with self._client.pipeline(transaction=True) as pipe:
                for item_id in ids:
                    pipe.hmget(self._key("meta", item_id), fields)
                result: list[list[bytes | None]] = pipe.execute()
                return result

        values = self._call(read) if ids else []
        # An item deleted between the two round trips has no meta any more.
        kept = [
            (i, [b for b in v if b is not None])
            for i, v in zip(ids, values, strict=True)
            if all(b is not None for b in v)
        ]
        return [i for i, _ in kept], [v for _, v in kept]

    def _item_images(self, item_id: str) -> list[ImageRecord]:
        def read() -> list[Any]:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.lrange(self._key("order", item_id), 0, -1)
                pipe.hgetall(self._key("emb", item_id))
                pipe.hgetall(self._key("hashof", item_id))
                result: list[Any] = pipe.execute()
                return result

        order, embs, hashes = self._call(read)
        return [
            ImageRecord(i.decode(), item_id, hashes[i].decode(), f32_from(embs[i])) for i in order
        ]

    def _transaction(self, fn: Callable[[Any], T]) -> T:
        for _ in range(MAX_TRANSACTION_ATTEMPTS):
            try:
                with self._client.pipeline(transaction=True) as pipe:
                    return self._call(lambda: fn(pipe))
            except redis.WatchError:
                continue
        raise StoreUnavailableError(
            f"gave up after {MAX_TRANSACTION_ATTEMPTS} conflicting concurrent writes"
        )

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailableError(f"Redis unreachable: {exc}") from exc


def _gone(item_id: str, dim: int) -> ItemState:
    return ItemState(item_id, 0, np.zeros(dim, dtype=np.float64))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
