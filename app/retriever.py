"""The retriever: image bytes → embedding → store (durable) → centroid index → ranked items.

Routes are thin wrappers over this object. Every method is blocking and thread-safe; the HTTP
layer calls them from worker threads, never on the event loop. Inference runs on the retriever's
:class:`~app.inference_executor.InferenceExecutor` when it has one (batching across requests),
else in the calling thread. ``search`` and ``enroll`` do a whole request; their steps
(``decode_*``, ``search_by_embedding``, ``commit_enrollment``) let the HTTP layer wait for the
executor on the event loop instead of in a worker thread.

Write ordering (per item, under that item's lock): blobs are written first, then the store
commits, then the in-memory index is updated from the item state the store returned. So a 2xx
means the store holds the images, and the next search on this instance sees them; two concurrent
enrollments to one item cannot apply their index updates out of order.

A write whose store outcome is unknown (``StoreOutcomeUnknownError``: 503 to the client) leaves
the index untouched and marks the item for the :class:`~app.index_reconciler.IndexReconciler`,
which re-reads it from the store and corrects the index; it also compares the whole index with
the store every ``reconcile_interval_s``.

A shared index (Milvus) can be down when the store is not. While its circuit breaker is open
(Milvus known down) a write is refused with 503 before anything is written. Otherwise the store
commits first; if the index then cannot take the state, the write still answers 2xx, with
``index_pending`` (``EnrollResult``, ``DeleteResult``), and the item is marked for the
reconciler, which settles it from the store once Milvus answers.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from app.admission_control import AdmissionTicket
from app.index_applier import IndexApplier, IndexNotSettledError
from app.index_reconciler import IndexReconciler
from app.inference_executor import InferenceExecutor, Priority
from app.metrics import ServiceMetrics
from app.recall_sampler import RecallSampler
from app.retriever_errors import InferenceFailedError, TooManyImagesError
from app.striped_lock import StripedLock
from artifact.image_decode import (
    ImageDecodeError,
    ImageTooLargeError,
    preprocess_bytes,
    stack_batch,
)
from artifact.onnx_embedder import OnnxEmbedder
from index.centroid_index import CentroidIndex
from index.centroid_math import centroid_from_sum
from index.gpu_search_mirror import GpuSearchMirror
from index.index_errors import IndexUnavailableError
from store.blob_backend import BlobBackend, BlobUnavailableError
from store.errors import ItemNotFoundError, StoreError, StoreOutcomeUnknownError
from store.idempotency import IdempotencyClaim, replay_if_recorded
from store.item_attributes import DEFAULT_MAX_ATTRIBUTES_BYTES, AttributeFilter, Attributes
from store.records import (
    DeleteOutcome,
    EnrollOutcome,
    ItemRecord,
    ItemState,
    ItemSummary,
    ModelIdentity,
    NewImage,
    PatchOutcome,
)
from store.store import Store
from store.thumbnail_blobs import delete_original

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 hex of ``data``: the store's and the blob directory's key for these bytes
        (computed once, however many steps ask)."""
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class EnrollResult:
    outcome: EnrollOutcome  # as the store answered, version included
    # Committed, but the (shared) index could not take it yet: searches may not show it until
    # the reconciler has applied it from the store.
    index_pending: bool = False

    @property
    def item_id(self) -> str:
        return self.outcome.item.item_id

    @property
    def image_ids(self) -> list[str]:
        return self.outcome.image_ids

    @property
    def image_count(self) -> int:
        return self.outcome.item.count

    @property
    def created(self) -> list[bool]:
        return self.outcome.created


@dataclass(frozen=True)
class DeleteResult:
    outcome: DeleteOutcome
    index_pending: bool = False  # as EnrollResult's


@dataclass(frozen=True)
class PatchResult:
    outcome: PatchOutcome
    index_pending: bool = False  # as EnrollResult's


@dataclass(frozen=True)
class SearchHit:
    item_id: str
    score: float
    # The item's attributes as this replica's index reflects them (app/item_attribute_map.py).
    attributes: Attributes = field(default_factory=dict)


def model_identity(embedder: OnnxEmbedder) -> ModelIdentity:
    spec = embedder.spec
    return ModelIdentity(name=spec.model_name, version=spec.model_version, dim=spec.embedding_dim)


class Retriever:
    def __init__(
        self,
        *,
        embedder: OnnxEmbedder,
        store: Store,
        index: CentroidIndex,
        blobs: BlobBackend | None,
        metrics: ServiceMetrics,
        max_image_pixels: int,
        max_images_per_request: int,
        gpu_mirror: GpuSearchMirror | None = None,
        executor: InferenceExecutor | None = None,
        reconcile_interval_s: float = 0.0,
        recall_sampler: RecallSampler | None = None,
        index_info: Mapping[str, Any] | None = None,
    ) -> None:
        self.embedder = embedder
        self.executor = executor
        self.store = store
        self.index = index
        self.blobs = blobs
        self.metrics = metrics
        self.max_image_pixels = max_image_pixels
        self.max_images_per_request = max_images_per_request
        self.gpu_mirror = gpu_mirror
        self.recall_sampler = recall_sampler  # approximate indexes only: recall@10 samples
        self.index_info = dict(index_info or {})  # /info's "index": kind and parameters
        self.identity = model_identity(embedder)
        self._item_locks = StripedLock()
        self._hash_locks = StripedLock()
        self.applier = IndexApplier(index, metrics)
        self.reconciler = IndexReconciler(
            store=store,
            applier=self.applier,
            item_locks=self._item_locks,
            metrics=metrics,
            interval_s=reconcile_interval_s,
        )
        metrics.read_store_counts_from(store.counts)

    # -- start-up -------------------------------------------------------------------------

    def rebuild_index(self, restore: Callable[[], bool] | None = None) -> int:
        """Claim the store for this model (or refuse), then bring the index in step: by
        ``restore`` (a snapshot and a replay) when it says it did, else by loading every
        centroid from the store. Returns items."""
        self.store.claim_model_identity(self.identity)
        if restore is None or not restore():
            self.rebuild_from_store()
        self._refresh_gauges()
        self.reconciler.start()
        return len(self.index)

    def rebuild_from_store(self) -> None:
        """Replace the index by the store's item states (at start-up, and when the change feed
        lost track)."""
        self.applier.rebuild(self.store.iter_item_states(), reread=self.store.get_item_state)
        self._refresh_gauges()

    @property
    def item_locks(self) -> StripedLock:
        """Held by whoever changes an item's index entry (writes, the reconciler, the feed)."""
        return self._item_locks

    # -- writes ---------------------------------------------------------------------------

    def enroll(
        self,
        item_id: str,
        uploads: Sequence[Upload],
        ticket: AdmissionTicket | None = None,
        idempotency: IdempotencyClaim[EnrollOutcome] | None = None,
        attributes_patch: Attributes | None = None,
        max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES,
    ) -> EnrollResult:
        """Embed ``uploads`` as one batch and add them to ``item_id`` (all or nothing), merging
        ``attributes_patch`` (RFC 7396) into its attributes in the same store transaction.

        Re-sent bytes (in this call or an earlier one) are not counted twice: their existing
        image id comes back. Raises ImageDecodeError / ImageTooLargeError before anything is
        written, StoreUnavailableError if the store cannot commit. With ``idempotency``, see
        ``Store.enroll`` (``IdempotentReplay`` when the key's answer is recorded already).
        """
        batch = self.decode_enrollment(uploads, ticket)
        embeddings = self._embed(batch, Priority.ENROLL, ticket)
        return self.commit_enrollment(
            item_id, uploads, embeddings, idempotency, attributes_patch, max_attributes_bytes
        )

    def decode_enrollment(
        self, uploads: Sequence[Upload], ticket: AdmissionTicket | None = None
    ) -> npt.NDArray[np.uint8]:
        """``uploads`` → ``(N, 3, H, W)`` uint8, after the per-request limits."""
        if not uploads:
            raise ImageDecodeError("no image in the request (form field 'images')")
        if len(uploads) > self.max_images_per_request:
            raise TooManyImagesError(
                f"{len(uploads)} images in one request; the limit is {self.max_images_per_request}"
            )
        return self._decode([u.data for u in uploads], [u.filename for u in uploads], ticket)

    def commit_enrollment(
        self,
        item_id: str,
        uploads: Sequence[Upload],
        embeddings: npt.NDArray[np.float32],
        idempotency: IdempotencyClaim[EnrollOutcome] | None = None,
        attributes_patch: Attributes | None = None,
        max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES,
    ) -> EnrollResult:
        """Store ``uploads`` with their ``(N, D)`` embeddings (as the model output them); see
        :meth:`enroll`. Attributes the store refuses (``AttributesError``: invalid, or over
        ``max_attributes_bytes`` merged) store nothing, and the blobs this call wrote are
        deleted again."""
        hashes = [u.content_hash for u in uploads]
        new_images = [NewImage(h, e) for h, e in zip(hashes, embeddings, strict=True)]
        self.applier.refuse_writes_if_index_down()
        with self._item_locks.hold([item_id]), self._hash_locks.hold(hashes):
            written = self._put_blobs(hashes, uploads)
            try:
                with self.metrics.stage("store_write"), self._reconcile_if_unknown(item_id):
                    outcome = self.store.enroll(
                        item_id,
                        new_images,
                        idempotency,
                        attributes_patch=attributes_patch,
                        max_attributes_bytes=max_attributes_bytes,
                    )
            except StoreOutcomeUnknownError:
                raise  # the blobs stay: the store may hold the images now
            except BaseException:  # a replayed answer too: it wrote nothing
                self._forget_blobs(written)
                raise
            pending = self._apply_committed(outcome.item)
        self._refresh_gauges()
        return EnrollResult(outcome, index_pending=pending)

    def patch_attributes(
        self,
        item_id: str,
        patch: Attributes,
        max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES,
        idempotency: IdempotencyClaim[PatchOutcome] | None = None,
    ) -> PatchResult:
        """Merge ``patch`` (RFC 7396) into ``item_id``'s attributes; the index's filter terms
        and the attributes results return follow. A write like the others (item lock, the
        shared index's breaker, reconciled if its outcome is unknown). ``ItemNotFoundError``,
        ``AttributesError``: nothing written."""
        self.applier.refuse_writes_if_index_down()
        with self._item_locks.hold([item_id]):
            with self.metrics.stage("store_write"), self._reconcile_if_unknown(item_id):
                state = self.store.patch_attributes(
                    item_id, patch, max_attributes_bytes, idempotency
                )
            pending = self._apply_committed(state)
        return PatchResult(PatchOutcome(state), index_pending=pending)

    def delete_image(
        self,
        item_id: str,
        image_id: str,
        idempotency: IdempotencyClaim[DeleteOutcome] | None = None,
    ) -> DeleteResult:
        self.applier.refuse_writes_if_index_down()
        with self._item_locks.hold([item_id]):
            with self.metrics.stage("store_write"), self._reconcile_if_unknown(item_id):
                outcome = self.store.delete_image(item_id, image_id, idempotency)
            pending = self._apply_committed(outcome.item)
        self._release_blobs(outcome)
        self._refresh_gauges()
        return DeleteResult(outcome, index_pending=pending)

    def delete_item(
        self, item_id: str, idempotency: IdempotencyClaim[DeleteOutcome] | None = None
    ) -> DeleteResult:
        self.applier.refuse_writes_if_index_down()
        with self._item_locks.hold([item_id]):
            with self.metrics.stage("store_write"), self._reconcile_if_unknown(item_id):
                outcome = self.store.delete_item(item_id, idempotency)
            pending = self._apply_committed(outcome.item)
        self._release_blobs(outcome)
        self._refresh_gauges()
        return DeleteResult(outcome, index_pending=pending)

    # -- reads ----------------------------------------------------------------------------

    def search(
        self,
        data: bytes,
        k: int,
        min_score: float | None = None,
        filename: str = "image",
        ticket: AdmissionTicket | None = None,
        where: AttributeFilter | None = None,
    ) -> list[SearchHit]:
        """Top ``k`` items by cosine between the query and item centroids, best first; with
        ``where``, the top ``k`` of the items whose attributes match it.

        Served from memory only, so searches keep working while the store is unreachable.
        """
        return self.search_set([Upload(filename, data)], k, min_score, ticket=ticket, where=where)

    def search_set(
        self,
        uploads: Sequence[Upload],
        k: int,
        min_score: float | None = None,
        weights: Sequence[float] | None = None,
        ticket: AdmissionTicket | None = None,
        where: AttributeFilter | None = None,
    ) -> list[SearchHit]:
        """:meth:`search` by several photos of one thing, embedded as one batch: items ranked by
        the query centroid ``normalize(sum_i w_i * e_i)`` (:func:`set_query`)."""
        batch = self.decode_query(uploads, ticket)
        embeddings = self._embed(batch, Priority.SEARCH, ticket)
        return self.search_by_embedding(embeddings, k, min_score, weights, where)

    def decode_query(
        self, uploads: Sequence[Upload], ticket: AdmissionTicket | None = None
    ) -> npt.NDArray[np.uint8]:
        """A query's ``uploads`` → ``(N, 3, H, W)`` uint8, after the per-request file limit
        (the enrollment's: a set query costs what an enrollment of its files costs)."""
        if not uploads:
            raise ImageDecodeError("no image in the query (form field 'images')")
        if len(uploads) > self.max_images_per_request:
            raise TooManyImagesError(
                f"{len(uploads)} images in one query; the limit is {self.max_images_per_request}"
            )
        return self._decode([u.data for u in uploads], [u.filename for u in uploads], ticket)

    def search_by_embedding(
        self,
        embeddings: npt.NDArray[np.float32],
        k: int,
        min_score: float | None = None,
        weights: Sequence[float] | None = None,
        where: AttributeFilter | None = None,
    ) -> list[SearchHit]:
        """:meth:`search_set` from the query's ``(N, D)`` embeddings as the model output them
        (``(1, D)``: a one-photo search)."""
        return self._ranked(set_query(embeddings, weights), k, min_score, where)

    def neighbours(
        self,
        item_id: str,
        k: int,
        min_score: float | None = None,
        where: AttributeFilter | None = None,
    ) -> list[SearchHit]:
        """The ``k`` other items whose centroids are most similar to ``item_id``'s, best first
        (ties by item id, as every search); ``ItemNotFoundError`` if the index does not hold it.

        The index is searched for ``k + 1`` and the item itself dropped: the top ``k + 1`` of
        all items hold the top ``k`` of the others, whatever the ties (an identical item may
        rank before the item itself), so exactly ``k`` others remain when there are that many;
        with ``where`` too (the item itself may or may not match it).
        """
        centroid = self.index.get(item_id)
        if centroid is None:
            raise ItemNotFoundError(f"item {item_id!r} not found")
        query = centroid.reshape(1, -1)  # (1, D) float32, unit norm as stored
        hits = self._ranked(query, k + 1, min_score, where)
        return [h for h in hits if h.item_id != item_id][:k]

    def _ranked(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        min_score: float | None,
        where: AttributeFilter | None = None,
    ) -> list[SearchHit]:
        """The top ``k`` items for one ``(1, D)`` unit-norm query, above ``min_score``, among
        those matching ``where`` (the index's filter terms: ``store/item_attributes.py``)."""
        terms = where.terms if where is not None and where.terms else None
        with self.metrics.stage("index_search"):
            (hits,) = self._search_index(query, k, terms)
        # The sampler compares with an unfiltered brute force: filtered searches are not offered
        # (their recall is the index's own, measured by its tests and the bench).
        if self.recall_sampler is not None and terms is None:
            self.recall_sampler.offer(query, k, hits)
        attributes = self.applier.attributes
        return [
            SearchHit(item_id, score, attributes.get(item_id))
            for item_id, score in hits
            if min_score is None or score >= min_score
        ]

    def get_item(self, item_id: str) -> ItemRecord | None:
        return self.store.get_item(item_id)

    def replay_if_recorded(self, claim: IdempotencyClaim[Any]) -> None:
        """Before any work: ``IdempotentReplay`` if the store holds this request's answer,
        ``IdempotencyKeyReusedError`` if it holds another request's under the key."""
        replay_if_recorded(self.store.get_idempotency_record(claim.key), claim.fingerprint)

    def list_items(
        self, limit: int, cursor: str | None, where: AttributeFilter | None = None
    ) -> tuple[list[ItemSummary], str | None]:
        return self.store.list_items(limit, cursor, where)

    def info(self) -> dict[str, Any]:
        spec = self.embedder.spec
        items, images = self.store.counts()
        return {
            "model": spec.to_dict(),
            "embedding_dim": spec.embedding_dim,
            "execution_providers": self.embedder.active_providers,
            "device": self.embedder.device,
            "items": items,
            "images": images,
            "index_items": len(self.index),
            "index_bytes": self.index.memory_bytes(),
            "store_backend": self.store.backend,
            "keep_blobs": self.blobs is not None,
            "index": self.index_info,
            # The attributes search results return, held in memory beside the index.
            "attributes": {
                "items": len(self.applier.attributes),
                "bytes": self.applier.attributes.memory_bytes(),
            },
        }

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()
        if self.recall_sampler is not None:
            self.recall_sampler.close()
        self.reconciler.close()
        self.store.close()

    # -- internals ------------------------------------------------------------------------

    def _embed(
        self, batch: npt.NDArray[np.uint8], priority: Priority, ticket: AdmissionTicket | None
    ) -> npt.NDArray[np.float32]:
        """``(N, 3, H, W)`` uint8 → ``(N, D)`` float32, on the executor or in this thread."""
        if self.executor is not None:
            return self.executor.submit(batch, priority=priority, ticket=ticket).result()
        if ticket is not None:
            ticket.check()
        with self.metrics.stage("inference"):
            try:
                return self.embedder.embed(batch)
            except Exception as exc:
                log.error("inference failed on %d images", len(batch), exc_info=exc)
                raise InferenceFailedError.of_batch(exc, len(batch)) from exc

    def _decode(
        self, blobs: Sequence[bytes], names: Sequence[str], ticket: AdmissionTicket | None = None
    ) -> np.ndarray:
        arrays = []
        working = ticket.working() if ticket is not None else nullcontext()
        with self.metrics.stage("decode"), working:
            for i, (data, name) in enumerate(zip(blobs, names, strict=True)):
                with _blame(i, name, len(blobs)):
                    arrays.append(
                        preprocess_bytes(data, self.embedder.spec, max_pixels=self.max_image_pixels)
                    )
        return stack_batch(arrays)

    def _search_index(
        self, query: np.ndarray, k: int, where: frozenset[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        # The GPU copy lags the CPU index by up to its refresh interval; while it does, the CPU
        # index answers, so an answered enrollment is always visible to the next search.
        mirror = self.gpu_mirror
        if mirror is not None:
            mirror.refresh()
            if mirror.version == self.index.version:
                return mirror.search(query, k, where)
        # A shared index (Milvus) through its breaker: refused at once (503, Retry-After) while
        # Milvus is known down instead of each search waiting for its timeout; a failure here
        # counts toward opening it as a write's does. Nothing for an index in this process.
        with self.applier.guarded():
            return self.index.search(query, k, where)

    def _apply_committed(self, state: ItemState) -> bool:
        """Bring the index to the state a write just committed; True (``index_pending``) if a
        shared index could not take it now, the item then being marked for the reconciler."""
        try:
            self.applier.apply(state, reread=self.store.get_item_state)
        except (IndexUnavailableError, IndexNotSettledError, StoreError) as exc:
            log.warning(
                "item %r committed but not yet in the index (%s); the reconciler will apply it",
                state.item_id,
                type(exc).__name__,
            )
            self.reconciler.mark(state.item_id)
            return True
        return False

    @contextmanager
    def _reconcile_if_unknown(self, item_id: str) -> Iterator[None]:
        """Around a store write: an unknown outcome marks the item for reconciliation; a known
        one (the store answered) lets pending items be retried now."""
        try:
            yield
        except StoreOutcomeUnknownError:
            log.warning("write to item %r has an unknown outcome; will re-read it", item_id)
            self.reconciler.mark(item_id)
            raise
        self.reconciler.store_answered()

    def _put_blobs(self, hashes: Sequence[str], uploads: Sequence[Upload]) -> list[str]:
        """Write originals not yet kept; return the hashes this call created (for rollback)."""
        if self.blobs is None:
            return []
        written: list[str] = []
        with self.metrics.stage("blob_write"):
            for h, upload in dict(zip(hashes, uploads, strict=True)).items():
                if self.blobs.put(h, upload.data):
                    written.append(h)
        return written

    def _forget_blobs(self, written: Sequence[str]) -> None:
        """Undo this call's blob writes after a failed commit (best effort: store may be down)."""
        if self.blobs is None:
            return
        for h in written:
            try:
                referenced = self.store.is_hash_referenced(h)
            except Exception:
                referenced = True  # cannot tell: keep it; an orphan blob is only wasted space
            if not referenced:
                self._delete_blob(h)

    def _release_blobs(self, outcome: DeleteOutcome) -> None:
        if self.blobs is None or not outcome.released_hashes:
            return
        for h in outcome.released_hashes:
            # Re-check under the hash lock: a concurrent enrollment of the same bytes may have
            # committed a new reference since the delete returned.
            with self._hash_locks.hold([h]):
                if not self.store.is_hash_referenced(h):
                    self._delete_blob(h)

    def _delete_blob(self, content_hash: str) -> None:
        """Delete a blob nothing references; a backend that does not answer leaves an orphan
        for the sweep, never an error in place of the write's answer (already committed)."""
        assert self.blobs is not None
        try:
            delete_original(self.blobs, content_hash)  # and its thumbnail
        except BlobUnavailableError as exc:
            log.warning("blob %s left for the sweep: %s", content_hash, exc)

    def _refresh_gauges(self) -> None:
        # A shared index not answering: the gauge keeps its last value.
        with suppress(IndexUnavailableError):
            self.metrics.index_items.set(len(self.index))


def set_query(
    embeddings: npt.NDArray[np.floating], weights: Sequence[float] | None = None
) -> npt.NDArray[np.float32]:
    """The ``(1, D)`` unit-norm query of ``(N, D)`` raw embeddings: ``normalize(sum_i w_i e_i)``
    (every ``w_i`` 1 without ``weights``), built as an item's centroid is, in float64 from the
    embeddings as the model output them, not normalised first. ``N == 1`` is a one-photo query
    (the weight then only scales, which normalisation removes)."""
    rows = np.asarray(embeddings, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(f"expected (N, D) embeddings with N >= 1, got {rows.shape}")
    if weights is None:
        total = rows.sum(axis=0)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (rows.shape[0],):
            raise ValueError(f"{w.shape[0]} weights for {rows.shape[0]} embeddings")
        total = w @ rows
    return centroid_from_sum(total).reshape(1, -1)


@contextmanager
def _blame(i: int, name: str, total: int) -> Iterator[None]:
    """Prefix decode errors with which upload failed, keeping their type (and HTTP status)."""
    try:
        yield
    except (ImageDecodeError, ImageTooLargeError) as exc:
        where = f"images[{i}] ({name!r})" if total > 1 else f"{name!r}"
        raise type(exc)(f"{where}: {exc}") from exc
