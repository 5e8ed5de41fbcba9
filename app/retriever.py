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
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from app.admission_control import AdmissionTicket
from app.image_evidence import CandidateEvidence, ImageChange, ImageEvidence
from app.index_applier import IndexApplier, IndexNotSettledError
from app.index_reconciler import IndexReconciler
from app.inference_executor import InferenceExecutor, Priority
from app.metrics import ServiceMetrics
from app.recall_sampler import RecallSampler
from app.retriever_errors import InferenceFailedError, TooManyImagesError
from app.striped_lock import StripedLock
from app.suspect_review import SuspectReview
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
from index.match_confidence import is_degenerate, match_confidence, uniform_inputs
from index.shared_centroid_index import SharedCentroidIndex
from index.suspect_images import DEFAULT_QUARANTINE_MIN_IMAGES, SuspectRule
from index.two_stage_fusion import DEFAULT_ALPHA, DEFAULT_CANDIDATES, RankMode, rank_candidates
from store.blob_backend import BlobBackend, BlobUnavailableError
from store.errors import (
    ImageNotFoundError,
    ItemNotFoundError,
    LastCountedImageError,
    StoreError,
    StoreOutcomeUnknownError,
)
from store.hash_references import AnyOf, HashReferences
from store.idempotency import IdempotencyClaim, replay_if_recorded
from store.item_attributes import DEFAULT_MAX_ATTRIBUTES_BYTES, AttributeFilter, Attributes
from store.item_versions import versions_digest
from store.kept_quarantine import KeptQuarantine
from store.records import (
    DeleteOutcome,
    EnrollOutcome,
    ItemRecord,
    ItemState,
    ItemSummary,
    ModelIdentity,
    NewImage,
    PatchOutcome,
    SuspectImage,
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
    """One result; the fields' meanings are ``app/schemas.py``'s ``SearchResult``'s."""

    item_id: str
    score: float  # the ranking score: fused in two_stage, the centroid score in centroid mode
    # The item's attributes as this replica's index reflects them (app/item_attribute_map.py).
    attributes: Attributes = field(default_factory=dict)
    best_image_id: str | None = None  # None: the item's images could not be read
    image_score: float = 0.0
    image_count: int = 0
    centroid_score: float = 0.0
    match: bool = False
    confidence: float = 0.0


# The uniform-colour images' embeddings per model (name, version, dim, input height, width):
# what degenerate queries are compared with, made once per process and model.
_UNIFORM_EMBEDDINGS: dict[tuple[str, str, int, int, int], npt.NDArray[np.float32]] = {}
_UNIFORM_LOCK = threading.Lock()

# A migration's copy of a write takes the attributes the other store accepted under the
# service's limit whole.
UNLIMITED_ATTRIBUTES = 2**31

# Per-image embeddings kept in memory up to this many bytes (RETRIEVAL_IMAGE_EMBEDDINGS_BUDGET_MB).
DEFAULT_IMAGE_EMBEDDINGS_BUDGET_BYTES = 1024 * 2**20

# A mirrored write that did nothing to the item's images (a patch, a whole-item delete).
_NO_IMAGE_CHANGE = ImageChange()


def _counted_change(
    outcome: EnrollOutcome, embeddings: npt.NDArray[np.float32], quarantined: frozenset[str]
) -> ImageChange:
    """The images an enrollment added to its item's sums, with their ``(n, D)`` embeddings
    (``embeddings``: one per uploaded file): those it created minus those held out
    (``quarantined``)."""
    added = [
        n
        for n, created in enumerate(outcome.created)
        if created and outcome.image_ids[n] not in quarantined
    ]
    return ImageChange(added_ids=[outcome.image_ids[n] for n in added], added=embeddings[added])


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
        # The index's own order unless told (the service's default is Settings.ranking's).
        ranking: RankMode = RankMode.CENTROID,
        rerank_candidates: int = DEFAULT_CANDIDATES,
        image_embeddings_budget_bytes: int = DEFAULT_IMAGE_EMBEDDINGS_BUDGET_BYTES,
        locks_of: Retriever | None = None,
        suspect_rule: SuspectRule | None = None,
        quarantine_suspects: bool = False,
        quarantine_min_images: int = DEFAULT_QUARANTINE_MIN_IMAGES,
    ) -> None:
        """``locks_of``: a model migration's other retriever, whose item and hash locks this
        one shares (a write holds one item lock for both stores' commits, so neither order of
        two retrievers' locks can deadlock while a switch lets writes run on both)."""
        if rerank_candidates < 1:
            raise ValueError(f"rerank_candidates must be >= 1, got {rerank_candidates}")
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
        self._item_locks: StripedLock = StripedLock() if locks_of is None else locks_of.item_locks
        self._hash_locks: StripedLock = StripedLock() if locks_of is None else locks_of.hash_locks
        self.ranking = ranking
        self.rerank_candidates = rerank_candidates
        # The second stage's images and spreads (app/image_evidence.py): in memory within the
        # budget, else (and with Milvus, which other replicas write) read from the store.
        self.evidence = ImageEvidence(
            store=store,
            dim=embedder.embedding_dim,
            budget_bytes=image_embeddings_budget_bytes,
            item_locks=self._item_locks,
            keep_in_memory=not isinstance(index, SharedCentroidIndex),
            centroid_of=index.get,
        )
        self._uniform: npt.NDArray[np.float32] | None = None  # degenerate-query references
        # The enrollment quality gate: each added image judged against its item and the index.
        self.suspects = SuspectReview(
            index,
            suspect_rule or SuspectRule(),
            quarantine=quarantine_suspects,
            quarantine_min_images=quarantine_min_images,
        )
        self.applier = IndexApplier(index, metrics, self.evidence)
        self.reconciler = IndexReconciler(
            store=store,
            applier=self.applier,
            item_locks=self._item_locks,
            metrics=metrics,
            interval_s=reconcile_interval_s,
        )
        metrics.read_store_counts_from(store.counts)
        # During a model migration, the other model's retriever: every write committed here is
        # copied to it (``mirror_*``), with the same image ids, and a blob is only released
        # once neither store references it (app/migration_follower.py sets it).
        self.mirror: Retriever | None = None
        self.mirror_failures = 0  # copies the mirror refused: a catch-up pass repairs them

    # -- start-up -------------------------------------------------------------------------

    def rebuild_index(self, restore: Callable[[], bool] | None = None) -> int:
        """Claim the store for this model (or refuse), then bring the index in step: by
        ``restore`` (a snapshot and a replay) when it says it did, else by loading every
        centroid from the store. Returns items."""
        self.store.claim_model_identity(self.identity)
        # Made before ready, so the first search does not wait for them, and beside the index
        # load: model calls on the cores while the load mostly waits on the disk or the store
        # (seconds off a snapshot start).
        references = threading.Thread(
            target=self._uniform_embeddings, name="uniform-references", daemon=True
        )
        references.start()
        try:
            if restore is None or not restore():
                self.rebuild_from_store()
        finally:
            references.join()
        self._uniform_embeddings()  # made by now; raises here if the thread's attempt failed
        self._refresh_gauges()
        self.reconciler.start()
        return len(self.index)

    def refresh_item(self, item_id: str) -> None:
        """Bring the index (and the evidence) to what the store holds for ``item_id`` now: a
        write made to this retriever's store by someone else in this process (a migration's
        re-embedding into the shadow store)."""
        with self._item_locks.hold([item_id]):
            state = self.store.get_item_state(item_id)
            if state is None or state.count == 0:
                self.applier.drop(item_id)
            else:
                self.applier.apply(state, reread=self.store.get_item_state)

    def version_digests(
        self, pause: Callable[[], None] | None = None
    ) -> tuple[tuple[int, str], tuple[int, str]]:
        """``(items, digest)`` of the index's ``(item id, version)`` pairs and the same of the
        store's (``versions_digest``): equal digests mean the index reflects the store exactly.
        One pass over the store's item states; ``pause()`` after each 500 of them, to give the
        cores back. Writes may land meanwhile: a difference may be one of them."""
        held = self.applier.versions()
        stored: list[tuple[str, int]] = []
        for seen, state in enumerate(self.store.iter_item_states(), 1):
            stored.append((state.item_id, state.version))
            if pause is not None and seen % 500 == 0:
                pause()
        return (len(held), versions_digest(held)), (len(stored), versions_digest(stored))

    def index_agrees_with_store(self, pause: Callable[[], None] | None = None) -> bool:
        """Whether the index holds exactly the store's items at the store's versions."""
        (_, index_digest), (_, store_digest) = self.version_digests(pause)
        return index_digest == store_digest

    def rebuild_from_store(self) -> None:
        """Replace the index by the store's item states (at start-up, and when the change feed
        lost track)."""
        self.applier.rebuild(self.store.iter_item_states(), reread=self.store.get_item_state)
        self._refresh_gauges()

    @property
    def hash_locks(self) -> StripedLock:
        """Held by whoever writes or releases a blob (an enrollment, a blob's release)."""
        return self._hash_locks

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
        # Its rivals are read now, before the commit; the store's transaction judges the images
        # (and quarantines them, if so set), so the recorded answer holds the suspects.
        review = self.suspects.enrollment(item_id, embeddings)
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
                        judge=review,
                    )
            except StoreOutcomeUnknownError:
                raise  # the blobs stay: the store may hold the images now
            except BaseException:  # a replayed answer too: it wrote nothing
                self._forget_blobs(written)
                raise
            held_out = frozenset(s.image_id for s in outcome.suspects if s.quarantined)
            pending = self._apply_committed(
                outcome.item, _counted_change(outcome, embeddings, held_out)
            )
            mirror = self.mirror
            if mirror is not None:
                mirror.mirror_enrollment(
                    item_id, uploads, outcome.image_ids, attributes_patch, held_out
                )
        self._refresh_gauges()
        return EnrollResult(outcome, index_pending=pending)

    def item_suspects(self, item_id: str) -> tuple[int, tuple[SuspectImage, ...]] | None:
        """``item_id``'s image count and suspect images judged now (two store reads: its state
        and its images, under the item's lock so they agree); None if the item is absent."""
        with self._item_locks.hold([item_id]):
            state = self.store.get_item_state(item_id)
            if state is None or state.count == 0:
                return None
            images = self.store.item_images([item_id])[item_id]
        return state.count, self.suspects.item(state, images)

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
            pending = self._apply_committed(state, ImageChange())  # images untouched
            mirror = self.mirror
            if mirror is not None:
                mirror.mirror_write(item_id, lambda s: s.patch_attributes(item_id, patch))
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
            # Removing an item's last counted image brings its quarantined ones back into its
            # sums: the evidence then counts fewer than the state and re-reads the item.
            pending = self._apply_committed(outcome.item, ImageChange(removed=[image_id]))
            mirror = self.mirror
            if mirror is not None:
                mirror.mirror_write(
                    item_id,
                    lambda s: s.delete_image(item_id, image_id).item,
                    ImageChange(removed=[image_id]),
                )
        self._release_blobs(outcome)
        self._refresh_gauges()
        return DeleteResult(outcome, index_pending=pending)

    def set_image_quarantine(
        self,
        item_id: str,
        image_id: str,
        quarantined: bool,
        idempotency: IdempotencyClaim[PatchOutcome] | None = None,
    ) -> PatchResult:
        """Hold ``image_id`` out of its item's sums (``quarantined``) or bring it back in
        (``Store.set_image_quarantine``); the index and the evidence follow. A write like the
        others. ``ItemNotFoundError``, ``ImageNotFoundError``, ``LastCountedImageError``."""
        self.applier.refuse_writes_if_index_down()
        with self._item_locks.hold([item_id]):
            with self.metrics.stage("store_write"), self._reconcile_if_unknown(item_id):
                state = self.store.set_image_quarantine(item_id, image_id, quarantined, idempotency)
            # Out: one image fewer in the evidence; back in: its embedding is re-read.
            change = ImageChange(removed=[image_id]) if quarantined else None
            pending = self._apply_committed(state, change)
            mirror = self.mirror
            if mirror is not None:
                mirror.mirror_write(
                    item_id,
                    lambda s: s.set_image_quarantine(item_id, image_id, quarantined),
                    change,
                )
        return PatchResult(PatchOutcome(state), index_pending=pending)

    def delete_item(
        self, item_id: str, idempotency: IdempotencyClaim[DeleteOutcome] | None = None
    ) -> DeleteResult:
        self.applier.refuse_writes_if_index_down()
        with self._item_locks.hold([item_id]):
            with self.metrics.stage("store_write"), self._reconcile_if_unknown(item_id):
                outcome = self.store.delete_item(item_id, idempotency)
            pending = self._apply_committed(outcome.item, ImageChange())
            mirror = self.mirror
            if mirror is not None:
                mirror.mirror_write(item_id, lambda s: s.delete_item(item_id).item)
        self._release_blobs(outcome)
        self._refresh_gauges()
        return DeleteResult(outcome, index_pending=pending)

    # -- a migration's copies of the other model's writes -----------------------------------

    def mirror_enrollment(
        self,
        item_id: str,
        uploads: Sequence[Upload],
        image_ids: Sequence[str],
        attributes_patch: Attributes | None,
        quarantined: frozenset[str] = frozenset(),
    ) -> None:
        """Copy an enrollment the other model's retriever committed: the same images under the
        same ids (those of them in ``quarantined`` held out of the sums, as there), embedded
        with this model, and the same attributes patch. Never raises: a copy
        that fails is logged and counted, and the catch-up pass before a switch
        (``app/reembed_job.py``) re-embeds the item. Called under the caller's hold of the
        item's lock, which the two retrievers share (``locks_of``)."""
        try:
            batch = self._decode([u.data for u in uploads], [u.filename for u in uploads])
            embeddings = self._embed(batch, Priority.ENROLL, None)
            images = [NewImage(u.content_hash, e) for u, e in zip(uploads, embeddings, strict=True)]
            outcome = self.store.enroll(
                item_id,
                images,
                attributes_patch=attributes_patch,
                max_attributes_bytes=UNLIMITED_ATTRIBUTES,
                image_ids=image_ids,
                judge=KeptQuarantine(
                    frozenset(n for n, i in enumerate(image_ids) if i in quarantined)
                ),
            )
            self._apply_committed(outcome.item, _counted_change(outcome, embeddings, quarantined))
        except Exception as exc:
            self._mirror_failed(item_id, exc)

    def mirror_write(
        self,
        item_id: str,
        write: Callable[[Store], ItemState],
        images: ImageChange | None = _NO_IMAGE_CHANGE,
    ) -> None:
        """Copy a delete, an attribute patch or a quarantine change (``write`` on this store);
        an item or image this store lacks (not re-embedded yet) is no error. ``images``: what
        the write did to the item's images (None: re-read them from the store). Never raises,
        and runs under the caller's item lock, as ``mirror_enrollment``."""
        try:
            try:
                state = write(self.store)
            except (ItemNotFoundError, ImageNotFoundError, LastCountedImageError):
                return
            self._apply_committed(state, images)
        except Exception as exc:
            self._mirror_failed(item_id, exc)

    def _mirror_failed(self, item_id: str, exc: Exception) -> None:
        self.mirror_failures += 1
        log.error(
            "migration: the copy of a write to item %r into the %s v%s store failed (the "
            "catch-up before a switch re-embeds it): %s: %s",
            item_id,
            self.identity.name,
            self.identity.version,
            type(exc).__name__,
            exc,
        )

    def hash_references(self) -> HashReferences:
        """What references a blob: this store, and during a migration the other one too (what
        a blob sweep must keep)."""
        mirror = self.mirror
        return self.store if mirror is None else AnyOf([self.store, mirror.store])

    def _referenced(self, content_hash: str) -> bool:
        """Whether this store, or the migration's other one, holds an image of these bytes."""
        if self.store.is_hash_referenced(content_hash):
            return True
        mirror = self.mirror
        return mirror is not None and mirror.store.is_hash_referenced(content_hash)

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
        return self.search_by_embedding(embeddings, k, min_score, weights, where, batch)

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
        model_inputs: npt.NDArray[np.uint8] | None = None,
    ) -> list[SearchHit]:
        """:meth:`search_set` from the query's ``(N, D)`` embeddings as the model output them
        (``(1, D)``: a one-photo search), and the ``(N, 3, H, W)`` model inputs they were made
        of (when given, a flat input makes its file degenerate whatever its embedding).

        A query all of whose files are degenerate (blank, uniform, tiny:
        ``index/match_confidence.py``) gets no match and confidence 0 on every result; its
        ranking is unchanged."""
        degenerate = self._degenerate(embeddings, model_inputs)
        return self._ranked(set_query(embeddings, weights), k, min_score, where, degenerate)

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
        return self._ranked(query, k, min_score, where, exclude=item_id)

    def _ranked(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        min_score: float | None,
        where: AttributeFilter | None = None,
        degenerate: bool = False,
        exclude: str | None = None,
    ) -> list[SearchHit]:
        """The top ``k`` items for one ``(1, D)`` unit-norm query, ``score >= min_score``,
        among those matching ``where`` (the index's filter terms: ``store/item_attributes.py``)
        and other than ``exclude``, with their evidence and verdicts.

        The index proposes the top ``M = max(k, rerank_candidates)`` (two_stage; ``k`` in
        centroid mode), exact with ties by item id; their images re-rank them by the fused
        score (``index/two_stage_fusion.py``), ties by item id again. ``exclude`` (the item
        itself, for neighbours) is searched one deeper and dropped: the top ``M + 1`` of all
        items hold the top ``M`` of the others, whatever the ties."""
        terms = where.terms if where is not None and where.terms else None
        two_stage = self.ranking is RankMode.TWO_STAGE
        m = max(k, self.rerank_candidates) if two_stage else k
        depth = m + (1 if exclude is not None else 0)
        with self.metrics.stage("index_search"):
            (hits,) = self._search_index(query, depth, terms)
        # The sampler compares with an unfiltered brute force: filtered searches are not offered
        # (their recall is the index's own, measured by its tests and the bench).
        if self.recall_sampler is not None and terms is None:
            self.recall_sampler.offer(query, depth, hits)
        hits = [h for h in hits if h[0] != exclude][:m]
        if not hits:
            return []
        with self.metrics.stage("rerank"):
            answers = self._second_stage(query[0], hits, degenerate)
        attributes = self.applier.attributes
        out = []
        for hit in answers:
            if min_score is not None and hit.score < min_score:
                continue
            out.append(replace(hit, attributes=attributes.get(hit.item_id)))
            if len(out) == k:
                break
        return out

    def _second_stage(
        self, query: npt.NDArray[np.float32], hits: Sequence[tuple[str, float]], degenerate: bool
    ) -> list[SearchHit]:
        """The candidates ``hits`` (centroid order) for the ``(D,)`` unit ``query``, in answer
        order, with their evidence and verdicts (attributes not yet set)."""
        ids = [item_id for item_id, _ in hits]
        centroid_scores = np.array([score for _, score in hits], dtype=np.float32)  # (M,)
        evidence = self.evidence.candidates(ids)
        images = [
            e.rows if e is not None else _centroid_stand_in(query, centroid_scores[n])
            for n, e in enumerate(evidence)
        ]
        ranking = rank_candidates(
            query, ids, centroid_scores, images, mode=self.ranking, alpha=DEFAULT_ALPHA
        )
        counts = np.array([self._image_count(i, e) for i, e in zip(ids, evidence, strict=True)])
        # An unknown spread is judged as a one-image item's, by the rule's prior.
        known = [e is not None and e.spread is not None for e in evidence]
        rule_counts = np.where(known, counts, 1).astype(np.int64)
        spreads = np.array(
            [e.spread if e is not None and e.spread is not None else 1.0 for e in evidence]
        )
        order = ranking.items
        # A tight item (mu near 1) far below its expectation sends the logistic's exp past
        # float64: the confidence is then 0, as it should be.
        with np.errstate(over="ignore"):
            verdict = match_confidence(
                ranking.centroid_score,
                ranking.image_score,
                rule_counts[order],
                spreads[order],
                degenerate_query=degenerate,
            )
        two_stage = self.ranking is RankMode.TWO_STAGE
        scores = ranking.fused_score if two_stage else ranking.centroid_score
        answers = []
        for rank, n in enumerate(order.tolist()):
            e = evidence[n]
            best = e.image_ids[int(ranking.best_image[rank])] if e is not None else None
            answers.append(
                SearchHit(
                    item_id=ids[n],
                    score=float(scores[rank]),
                    best_image_id=best,
                    image_score=float(ranking.image_score[rank]),
                    image_count=int(counts[n]),
                    centroid_score=float(ranking.centroid_score[rank]),
                    match=bool(verdict.match[rank]),
                    confidence=float(verdict.confidence[rank]),
                )
            )
        return answers

    def _image_count(self, item_id: str, evidence: CandidateEvidence | None) -> int:
        if evidence is not None:
            return evidence.image_count
        count = self.evidence.count_of(item_id)
        return count if count is not None else 0

    def _degenerate(
        self, embeddings: npt.NDArray[np.float32], model_inputs: npt.NDArray[np.uint8] | None
    ) -> bool:
        """Whether every file of a query is degenerate (``index/match_confidence.py``): a set
        with one real photo among blank ones still has something to match."""
        uniform = self._uniform_embeddings()
        return all(
            is_degenerate(
                embeddings[n],
                uniform,
                model_input=model_inputs[n] if model_inputs is not None else None,
            )
            for n in range(embeddings.shape[0])
        )

    def _uniform_embeddings(self) -> npt.NDArray[np.float32]:
        """``(27, D)`` raw embeddings of uniform-colour images, made by this model once per
        process (27 model calls: about 3 s for the default model on 2 busy cores)."""
        if self._uniform is None:
            spec = self.embedder.spec
            key = (spec.model_name, spec.model_version, spec.embedding_dim, spec.height, spec.width)
            with _UNIFORM_LOCK:
                if key not in _UNIFORM_EMBEDDINGS:
                    inputs = uniform_inputs(spec.height, spec.width)
                    _UNIFORM_EMBEDDINGS[key] = self.embedder.embed(inputs)
                self._uniform = _UNIFORM_EMBEDDINGS[key]
        return self._uniform

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
            "image_embeddings": self.evidence.info(),
            "ranking": {
                "mode": self.ranking.value,
                "candidates": self.rerank_candidates,
                "alpha": DEFAULT_ALPHA,
            },
        }

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()
        if self.recall_sampler is not None:
            self.recall_sampler.close()
        self.reconciler.close()
        self.evidence.close()
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

    def _apply_committed(self, state: ItemState, images: ImageChange | None = None) -> bool:
        """Bring the index to the state a write just committed (``images``: what it did to the
        item's images); True (``index_pending``) if a shared index could not take it now, the
        item then being marked for the reconciler."""
        try:
            self.applier.apply(state, reread=self.store.get_item_state, images=images)
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
                referenced = self._referenced(h)
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
                if not self._referenced(h):
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


def _centroid_stand_in(
    query: npt.NDArray[np.float32], centroid_score: float
) -> npt.NDArray[np.float32]:
    """A ``(1, D)`` row whose dot with the unit ``query`` is ``centroid_score``: an item whose
    images could not be read scores its centroid as its image score."""
    return (np.float32(centroid_score) * query).reshape(1, -1).astype(np.float32)


@contextmanager
def _blame(i: int, name: str, total: int) -> Iterator[None]:
    """Prefix decode errors with which upload failed, keeping their type (and HTTP status)."""
    try:
        yield
    except (ImageDecodeError, ImageTooLargeError) as exc:
        where = f"images[{i}] ({name!r})" if total > 1 else f"{name!r}"
        raise type(exc)(f"{where}: {exc}") from exc
