"""The per-image evidence leaves quarantined images out on every store read (real SQLite store,
tiny artifact, real photos): the background fill, the re-read of one item, the store-mode reads
of candidates. Each item holds a stray view of another photo, quarantined at enrollment: its
own item's evidence must not show it, though it is the best match of a query of that photo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.image_evidence import MEMORY, STORE, ImageEvidence, evidence_from_records
from app.striped_lock import StripedLock
from artifact.image_decode import preprocess_bytes
from store.item_spread import item_spread
from store.records import ItemState
from tests.quarantine_gallery import QuarantineGallery, opened_stray_gallery

NAMES = ("astronaut", "chelsea", "coffee", "rocket")


@pytest.fixture
def gallery(
    tmp_path: Path, tiny_model_path: Path, photo_views: dict[str, list[bytes]]
) -> Iterator[tuple[QuarantineGallery, dict[str, str]]]:
    with opened_stray_gallery(tmp_path, tiny_model_path, photo_views, NAMES) as opened:
        yield opened


def evidence_of(g: QuarantineGallery, budget_bytes: int) -> ImageEvidence:
    states = list(g.store.iter_item_states())
    evidence = ImageEvidence(
        store=g.store, dim=g.dim, budget_bytes=budget_bytes, item_locks=StripedLock()
    )
    evidence.rebuilt([(s.item_id, s.count, item_spread(s)) for s in states])
    assert evidence.wait_filled(timeout=30)
    return evidence


def states_of(g: QuarantineGallery) -> dict[str, ItemState]:
    return {s.item_id: s for s in g.store.iter_item_states()}


def assert_counted_only(
    g: QuarantineGallery, evidence: ImageEvidence, strays: dict[str, str]
) -> None:
    states = states_of(g)
    found = evidence.candidates(list(NAMES))
    for item_id, e in zip(NAMES, found, strict=True):
        assert e is not None
        state = states[item_id]
        assert strays[item_id] not in e.image_ids
        assert e.image_ids == tuple(r.image_id for r in g.counted(item_id))
        assert e.image_count == len(e.rows) == state.count == 3
        assert evidence.count_of(item_id) == state.count
        assert evidence.holds(state)
        expected = item_spread(state)
        assert e.spread is not None and expected is not None
        assert e.spread == pytest.approx(expected, abs=1e-5)


def best_for(evidence: ImageEvidence, item_id: str, query: np.ndarray) -> str:
    """The image a two-stage search names best for ``item_id``: its row nearest ``query``."""
    e = evidence.candidates([item_id])[0]
    assert e is not None and e.known
    q = query / np.linalg.norm(query)
    return e.image_ids[int(np.argmax(e.rows.astype(np.float32) @ q.astype(np.float32)))]


def test_the_fill_and_a_reread_hold_counted_images_only(
    gallery: tuple[QuarantineGallery, dict[str, str]], photo_views: dict[str, list[bytes]]
) -> None:
    g, strays = gallery
    evidence = evidence_of(g, 10**9)
    try:
        assert evidence.mode == MEMORY
        assert evidence.info()["images"] == 12  # 16 stored, 4 quarantined
        assert_counted_only(g, evidence, strays)
        # A query of the stray's own photo: among astronaut's stored images the stray (a
        # chelsea view) is the nearest; among its counted ones it is not there to be named.
        chelsea = g.embedder.embed(
            np.stack([preprocess_bytes(photo_views["chelsea"][5], g.embedder.spec)])
        )[0]
        stored = g.store.item_images(["astronaut"])["astronaut"]
        nearest = max(
            stored, key=lambda r: float(r.embedding @ chelsea) / np.linalg.norm(r.embedding)
        )
        assert nearest.image_id == strays["astronaut"]  # the test shows what it claims
        assert best_for(evidence, "astronaut", chelsea) != strays["astronaut"]
        # A write from elsewhere (no image change): the item is re-read from the store. The
        # stray released, then another view quarantined: both times the held rows follow.
        released = g.store.set_image_quarantine("astronaut", strays["astronaut"], False)
        evidence.applied(released)
        held = evidence.held("astronaut")
        assert held is not None and strays["astronaut"] in held.image_ids
        assert evidence.holds(released) and len(held.image_ids) == released.count == 4
        first = g.counted("astronaut")[0].image_id
        again = g.store.set_image_quarantine("astronaut", first, True)
        evidence.applied(again)
        held = evidence.held("astronaut")
        assert held is not None and first not in held.image_ids
        assert evidence.holds(again) and len(held.image_ids) == again.count == 3
        assert evidence.count_of("astronaut") == 3
    finally:
        evidence.close()


def test_store_reads_of_candidates_skip_quarantined_images(
    gallery: tuple[QuarantineGallery, dict[str, str]],
) -> None:
    g, strays = gallery
    evidence = evidence_of(g, 0)  # no budget: every search reads the store
    try:
        assert evidence.mode == STORE
        assert_counted_only(g, evidence, strays)
    finally:
        evidence.close()
    records = g.store.item_images(["coffee"])["coffee"]
    assert [r.image_id for r in records if r.quarantined] == [strays["coffee"]]
    e = evidence_from_records(records)
    assert e is not None and strays["coffee"] not in e.image_ids and e.image_count == 3
    assert evidence_from_records([r for r in records if r.quarantined]) is None
