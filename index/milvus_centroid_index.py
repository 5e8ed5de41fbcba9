"""Item-centroid index kept in a Milvus collection, for galleries that outgrow one machine.

One collection per namespace, reached through an alias named after the namespace:

* ``item_id`` VARCHAR primary key of ``MAX_ITEM_ID_LENGTH`` (the service's item-id limit);
* ``vector`` FLOAT_VECTOR ``(dim,)``, unit-norm float32, FLAT index with the IP metric, so
  Milvus's candidates are exact;
* ``terms`` ARRAY<VARCHAR> (``MILVUS_MAX_TERMS`` elements of at most ``MILVUS_MAX_TERM_BYTES``
  UTF-8 bytes each; more is refused with ValueError before anything is sent), the item's
  filter terms (``index/item_terms.py``). A filtered search passes
  ``array_contains_all(terms, [...])`` as Milvus's search ``filter``, so Milvus returns the
  top candidates among the matching rows only (FLAT: exact), and the widen-and-sort below
  orders their ties; the terms are written into the expression as double-quoted literals
  with backslash, quote, newline, carriage return and tab escaped;
* ``version`` INT64, the store version of the item state a row was written from (0 when the
  writer gave none): several replicas write one collection, and this is how they tell what it
  holds (``index/shared_centroid_index.py``).

Every call names ``consistency_level="Strong"``: standalone Milvus defaults collections to
Bounded, under which the next search may not see the previous write.

Milvus returns equal scores in any order and in float32, so a search asks for more than ``k``
(widening until the last candidate scores clearly below the k-th), recomputes each candidate's
score in float64 from its stored float32 row and sorts by ``(-score, item_id)`` — the flat
index's rule. ``k`` is capped at ``MILVUS_MAX_TOP_K`` (Milvus refuses larger requests); ties
straddling that many candidates are cut at the cap.

``rebuild`` loads a fresh collection aside and then moves the alias to it, so searches keep
answering from the old content meanwhile and a bad input leaves it untouched.

``pymilvus`` is imported only when an index is built, so a service not configured for Milvus
pays nothing for it. Every Milvus failure surfaces as ``IndexUnavailableError``: the client's
own errors, and gRPC's (a call past its timeout ends in DEADLINE_EXCEEDED, which pymilvus lets
through unwrapped). A collection found released (a restarted Milvus Lite server does not load
what it loaded before) is loaded again and the call retried once.

Two timeouts, because the service's requests must fail within the store's deadline while a
set-up or bulk call legitimately takes long:

* ``timeout`` (request path, short): ``search``, ``upsert``, ``remove``, ``get``, ``len``,
  ``in``, ``stored_version`` and a ``upsert_versioned``/``upsert_many`` call of one row (a
  write's settle); also the client's connection, made with it when ``client`` is a URI:
  pymilvus reconnects *inside* a call that met an unavailable server, bounded by the timeout
  the client was made with, so a longer one would let a request wait for it;
* ``admin_timeout`` (set-up and bulk, long): attaching or creating the collection (list and
  describe aliases and collections, create collection and index, load), a reload after a
  restart, ``flush``, alias moves, ``drop``, the batches of ``rebuild`` and of a
  several-row ``upsert_versioned``, and the paged reads ``stored_versions`` and ``item_ids``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from index.centroid_math import l2_normalize
from index.index_errors import IndexUnavailableError
from index.item_terms import NO_TERMS, check_terms, check_where
from index.rebuild_item import RebuildItem, split_rebuild_item
from index.shared_centroid_index import VersionedRow, split_versioned_row
from index.tie_aware_top_k import FIRST_EXTRA, WIDEN_FACTOR, float32_dot_slack

if TYPE_CHECKING:
    from pymilvus import MilvusClient

# The service's item-id limit (app/dependencies.py ITEM_ID_PATTERN: 1 to 128 ASCII characters,
# so characters and bytes agree).
MAX_ITEM_ID_LENGTH = 128
# Milvus's ``topk`` limit (``quotaAndLimits.limits.topK``, default 16384); Milvus Lite accepts
# more, a standalone server does not.
MILVUS_MAX_TOP_K = 16384
# Rows per insert call during ``rebuild``: far below Milvus's 64 MB gRPC message limit at
# D = 1280 (1024 x 1280 x 4 B = 5 MB, ~3x that as the client's JSON-ish row form).
REBUILD_BATCH_ROWS = 1024
# A rebuild of at least this many rows is flushed before the alias moves: rows still in a
# growing segment are searched by a slow brute-force path (Milvus Lite, 2000 x 1280: 210 ms
# per query before the flush, 12 ms after), and a flush costs ~0.5 s, not worth it for few rows.
FLUSH_AFTER_ROWS = 1024
# Rows per page when listing item ids.
ITEM_ID_PAGE_ROWS = 4096
# The ``terms`` field's ``max_capacity`` and element ``max_length`` (Milvus allows up to 4096
# elements and 65535 bytes). Attributes of the default 4 KiB render into at most ~680 terms
# (each key/value pair takes at least 6 bytes of JSON) of at most ~4 KiB each, so these leave
# room for a larger attribute limit; Milvus Lite does not enforce the length, so it is checked
# here for both.
MILVUS_MAX_TERMS = 1024
MILVUS_MAX_TERM_BYTES = 8192

_STRONG = "Strong"
_FLOAT32_BYTES = 4
_ID, _VECTOR, _TERMS, _ITEM_VERSION = "item_id", "vector", "terms", "version"
# Milvus's error code for a collection that is not loaded (``merr.ErrCollectionNotLoaded``;
# Milvus Lite answers the same).
_NOT_LOADED = 101
_T = TypeVar("_T")


class MilvusCentroidIndex:
    """Item id (``str``) → unit-norm ``(dim,)`` float32 centroid in Milvus, exact IP search.

    ``client`` is a ``pymilvus.MilvusClient`` or a URI for one (a Milvus Lite ``.db`` path or
    ``http://host:19530``). ``collection`` is the namespace's name: an existing alias of that
    name is attached to (its dimension must be ``dim``), otherwise a collection is created.
    ``timeout`` bounds each request-path call, ``admin_timeout`` each set-up or bulk call
    (seconds; the module docstring says which call is which).
    """

    def __init__(
        self,
        client: MilvusClient | str,
        collection: str,
        dim: int,
        *,
        timeout: float = 1.0,
        admin_timeout: float = 30.0,
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if timeout <= 0 or admin_timeout <= 0:
            raise ValueError(f"timeouts must be positive, got {timeout} and {admin_timeout}")
        self._dim = dim
        self._alias = collection
        self._timeout = timeout
        self._admin_timeout = admin_timeout
        self._slack = float32_dot_slack(dim)
        self._version = 0
        self._client: MilvusClient = self._call(lambda: _connect(client, timeout))
        self._generation = self._call(self._attach_or_create)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def collection(self) -> str:
        """The alias (namespace name) every read and write goes through."""
        return self._alias

    @property
    def version(self) -> int:
        """Incremented by every successful mutation made through this object.

        Writes by other processes on the same collection are not counted.
        """
        return self._version

    # -- writes -------------------------------------------------------------------------------

    def upsert(
        self,
        item_id: str,
        centroid: npt.NDArray[np.floating],
        terms: frozenset[str] = NO_TERMS,
    ) -> None:
        """Insert or replace ``item_id``'s row with ``centroid`` ``(dim,)``, L2-normalised,
        and its filter ``terms``.

        Raises ValueError on a wrong shape, a non-finite value, an id Milvus cannot hold or
        terms over the field's limits (``MILVUS_MAX_TERMS``, ``MILVUS_MAX_TERM_BYTES``).
        """
        row = self._entity(item_id, centroid, 0, terms)
        self._call(lambda: self._client.upsert(self._alias, [row], timeout=self._timeout))
        self._version += 1

    def upsert_many(self, items: Iterable[RebuildItem]) -> None:
        """``upsert`` of every ``(item_id, centroid (dim,)[, terms])`` in one Milvus call per
        ``REBUILD_BATCH_ROWS`` rows (a round trip per row dominates single upserts).

        Every row is checked before anything is sent; a repeated item id is refused
        (ValueError), since Milvus would keep an arbitrary one of the two. Not atomic across
        batches.
        """
        self.upsert_versioned(
            (item_id, centroid, 0, terms)
            for item_id, centroid, terms in map(split_rebuild_item, items)
        )

    def upsert_versioned(self, rows: Iterable[VersionedRow]) -> None:
        """``upsert_many`` of ``(item_id, centroid (dim,), version[, terms])``, each row keeping
        the store version it was written from (see ``stored_version``)."""
        entities = []
        seen: set[str] = set()
        for row in rows:
            item_id, centroid, version, terms = split_versioned_row(row)
            if item_id in seen:
                raise ValueError(f"item id {item_id!r} appears twice in one upsert")
            seen.add(item_id)
            entities.append(self._entity(item_id, centroid, version, terms))
        if not entities:
            return
        for start in range(0, len(entities), REBUILD_BATCH_ROWS):
            batch = entities[start : start + REBUILD_BATCH_ROWS]
            # One row is a write's settle (request path); more are a rebuild's batch.
            timeout = self._timeout if len(batch) == 1 else self._admin_timeout
            self._write(self._client.upsert, self._alias, batch, timeout)
        self._version += 1

    def remove(self, item_id: str) -> bool:
        """Delete ``item_id``; False (nothing changed) if it was not there.

        Milvus's delete does not say whether the id existed, so it is looked up first.
        """
        if item_id not in self:
            return False
        self._call(lambda: self._client.delete(self._alias, ids=[item_id], timeout=self._timeout))
        self._version += 1
        return True

    def rebuild(self, items: Iterable[RebuildItem]) -> None:
        """Replace the whole content with ``items``: ``(item_id, centroid (dim,))`` or
        ``(item_id, centroid, terms)`` (centroids normalised here).

        Loaded into a new collection in batches of ``REBUILD_BATCH_ROWS`` (flushed from
        ``FLUSH_AFTER_ROWS`` rows on), then the alias is moved onto it and the old collection
        dropped. Raises ValueError on a repeated item id
        or a bad row; the new collection is then dropped and the old content kept.
        """
        generation = self._generation + 1
        fresh = _physical_name(self._alias, generation)
        self._call(lambda: self._drop_if_exists(fresh))
        self._call(lambda: self._create(fresh))
        try:
            seen: set[str] = set()
            for batch in _batched(iter(items), REBUILD_BATCH_ROWS):
                rows = []
                for item in batch:
                    item_id, centroid, terms = split_rebuild_item(item)
                    if item_id in seen:
                        raise ValueError(f"item id {item_id!r} appears twice in rebuild input")
                    seen.add(item_id)
                    rows.append(self._entity(item_id, centroid, 0, terms))
                self._write(self._client.insert, fresh, rows, self._admin_timeout)
        except BaseException:
            self._call(lambda: self._drop_if_exists(fresh))
            raise
        if len(seen) >= FLUSH_AFTER_ROWS:
            self._call(lambda: self._client.flush(fresh, timeout=self._admin_timeout))
        old = _physical_name(self._alias, self._generation)
        self._call(
            lambda: self._client.alter_alias(fresh, self._alias, timeout=self._admin_timeout)
        )
        self._generation = generation
        self._version += 1
        self._call(lambda: self._drop_if_exists(old))

    # -- reads --------------------------------------------------------------------------------

    def search(
        self,
        queries: npt.NDArray[np.floating],
        k: int,
        where: frozenset[str] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Best ``min(k, MILVUS_MAX_TOP_K)`` items per query by inner product, among the items
        whose terms contain every term of ``where`` (None or empty: all items).

        ``queries`` is ``(Q, dim)`` and should be unit-norm (then scores are cosines in
        ``[-1, 1]``); it is not normalised here. Returns Q lists of distinct
        ``(item_id, score)``, best first, equal scores by item id ascending, scores recomputed
        in float64 from the stored float32 rows; fewer than ``k`` only if fewer items match.
        An empty index gives Q empty lists; ``k = 0`` too.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self._dim:
            raise ValueError(f"queries must be (Q, {self._dim}), got {q.shape}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        required = check_where(where)
        expr = "" if required is None else _contains_all(required)
        k = min(k, MILVUS_MAX_TOP_K)
        if k == 0 or q.shape[0] == 0:
            return [[] for _ in range(q.shape[0])]
        q64 = q.astype(np.float64)
        out: list[list[tuple[str, float]]] = [[] for _ in range(q.shape[0])]
        pending = list(range(q.shape[0]))
        want = min(MILVUS_MAX_TOP_K, k + FIRST_EXTRA)
        while pending:
            hits = self._search_milvus(q[pending], want, expr)
            still: list[int] = []
            for qi, found in zip(pending, hits, strict=True):
                # Milvus's float32 scores, best first (sorted here rather than trusted); once
                # the lowest is clearly below the k-th, no item left out can tie with the k-th.
                scores = sorted((float(h["distance"]) for h in found), reverse=True)
                complete = len(found) < want or want >= MILVUS_MAX_TOP_K
                if complete or scores[-1] < scores[k - 1] - self._slack:
                    out[qi] = _rank_exactly(found, q64[qi], k)
                else:
                    still.append(qi)
            pending = still
            want = min(MILVUS_MAX_TOP_K, want * WIDEN_FACTOR)
        return out

    def get(self, item_id: str) -> npt.NDArray[np.float32] | None:
        """A copy of ``item_id``'s ``(dim,)`` float32 row, or None if absent."""
        rows = self._call(
            lambda: self._client.get(
                self._alias,
                ids=[item_id],
                output_fields=[_VECTOR],
                timeout=self._timeout,
                consistency_level=_STRONG,
            )
        )
        if not rows:
            return None
        return np.asarray(rows[0][_VECTOR], dtype=np.float32)

    def terms_of(self, item_id: str) -> frozenset[str] | None:
        """``item_id``'s filter terms, or None if absent."""
        rows = self._call(
            lambda: self._client.get(
                self._alias,
                ids=[item_id],
                output_fields=[_TERMS],
                timeout=self._timeout,
                consistency_level=_STRONG,
            )
        )
        return frozenset(str(t) for t in rows[0][_TERMS]) if rows else None

    def __len__(self) -> int:
        rows = self._call(
            lambda: self._client.query(
                self._alias,
                filter="",
                output_fields=["count(*)"],
                timeout=self._timeout,
                consistency_level=_STRONG,
            )
        )
        return int(rows[0]["count(*)"])

    def __contains__(self, item_id: object) -> bool:
        if not isinstance(item_id, str) or not 0 < len(item_id) <= MAX_ITEM_ID_LENGTH:
            return False
        rows = self._call(
            lambda: self._client.get(
                self._alias,
                ids=[item_id],
                output_fields=[_ID],
                timeout=self._timeout,
                consistency_level=_STRONG,
            )
        )
        return bool(rows)

    def stored_version(self, item_id: str) -> int | None:
        """The version ``item_id``'s row was written with (0: none given), None if absent."""
        rows = self._call(
            lambda: self._client.get(
                self._alias,
                ids=[item_id],
                output_fields=[_ITEM_VERSION],
                timeout=self._timeout,
                consistency_level=_STRONG,
            )
        )
        return int(rows[0][_ITEM_VERSION]) if rows else None

    def stored_versions(self) -> dict[str, int]:
        """Every item id held and its row's version, paged (about 150 bytes a row on the wire
        at the longest ids: no vectors)."""
        return {str(r[_ID]): int(r[_ITEM_VERSION]) for r in self._page([_ID, _ITEM_VERSION])}

    def item_ids(self) -> list[str]:
        """Every item id held, in no particular order (paged with a query iterator)."""
        return [str(r[_ID]) for r in self._page([_ID])]

    def _page(self, fields: list[str]) -> list[dict[str, Any]]:
        """``fields`` of every row, through a query iterator."""

        def page_through() -> list[dict[str, Any]]:
            it = self._client.query_iterator(
                self._alias,
                batch_size=ITEM_ID_PAGE_ROWS,
                filter="",
                output_fields=fields,
                timeout=self._admin_timeout,
                consistency_level=_STRONG,
            )
            out: list[dict[str, Any]] = []
            try:
                while page := it.next():
                    out.extend(page)
            finally:
                it.close()
            return out

        return self._call(page_through)

    def memory_bytes(self) -> int:
        """Approximate size of the rows Milvus holds (server side, not this process).

        Per row: the float32 vector plus the primary key at its maximum length; Milvus's own
        overheads (segment metadata, delete logs) and the terms are not counted.
        """
        return len(self) * (self._dim * _FLOAT32_BYTES + MAX_ITEM_ID_LENGTH)

    def drop(self) -> None:
        """Delete the namespace's alias and collection from Milvus; this object is then unusable."""

        def drop_all() -> None:
            physical = _physical_name(self._alias, self._generation)
            self._client.drop_alias(self._alias, timeout=self._admin_timeout)
            self._drop_if_exists(physical)

        self._call(drop_all)

    # -- internals ----------------------------------------------------------------------------

    def _call(self, fn: Callable[[], _T]) -> _T:
        """Run one Milvus operation, turning the client's failures into IndexUnavailableError;
        once more after loading the collection if Milvus answers it is not loaded."""
        from pymilvus.exceptions import MilvusException

        try:
            try:
                return fn()
            except MilvusException as exc:
                if exc.code != _NOT_LOADED or not hasattr(self, "_client"):
                    raise
                self._reload()
                return fn()
        except (MilvusException, ConnectionError) as exc:
            raise IndexUnavailableError(f"Milvus ({self._alias}): {exc}") from exc
        except Exception as exc:
            # gRPC's own errors (DEADLINE_EXCEEDED past the timeout, UNAVAILABLE) are not
            # wrapped by pymilvus on every path; grpc is pymilvus's dependency, imported only
            # when it failed.
            import grpc

            if isinstance(exc, grpc.RpcError):
                raise IndexUnavailableError(f"Milvus ({self._alias}): {exc}") from exc
            raise

    def _reload(self) -> None:
        """Load the collection the alias points at (after a Milvus restart released it)."""
        target = self._client.describe_alias(self._alias, timeout=self._admin_timeout)
        self._client.load_collection(str(target["collection_name"]), timeout=self._admin_timeout)

    def _attach_or_create(self) -> int:
        """The generation of the alias's collection, creating generation 1 if there is none."""
        if self._alias in self._client.list_aliases(timeout=self._admin_timeout)["aliases"]:
            target = str(
                self._client.describe_alias(self._alias, timeout=self._admin_timeout)[
                    "collection_name"
                ]
            )
            prefix = f"{self._alias}__g"
            if not target.startswith(prefix) or not target[len(prefix) :].isdigit():
                raise ValueError(f"alias {self._alias!r} points at {target!r}, not one of ours")
            self._check_schema(target)
            self._client.load_collection(target, timeout=self._admin_timeout)
            return int(target[len(prefix) :])
        first = _physical_name(self._alias, 1)
        self._drop_if_exists(first)
        self._create(first)
        self._client.create_alias(first, self._alias, timeout=self._admin_timeout)
        return 1

    def _check_schema(self, physical: str) -> None:
        described = self._client.describe_collection(physical, timeout=self._admin_timeout)
        fields = {field["name"]: field for field in described["fields"]}
        for needed in (_ITEM_VERSION, _TERMS):
            if needed not in fields:
                raise ValueError(
                    f"collection {physical!r} has no {needed!r} field (made by an older version "
                    "of the service): drop it, the next start repopulates it from the store"
                )
        dim = int(fields[_VECTOR]["params"]["dim"])
        if dim != self._dim:
            raise ValueError(f"collection {physical!r} holds dim {dim}, not {self._dim}")

    def _create(self, physical: str) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_ID, DataType.VARCHAR, is_primary=True, max_length=MAX_ITEM_ID_LENGTH)
        schema.add_field(_VECTOR, DataType.FLOAT_VECTOR, dim=self._dim)
        schema.add_field(
            _TERMS,
            DataType.ARRAY,
            element_type=DataType.VARCHAR,
            max_capacity=MILVUS_MAX_TERMS,
            max_length=MILVUS_MAX_TERM_BYTES,
        )
        schema.add_field(_ITEM_VERSION, DataType.INT64)
        self._client.create_collection(
            physical, schema=schema, consistency_level=_STRONG, timeout=self._admin_timeout
        )
        index_params = self._client.prepare_index_params()
        index_params.add_index(field_name=_VECTOR, index_type="FLAT", metric_type="IP")
        # pymilvus's synchronous index creation sleeps 0.5 s before its first poll; on an
        # empty collection there is nothing to build, and load_collection waits until the
        # collection is searchable anyway.
        self._client.create_index(physical, index_params, sync=False, timeout=self._admin_timeout)
        self._client.load_collection(physical, timeout=self._admin_timeout)

    def _drop_if_exists(self, physical: str) -> None:
        if self._client.has_collection(physical, timeout=self._admin_timeout):
            self._client.drop_collection(physical, timeout=self._admin_timeout)

    def _entity(
        self,
        item_id: str,
        centroid: npt.NDArray[np.floating],
        version: int = 0,
        terms: frozenset[str] = NO_TERMS,
    ) -> dict[str, Any]:
        if not isinstance(item_id, str) or not 0 < len(item_id) <= MAX_ITEM_ID_LENGTH:
            raise ValueError(f"item id must be 1 to {MAX_ITEM_ID_LENGTH} characters")
        arr = np.asarray(centroid)
        if arr.shape != (self._dim,):
            raise ValueError(f"centroid must be ({self._dim},), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("centroid has a non-finite value")
        return {
            _ID: item_id,
            _VECTOR: l2_normalize(arr),
            _TERMS: _checked_terms(terms),
            _ITEM_VERSION: int(version),
        }

    def _write(
        self,
        op: Callable[..., object],
        collection: str,
        rows: list[dict[str, Any]],
        timeout: float,
    ) -> None:
        """``op`` (the client's insert or upsert) of ``rows`` into ``collection``."""
        self._call(lambda: op(collection, rows, timeout=timeout))

    def _search_milvus(
        self, q: npt.NDArray[np.float32], want: int, expr: str
    ) -> list[list[dict[str, Any]]]:
        """Per query, up to ``want`` hits ``{"item_id", "distance" (float32 IP), "entity"}``
        among the rows ``expr`` (a Milvus boolean expression; "" for all) selects."""
        result = self._call(
            lambda: self._client.search(
                self._alias,
                data=list(q),
                filter=expr,
                limit=want,
                output_fields=[_VECTOR],
                search_params={"metric_type": "IP"},
                timeout=self._timeout,
                consistency_level=_STRONG,
            )
        )
        return [list(hits) for hits in result]


def _connect(client: MilvusClient | str, timeout: float) -> MilvusClient:
    if not isinstance(client, str):
        return client
    from pymilvus import MilvusClient

    return MilvusClient(uri=client, timeout=timeout)


def _checked_terms(terms: frozenset[str]) -> list[str]:
    """``terms`` as the ``terms`` field's value (sorted), ValueError over its limits."""
    checked = check_terms(terms)
    if len(checked) > MILVUS_MAX_TERMS:
        raise ValueError(f"{len(checked)} terms, Milvus holds at most {MILVUS_MAX_TERMS}")
    for term in checked:
        size = len(term.encode())
        if size > MILVUS_MAX_TERM_BYTES:
            raise ValueError(
                f"a term of {size} bytes, Milvus holds at most {MILVUS_MAX_TERM_BYTES}"
            )
    return sorted(checked)


# Characters a Milvus string literal cannot hold as themselves; everything else is written
# as is (Milvus's parser knows no \x or \u escapes; other control characters pass raw).
_LITERAL_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _contains_all(required: frozenset[str]) -> str:
    """The Milvus filter for rows whose ``terms`` hold every one of ``required``."""
    literals = ", ".join(f'"{term.translate(_LITERAL_ESCAPES)}"' for term in sorted(required))
    return f"array_contains_all({_TERMS}, [{literals}])"


def _physical_name(alias: str, generation: int) -> str:
    return f"{alias}__g{generation}"


def _rank_exactly(
    hits: list[dict[str, Any]], query: npt.NDArray[np.float64], k: int
) -> list[tuple[str, float]]:
    """The best ``k`` hits by the float64 dot of their stored float32 row with ``query``."""
    if not hits:
        return []
    rows = np.asarray([h["entity"][_VECTOR] for h in hits], dtype=np.float32)
    exact = (rows.astype(np.float64) * query).sum(axis=1)
    pairs = [(str(h[_ID]), float(s)) for h, s in zip(hits, exact.tolist(), strict=True)]
    pairs.sort(key=lambda p: (-p[1], p[0]))
    return pairs[:k]


def _batched(it: Iterator[_T], size: int) -> Iterator[list[_T]]:
    while batch := list(itertools.islice(it, size)):
        yield batch
