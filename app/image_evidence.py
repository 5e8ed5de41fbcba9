"""What a search's second stage needs of its candidate items, kept in step with the index.

Per candidate item: its image ids and unit image rows (for ``best_image_id``, ``image_score``
and the two-stage re-ranking, ``index/two_stage_fusion.py``) and its spread (for ``match`` and
``confidence``, ``index/match_confidence.py``). Three modes, stated by ``/info``:

* ``memory``: the rows are held here (``index/image_embeddings.py``, float16), within
  ``budget_bytes``; the spread comes from each item's ``unit_sum`` as the store's states carry
  it (kept here per item, ~100 B), or, where no state told it (after a snapshot load), from the
  held rows and the centroid.
* ``warming``: after a rebuild or a snapshot load, the rows are being read from the store in
  the background (``Store.iter_images``); searches meanwhile read their candidates' images
  from the store (one round trip per search). Writes during the fill are re-read from the
  store once it is done.
* ``store``: every search reads its candidates' images from the store, one round trip
  (``Store.item_images``): over the budget (set 0 to always be here), and with a shared
  (Milvus) index, whose items other replicas write.

Reading from the store, the spread is computed from the raw embeddings read (the same value
``store/item_spread.py`` gives from the sums). An item whose images cannot be had (the store
unreachable, the item deleted since the index proposed it) falls back to its centroid as its
only evidence: ``best_image_id`` None, ``image_score`` the centroid score.

Only an item's *counted* images are evidence: a quarantined image (``ImageRecord.quarantined``,
``store/write_plan.py``) is kept in the store and listed with its item, but it is out of the
item's sums, so it is out of its evidence too. Every store read here (the fill, the re-read of
one item, the store-mode reads of candidates) skips it: ``best_image_id`` never names one, and
what is held for an item has its ``ItemState.count`` images (what :meth:`ImageEvidence.holds`
checks). This replica's writes pass only the images they counted in their ``ImageChange``.

Kept in step by :class:`~app.index_applier.IndexApplier`, which calls :meth:`applied` and
:meth:`dropped` with the item lock held, after the index took a state: from this replica's
writes (with the images they added or removed, so no store read), and from the change feed and
the reconciler (their states carry no images: the item's are re-read from the store).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.striped_lock import StripedLock
from index.image_embeddings import ImageEmbeddings, ItemImages, unit_rows
from store.errors import StoreError
from store.item_spread import item_spread
from store.records import ImageRecord, ItemState
from store.store import Store

log = logging.getLogger(__name__)

MEMORY, WARMING, STORE = "memory", "warming", "store"
# Between attempts of a fill the store refused.
WARM_RETRY_S = 5.0


@dataclass(frozen=True)
class ImageChange:
    """What one of this replica's writes did to an item's images: ``added`` image ids with
    their ``(n, D)`` raw embeddings, ``removed`` image ids."""

    added_ids: Sequence[str] = ()
    added: npt.NDArray[np.float32] | None = None
    removed: Sequence[str] = ()


@dataclass(frozen=True)
class CandidateEvidence:
    """One candidate's images: ``image_ids`` with their ``(n, D)`` unit ``rows`` (float16 from
    memory, float32 from the store), its ``spread`` (mean cosine of its images to its
    centroid; None: unknown) and ``image_count``. ``image_ids`` empty: the images could not be
    had, ``rows`` is then the ``(1, D)`` centroid."""

    image_ids: tuple[str, ...]
    rows: npt.NDArray[np.floating]
    spread: float | None
    image_count: int

    @property
    def known(self) -> bool:
        return bool(self.image_ids)


@dataclass
class _Fill:
    """One background fill's state; a newer fill (a later rebuild) replaces it."""

    generation: int
    dirty: set[str] = field(default_factory=set)


class ImageEvidence:
    def __init__(
        self,
        *,
        store: Store,
        dim: int,
        budget_bytes: int,
        item_locks: StripedLock,
        keep_in_memory: bool = True,
        centroid_of: Callable[[str], npt.NDArray[np.float32] | None] | None = None,
    ) -> None:
        self._store = store
        self.dim = dim
        self.budget_bytes = max(0, budget_bytes)
        self._item_locks = item_locks
        # Neither a shared index (other replicas write its items) nor a zero budget holds rows.
        self._may_hold = keep_in_memory and self.budget_bytes > 0
        self._centroid_of = centroid_of
        self._images = ImageEmbeddings(dim)
        self._mode = WARMING if self._may_hold else STORE
        # Items held rows may not show (a re-read that failed, a fill's writes not re-read
        # yet): their candidates are read from the store.
        self._stale: set[str] = set()
        self._spreads: dict[str, tuple[int, float | None]] = {}  # item -> (count, spread)
        self._fill: _Fill | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    def memory_bytes(self) -> int:
        return self._images.memory_bytes() if self._mode == MEMORY else 0

    def info(self) -> dict[str, int | str]:
        """``/info``'s ``image_embeddings``."""
        return {
            "mode": self._mode,
            "bytes": self.memory_bytes(),
            "budget_bytes": self.budget_bytes,
            "items": len(self._images) if self._mode == MEMORY else 0,
            "images": self._images.image_count if self._mode == MEMORY else 0,
        }

    # -- kept in step (item lock held) -------------------------------------------------------

    def applied(self, state: ItemState, change: ImageChange | None = None) -> None:
        """The index took ``state`` (its newest); ``change``: what this replica's write did to
        its images (None: re-read them from the store)."""
        item_id = state.item_id
        if state.count == 0:
            self.dropped(item_id)
            return
        with self._lock:
            self._spreads[item_id] = (state.count, item_spread(state))
            mode, fill = self._mode, self._fill
            if mode == WARMING and fill is not None:
                fill.dirty.add(item_id)
        if mode != MEMORY:
            return
        if change is not None and item_id not in self._stale:
            if change.removed:
                self._images.remove_images(item_id, change.removed)
            if change.added_ids and change.added is not None:
                self._images.add_images(item_id, change.added_ids, change.added)
            if self._images.count(item_id) == state.count:
                self._check_budget()
                return
        self._reread(item_id)
        self._check_budget()

    def holds(self, state: ItemState) -> bool:
        """Whether what is held for ``state``'s item agrees with it (its image count; nothing
        to hold outside memory mode): the reconciler's check, re-read by :meth:`applied`
        otherwise."""
        if self._mode != MEMORY or state.count == 0:
            return True
        return state.item_id not in self._stale and self._images.count(state.item_id) == state.count

    def dropped(self, item_id: str) -> None:
        """The index holds no ``item_id`` any more."""
        with self._lock:
            self._spreads.pop(item_id, None)
            self._stale.discard(item_id)
            if self._fill is not None:
                self._fill.dirty.add(item_id)
        self._images.remove_item(item_id)

    def rebuilt(self, states: Sequence[tuple[str, int, float | None]] | None) -> None:
        """The index was replaced (a rebuild: every item's ``(id, count, spread)``; a snapshot
        load: None, not known). Held rows are refilled from the store in the background."""
        with self._lock:
            self._spreads = {} if states is None else {i: (n, s) for i, n, s in states}
            self._generation += 1
            if not self._may_hold:
                return
            self._mode = WARMING
            self._stale = set()
            self._fill = _Fill(self._generation)
            generation = self._generation
        self._images = ImageEmbeddings(self.dim)
        self._thread = threading.Thread(
            target=self._run_fill, args=(generation,), name="image-evidence-fill", daemon=True
        )
        self._thread.start()

    def wait_filled(self, timeout: float | None = None) -> bool:
        """For tests and benches: wait for the background fill; True once it is over."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._mode != WARMING

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- reads ------------------------------------------------------------------------------

    def candidates(self, item_ids: Sequence[str]) -> list[CandidateEvidence | None]:
        """Per item id, its evidence (None: none to be had; the caller uses its centroid)."""
        out: list[CandidateEvidence | None] = [None] * len(item_ids)
        from_store: list[int] = []
        if self._mode == MEMORY:
            images, stale = self._images, self._stale
            for n, item_id in enumerate(item_ids):
                held = images.get(item_id)
                if held is None or item_id in stale:
                    from_store.append(n)
                    continue
                spread = self._spreads.get(item_id, (0, None))[1]
                if spread is None:
                    spread = self._spread_from_rows(item_id, held.rows)
                out[n] = CandidateEvidence(held.image_ids, held.rows, spread, len(held.image_ids))
        else:
            from_store = list(range(len(item_ids)))
        if from_store:
            wanted = [item_ids[n] for n in from_store]
            try:
                records = self._store.item_images(wanted)
            except StoreError as exc:
                log.warning("candidates' images not read (%s): centroids only", exc)
                return out
            for n in from_store:
                out[n] = evidence_from_records(records.get(item_ids[n], []))
        return out

    def held(self, item_id: str) -> ItemImages | None:
        """The rows held in memory for ``item_id`` (None: none, or not in memory mode)."""
        return self._images.get(item_id) if self._mode == MEMORY else None

    def held_item_ids(self) -> list[str]:
        return self._images.item_ids() if self._mode == MEMORY else []

    def count_of(self, item_id: str) -> int | None:
        held = self._spreads.get(item_id)
        return None if held is None else held[0]

    # -- internals --------------------------------------------------------------------------

    def _spread_from_rows(self, item_id: str, rows: npt.NDArray[np.floating]) -> float | None:
        """Mean cosine of the held unit rows to the index's centroid (no state told it)."""
        if len(rows) == 1:
            return 1.0
        centroid = self._centroid_of(item_id) if self._centroid_of is not None else None
        if centroid is None:
            return None
        return float(np.mean(rows.astype(np.float32) @ centroid.astype(np.float32)))

    def _reread(self, item_id: str) -> None:
        """The item's images as the store holds them now, into memory (item lock held)."""
        try:
            records = counted(self._store.item_images([item_id]).get(item_id, []))
        except StoreError as exc:
            log.warning("images of item %r not re-read (%s): read per search", item_id, exc)
            with self._lock:
                self._stale.add(item_id)
            return
        if records:
            self._images.set_item(
                item_id, [r.image_id for r in records], np.stack([r.embedding for r in records])
            )
        else:
            self._images.remove_item(item_id)
        with self._lock:
            self._stale.discard(item_id)

    def _check_budget(self) -> None:
        if self._images.memory_bytes() <= self.budget_bytes:
            return
        with self._lock:
            if self._mode != MEMORY:
                return
            self._mode = STORE
        log.warning(
            "per-image embeddings over their budget (%d bytes): read from the store per search "
            "from now on (RETRIEVAL_IMAGE_EMBEDDINGS_BUDGET_MB)",
            self.budget_bytes,
        )
        self._images = ImageEmbeddings(self.dim)

    def _run_fill(self, generation: int) -> None:
        """Until a fill is over (done, superseded or over the budget); searches read from the
        store meanwhile, however long the store takes to answer."""
        while not self._stop.is_set():
            try:
                self._fill_once(generation)
                return
            except StoreError as exc:
                log.warning("per-image embeddings fill failed (%s); retrying", exc)
                if self._stop.wait(WARM_RETRY_S):
                    return

    def _fill_once(self, generation: int) -> bool:
        """Read every image from the store into a new structure and put it in place; False if
        a newer fill superseded this one, or it went over the budget (mode ``store``)."""
        per_item: dict[str, tuple[list[str], list[npt.NDArray[np.float16]]]] = {}
        images = 0
        for record in self._store.iter_images():
            if self._stop.is_set() or self._generation != generation:
                return False
            if record.quarantined:  # out of its item's sums, so out of its evidence
                continue
            ids, rows = per_item.setdefault(record.item_id, ([], []))
            ids.append(record.image_id)
            rows.append(unit_rows(record.embedding.reshape(1, -1))[0])
            images += 1
            if ImageEmbeddings.estimate_bytes(self.dim, len(per_item), images) > self.budget_bytes:
                with self._lock:
                    if self._generation == generation:
                        self._mode, self._fill = STORE, None
                log.warning(
                    "per-image embeddings over their budget (%d bytes) at %d images: read from "
                    "the store per search (RETRIEVAL_IMAGE_EMBEDDINGS_BUDGET_MB)",
                    self.budget_bytes,
                    images,
                )
                return False
        fresh = ImageEmbeddings(self.dim)
        for item_id, (ids, rows) in per_item.items():
            fresh.set_item(item_id, ids, np.stack(rows))
        with self._lock:
            if self._generation != generation or self._fill is None:
                return False
            dirty = self._fill.dirty
            self._images, self._fill = fresh, None
            # Written while the fill read: held rows may be older than the store; read those
            # from the store until re-read below.
            self._stale = set(dirty)
            self._mode = MEMORY
        for item_id in dirty:
            with self._item_locks.hold([item_id]):
                if item_id in self._stale:
                    self._reread(item_id)
        self._check_budget()
        log.info("per-image embeddings in memory: %d images of %d items", images, len(fresh))
        return True


def evidence_from_records(records: Sequence[ImageRecord]) -> CandidateEvidence | None:
    """An item's evidence from its stored images (raw embeddings): unit rows, and the spread
    ``mean_j cos(e_j, normalize(sum_j e_j))`` as the store's sums give it, over its counted
    images only (its quarantined ones are in no sum); None when it has none."""
    records = counted(records)
    if not records:
        return None
    raw = np.stack([r.embedding for r in records]).astype(np.float64)  # (n, D)
    rows = unit_rows(raw).astype(np.float32)
    total = raw.sum(axis=0)
    norm = float(np.linalg.norm(total))
    spread = None
    if norm > 0:
        unit = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-300)
        spread = float(np.mean(unit @ (total / norm)))
    return CandidateEvidence(tuple(r.image_id for r in records), rows, spread, len(records))


def counted(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    """The images of ``records`` in their item's sums (its quarantined ones left out), in
    order."""
    return [r for r in records if not r.quarantined]
