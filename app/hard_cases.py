"""The gallery's hard cases, exported as a folder dataset for review or the next fine-tuning.

Three kinds, all computed from the store's embeddings and running sums (no model call) with a
flat index of every item's centroid built here, over each item's *counted* images (a
quarantined image, ``ImageRecord.quarantined``, is in no sum, so "its item without it" would be
wrong and it is no query; ``HardCases.images`` counts the counted images):

* **confusable pairs**: the item pairs with the most similar centroids (each item's nearest
  other item; a pair counted once), the ``pairs`` highest by cosine;
* **suspects**: the quality gate's verdicts on every counted image (``app/suspect_review.py``,
  the rule of ``index/suspect_images.py`` with the service's settings);
* **leave-one-out misses**: images whose own item, its centroid formed without them, is not
  the nearest: ``GET /quality``'s ranks (``index/leave_one_out.py``: another item scoring at
  least as high ranks first), with the item that beat it (the nearest other centroid).

And a fourth, listed rather than computed: **quarantined** images, every one the store holds
out of its item's sums (the quality gate's or an operator's decision), exported in a category
of their own so a reviewer can release or delete them; their item counts as named.

Written under ``out``:

* ``dataset/<item_id>/<image_id>.<ext>``: every counted image of every item a hard case
  names, the suspects left out (a folder dataset in the ``ROOT/<item>/<image>`` layout
  ``model.train``'s ``folder`` data reads; quarantined images are suspected mislabels, never
  training data);
* ``suspects/<item_id>/<image_id>.<ext>``: the flagged images, for review;
* ``quarantined/<item_id>/<image_id>.<ext>``: the quarantined images, for review;
* ``hard_cases.json``: the three lists with their scores, the quarantined image ids by item,
  and images whose blob was missing.

Originals come from the blob backend; the extension follows the sniffed format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.gallery_quality import index_centroids
from app.routes.images import media_type_of
from app.suspect_review import SuspectReview, judge_against, rival_scores
from app.suspect_sweep import ITEM_CHUNK, judged_chunks
from index.centroid_math import centroid_from_sum
from index.flat_centroid_index import FlatCentroidIndex
from index.leave_one_out import leave_one_out_ranks
from index.suspect_images import SuspectRule
from store.blob_backend import BlobBackend
from store.records import ImageRecord, ItemState, SuspectImage
from store.store import Store

DEFAULT_PAIRS = 50
EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
}


@dataclass(frozen=True)
class ConfusablePair:
    item_a: str  # the smaller id of the two
    item_b: str
    cosine: float  # between their centroids


@dataclass(frozen=True)
class LeaveOneOutMiss:
    item_id: str
    image_id: str
    own_score: float  # cosine to its item's centroid formed without it
    beaten_by: str | None
    beaten_score: float


@dataclass
class HardCases:
    pairs: list[ConfusablePair] = field(default_factory=list)
    suspects: dict[str, list[SuspectImage]] = field(default_factory=dict)
    misses: list[LeaveOneOutMiss] = field(default_factory=list)
    items: int = 0
    images: int = 0  # counted images (in their items' sums)
    # Item -> its quarantined image ids, enrollment order (items holding none are absent).
    quarantined: dict[str, list[str]] = field(default_factory=dict)

    @property
    def quarantined_images(self) -> int:
        return sum(len(ids) for ids in self.quarantined.values())

    def named_items(self) -> set[str]:
        named = {p.item_a for p in self.pairs} | {p.item_b for p in self.pairs}
        named |= set(self.quarantined)
        return named | set(self.suspects) | {m.item_id for m in self.misses}


def find_hard_cases(store: Store, rule: SuspectRule, pairs: int = DEFAULT_PAIRS) -> HardCases:
    """The gallery's hard cases (module docstring); every item's centroid is held in memory."""
    states = [s for s in store.iter_item_states() if s.count > 0]
    if not states:
        return HardCases()
    dim = int(states[0].embedding_sum.shape[0])
    index = FlatCentroidIndex(dim)
    index.rebuild((s.item_id, centroid_from_sum(s.embedding_sum)) for s in states)
    found = HardCases(items=len(states), images=sum(s.count for s in states))
    best: dict[tuple[str, str], float] = {}
    for s in states:
        centroid = centroid_from_sum(s.embedding_sum).reshape(1, -1)
        ids, scores = rival_scores(index, s.item_id, centroid)
        other = ids[0]
        if other is not None:
            a, b = sorted((s.item_id, other))
            best[(a, b)] = float(scores[0])
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:pairs]
    found.pairs = [ConfusablePair(a, b, score) for (a, b), score in ranked]
    # Judged and ranked over the counted images only: the states' sums are theirs.
    for chunk in judged_chunks(store, states, SuspectReview(index, rule)):
        for item_id, records in chunk.stored.items():
            held_out = [r.image_id for r in records if r.quarantined]
            if held_out:
                found.quarantined[item_id] = held_out
        found.suspects.update({i: list(s) for i, s in chunk.suspects.items()})
        judged = [s for s in chunk.states if len(chunk.counted[s.item_id]) >= 2]
        found.misses += _misses(index, judged, chunk.counted)
    return found


def _misses(
    index: FlatCentroidIndex,
    states: Sequence[ItemState],
    images: dict[str, list[ImageRecord]],
) -> list[LeaveOneOutMiss]:
    """The images of ``states``' items (``images``: their counted ones) whose own item, its
    centroid formed without them, does not rank first: ``GET /quality``'s leave-one-out ranks
    (``index/leave_one_out.py``, ties against the image), with the item that beat each (the
    nearest other centroid)."""
    if not states:
        return []
    records = [r for s in states for r in images[s.item_id]]
    queries = np.stack([np.asarray(r.embedding, dtype=np.float32) for r in records])
    owners = np.array([n for n, s in enumerate(states) for _ in images[s.item_id]], dtype=np.int64)
    ranks = leave_one_out_ranks(
        queries,
        owners,
        [s.item_id for s in states],
        np.stack([s.embedding_sum for s in states]),
        np.array([len(images[s.item_id]) for s in states], dtype=np.int64),
        index_centroids(index) or (),
    )
    missed = np.flatnonzero(ranks > 1)
    out = []
    for code in np.unique(owners[missed]).tolist():
        state = states[code]
        rows = missed[owners[missed] == code]
        # One search for the item's missed images, and their own scores by the gate's formula.
        rival_ids, rival = rival_scores(index, state.item_id, queries[rows])
        own = judge_against(state, queries[rows], rival, SuspectRule()).own
        for j, n in enumerate(rows.tolist()):
            out.append(
                LeaveOneOutMiss(
                    state.item_id, records[n].image_id, float(own[j]), rival_ids[j], float(rival[j])
                )
            )
    return out


@dataclass(frozen=True)
class ExportReport:
    dataset_images: int
    suspect_images: int
    missing_blobs: list[str]
    quarantined_images: int = 0  # written under quarantined/


def export_hard_cases(
    store: Store, blobs: BlobBackend, cases: HardCases, out: Path
) -> ExportReport:
    """Write ``cases`` under ``out`` (must not exist or be empty; module docstring)."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    suspect_ids = {s.image_id for flagged in cases.suspects.values() for s in flagged}
    quarantined_ids = {i for ids in cases.quarantined.values() for i in ids}
    named = sorted(cases.named_items())
    missing: list[str] = []
    written = suspects = held_out = 0
    for start in range(0, len(named), ITEM_CHUNK):
        chunk = named[start : start + ITEM_CHUNK]
        for item_id, records in store.item_images(chunk).items():
            for record in records:
                data = blobs.get(record.content_hash)
                if data is None:
                    missing.append(record.image_id)
                    continue
                name = record.image_id + EXTENSIONS.get(media_type_of(data), ".bin")
                # Quarantined when the cases were found (the manifest's list) or since: a
                # suspected mislabel never lands in the training folder.
                if record.quarantined or record.image_id in quarantined_ids:
                    folder = "quarantined"
                    held_out += 1
                elif record.image_id in suspect_ids:
                    folder = "suspects"
                    suspects += 1
                else:
                    folder = "dataset"
                    written += 1
                target = out / folder / item_id / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
    manifest: dict[str, Any] = {
        "items": cases.items,
        "images": cases.images,
        "confusable_pairs": [asdict(p) for p in cases.pairs],
        "suspects": {
            item_id: [asdict(s) for s in flagged] for item_id, flagged in cases.suspects.items()
        },
        "leave_one_out_misses": [asdict(m) for m in cases.misses],
        "quarantined": cases.quarantined,
        "missing_blobs": missing,
    }
    (out / "hard_cases.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return ExportReport(written, suspects, missing, held_out)
