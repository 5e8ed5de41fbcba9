"""The enrollment quality gate on real photos: does it find planted mislabels, and does
quarantining what it flags give the clean gallery's retrieval back?

For each folder of ``bench.answers`` (the shipped photos, their 2×2 quarters, the quarters
cropped harder; 4 gallery views per item) and each view seed, ``--plant`` (5 %) of the gallery
images are moved to a random wrong item. Every gallery image is then judged by
``index.suspect_images.judge_images`` against the mislabelled gallery (its own item's centroid
formed without it, the nearest other centroid by brute force here) and the flags compared
with the planted set: precision and recall, per rule and for the gate (either rule), with
``--margin`` swept. Then the folder's query views (other views than the gallery's) are ranked
by centroid against four galleries: clean, mislabelled, mislabelled with exactly the planted
images removed (the best a quarantine can do: their true items keep one view fewer), and
mislabelled with the flagged images quarantined (left out of their items' sums): R@1 of each.
A second mode, ``foreign``, enrolls no image of 10 % of the items and plants that many of
their images under enrolled items instead (a mislabel whose true item the gallery does not
know: the spread rule's case); the targets are checked on the first (``swap``).

The judgement above sees the whole gallery at once. The service judges each enrollment when
it arrives, against what is enrolled then, and quarantines what it flags
(``RETRIEVAL_QUARANTINE_SUSPECTS``). So, at the default margin, the mislabelled gallery is
also enrolled through that path — a real SQLite store with the quality gate as its
enrollment judge (``app.suspect_review``) and a flat centroid index kept in step — in a
shuffled order, once one image per request and once one request per item with all its
images (a catalogue upload): the precision and recall of what it quarantined, and the R@1
of the store's own centroids (the "served" rows); then the sweep the service runs on demand
(``app.suspect_sweep``, ``POST /admin/quarantine-suspects?quarantine=true&release=true``:
the flagged quarantined, the quarantined the gate no longer flags counted again) over that
gallery, and the same figures after it ("+ sweep").

Targets (issue 13): precision >= 0.8 and recall >= 0.8; R@1 after quarantine within 0.01 of
the clean gallery.

Run: ``.venv/bin/python -m bench.quality_gate [--seeds 1 2 3] [--cache DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.suspect_review import SuspectReview
from app.suspect_sweep import sweep_suspects
from artifact.onnx_embedder import OnnxEmbedder
from bench.answer_folders import EmbeddedFolder, cached_folder, model_digest
from bench.answers import DEFAULT_FOLDERS, DEFAULT_MODEL, recipes
from index.centroid_math import centroid_from_sum, l2_normalize
from index.flat_centroid_index import FlatCentroidIndex
from index.suspect_images import DEFAULT_MARGIN, NO_OTHER, SuspectRule, judge_images
from store.records import ModelIdentity, NewImage
from store.sqlite_store import SqliteStore

TARGET_PRECISION = 0.8
TARGET_RECALL = 0.8
TARGET_R1_GAP = 0.01
MARGINS = (0.0, 0.1, 0.2, 0.3, 0.4)
MODES = ("swap", "foreign")
# Items kept out of the gallery in the "foreign" mode.
HELD_OUT = 0.1


def plant_mislabels(
    labels: npt.NDArray[np.int64], items: int, share: float, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``labels`` ``(G,)`` with ``round(share * G)`` (at least one) images moved to a random
    other item: ``(new labels (G,), moved image indices (m,))``."""
    out = labels.copy()
    moved = rng.choice(len(labels), size=max(1, round(share * len(labels))), replace=False)
    for m in moved:
        out[m] = rng.choice([i for i in range(items) if i != labels[m]])
    return out, np.sort(moved)


def item_sums(
    gallery: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    items: int,
    keep: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Running sums, unit sums and counts ``(I, D)``, ``(I, D)``, ``(I,)`` of the kept images."""
    g = gallery.astype(np.float64)[keep]
    lab = labels[keep]
    sums = np.zeros((items, gallery.shape[1]))
    unit_sums = np.zeros_like(sums)
    counts = np.zeros(items, dtype=np.int64)
    np.add.at(sums, lab, g)
    np.add.at(unit_sums, lab, l2_normalize(g).astype(np.float64))
    np.add.at(counts, lab, 1)
    return sums, unit_sums, counts


def nearest_other(
    gallery: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    centroids: npt.NDArray[np.float32],
    present: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float64]:
    """``(G,)`` each image's best cosine to a centroid of another present item (brute force)."""
    scores = l2_normalize(gallery).astype(np.float64) @ centroids.astype(np.float64).T
    scores[:, ~present] = -np.inf
    scores[np.arange(len(labels)), labels] = -np.inf
    best = scores.max(axis=1)
    out: npt.NDArray[np.float64] = np.where(np.isfinite(best), best, NO_OTHER)
    return out


def r_at_1(
    queries: npt.NDArray[np.float32],
    query_items: npt.NDArray[np.int64],
    sums: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
) -> float:
    """Centroid R@1 of ``queries`` against items with at least one image (ties by index)."""
    present = counts > 0
    scores = l2_normalize(queries).astype(np.float64) @ l2_normalize(sums).astype(np.float64).T
    scores[:, ~present] = -np.inf
    return float(np.mean(scores.argmax(axis=1) == query_items))


@dataclass(frozen=True)
class GateRow:
    folder: str
    mode: str
    seed: int
    planted: int
    margin: float
    flagged: int
    closer_flags: int
    spread_flags: int
    precision: float
    recall: float
    r1_clean: float
    r1_mislabelled: float
    r1_planted_removed: float
    r1_quarantined: float


def planted_gallery(
    folder: EmbeddedFolder, mode: str, share: float, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_], set[int]]:
    """The mislabelled gallery: ``(labels (G,), enrolled (G,) bool, clean (G,) bool, planted
    image indices)``. ``swap``: ``share`` of the images moved to a random wrong item, whose
    own item keeps its other images. ``foreign``: ``HELD_OUT`` of the items are not enrolled
    at all and ``share`` as many images as the gallery holds are taken from them and enrolled
    under random enrolled items (a mislabel whose true item is unknown to the gallery)."""
    items = len(folder.items)
    if mode == "swap":
        labels, moved = plant_mislabels(folder.gallery_item, items, share, rng)
        enrolled = np.ones(len(labels), dtype=bool)
        return labels, enrolled, enrolled.copy(), set(moved.tolist())
    held = rng.choice(items, size=max(1, round(HELD_OUT * items)), replace=False)
    out_of_gallery = np.isin(folder.gallery_item, held)
    clean = ~out_of_gallery
    kept = [i for i in range(items) if i not in set(held.tolist())]
    count = min(int(out_of_gallery.sum()), max(1, round(share * clean.sum())))
    moved = rng.choice(np.flatnonzero(out_of_gallery), size=count, replace=False)
    labels = folder.gallery_item.copy()
    labels[moved] = rng.choice(kept, size=count)
    enrolled = clean.copy()
    enrolled[moved] = True
    return labels, enrolled, clean, set(moved.tolist())


def gate_rows(
    folder: EmbeddedFolder, mode: str, seed: int, share: float, margins: Sequence[float]
) -> list[GateRow]:
    items = len(folder.items)
    rng = np.random.default_rng(seed)
    labels, enrolled, clean, planted = planted_gallery(folder, mode, share, rng)
    sums, unit_sums, counts = item_sums(folder.gallery, labels, items, enrolled)
    other = nearest_other(folder.gallery, labels, l2_normalize(sums), counts > 0)
    clean_sums, _, clean_counts = item_sums(folder.gallery, folder.gallery_item, items, clean)
    # Queries of enrolled items only: a held-out item's query has no right answer.
    asked = clean_counts[folder.query_item] > 0
    queries, query_items = folder.queries[asked], folder.query_item[asked]
    r1_clean = r_at_1(queries, query_items, clean_sums, clean_counts)
    r1_bad = r_at_1(queries, query_items, sums, counts)
    # The best any quarantine can do: exactly the planted images out (their true items, where
    # enrolled, keep one view fewer than in the clean gallery).
    without = enrolled.copy()
    without[list(planted)] = False
    o_sums, _, o_counts = item_sums(folder.gallery, labels, items, without)
    r1_oracle = r_at_1(queries, query_items, o_sums, o_counts)
    judged = np.flatnonzero(enrolled)
    rows = []
    for margin in margins:
        v = judge_images(
            folder.gallery[judged],
            sums[labels[judged]],
            unit_sums[labels[judged]],
            counts[labels[judged]],
            other[judged],
            SuspectRule(margin=margin),
        )
        flagged = set(judged[v.suspect].tolist())
        hit = len(flagged & planted)
        quarantined = enrolled.copy()
        quarantined[judged[v.suspect]] = False
        q_sums, _, q_counts = item_sums(folder.gallery, labels, items, quarantined)
        rows.append(
            GateRow(
                folder.name,
                mode,
                seed,
                len(planted),
                margin,
                len(flagged),
                int(v.closer_to_other.sum()),
                int(v.outside_spread.sum()),
                hit / len(flagged) if flagged else float("nan"),
                hit / len(planted),
                r1_clean,
                r1_bad,
                r1_oracle,
                r_at_1(queries, query_items, q_sums, q_counts),
            )
        )
    return rows


@dataclass(frozen=True)
class ServedRow:
    """The gallery enrolled through the service's path, quarantine on (see the docstring)."""

    folder: str
    mode: str
    seed: int
    batching: str  # "image": one image per request; "item": one request per item
    planted: int
    quarantined: int
    precision: float
    recall: float
    r1_clean: float
    r1_served: float
    # After a sweep of the served gallery: what is quarantined then, and the R@1.
    swept_quarantined: int
    swept_precision: float
    swept_recall: float
    r1_swept: float


@dataclass(frozen=True)
class ServedGallery:
    """The store's gallery at one moment: the quarantined image indices, and the sums and
    counts per item ``(I, D)`` float64, ``(I,)`` int64."""

    quarantined: set[int]
    sums: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]


def served_quarantine(
    folder: EmbeddedFolder,
    labels: npt.NDArray[np.int64],
    enrolled: npt.NDArray[np.bool_],
    batching: str,
    rng: np.random.Generator,
    rule: SuspectRule,
) -> tuple[ServedGallery, ServedGallery]:
    """Enroll the ``enrolled`` gallery images under ``labels`` into a fresh SQLite store, the
    quality gate judging and quarantining each request, then sweep it (the flagged quarantined,
    the quarantined it no longer flags released); the store's gallery after the enrollments
    and after the sweep."""
    dim = folder.gallery.shape[1]
    items = len(folder.items)
    order = rng.permutation(np.flatnonzero(enrolled))
    if batching == "image":
        requests = [[int(g)] for g in order]
    else:  # one request per item, the items in a shuffled order, their images together
        by_item: dict[int, list[int]] = {}
        for g in order:
            by_item.setdefault(int(labels[g]), []).append(int(g))
        requests = list(by_item.values())
    index = FlatCentroidIndex(dim)
    review = SuspectReview(index, rule, quarantine=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "gate.sqlite3")

        def read_back() -> ServedGallery:
            sums = np.zeros((items, dim))
            counts = np.zeros(items, dtype=np.int64)
            for state in store.iter_item_states():
                sums[int(state.item_id)] = state.embedding_sum
                counts[int(state.item_id)] = state.count
            # The content hash is the gallery index, written as 64 hex digits.
            held = {int(r.content_hash, 16) for r in store.iter_images() if r.quarantined}
            return ServedGallery(held, sums, counts)

        def set_flag(quarantined: bool) -> Callable[[str, str], None]:
            def write(item_id: str, image_id: str) -> None:
                state = store.set_image_quarantine(item_id, image_id, quarantined)
                index.upsert(item_id, centroid_from_sum(state.embedding_sum))

            return write

        try:
            store.claim_model_identity(ModelIdentity("bench-quality-gate", "1", dim))
            for request in requests:
                item_id = str(int(labels[request[0]]))
                embeddings = folder.gallery[request]
                images = [
                    NewImage(f"{g:064x}", e) for g, e in zip(request, embeddings, strict=True)
                ]
                outcome = store.enroll(
                    item_id, images, judge=review.enrollment(item_id, embeddings)
                )
                index.upsert(item_id, centroid_from_sum(outcome.item.embedding_sum))
            served = read_back()
            sweep_suspects(
                store,
                review,
                quarantine=set_flag(True),
                release=set_flag(False),
                judge_quarantined=True,
            )
            return served, read_back()
        finally:
            store.close()


def served_rows(folder: EmbeddedFolder, mode: str, seed: int, share: float) -> list[ServedRow]:
    """The same planted gallery as ``gate_rows`` (same seed), enrolled through the service's
    path at the default margin, both batchings."""
    items = len(folder.items)
    labels, enrolled, clean, planted = planted_gallery(
        folder, mode, share, np.random.default_rng(seed)
    )
    clean_sums, _, clean_counts = item_sums(folder.gallery, folder.gallery_item, items, clean)
    asked = clean_counts[folder.query_item] > 0
    queries, query_items = folder.queries[asked], folder.query_item[asked]
    r1_clean = r_at_1(queries, query_items, clean_sums, clean_counts)

    def figures(g: ServedGallery) -> tuple[int, float, float, float]:
        """Quarantined, precision, recall, R@1."""
        hit = len(g.quarantined & planted)
        return (
            len(g.quarantined),
            hit / len(g.quarantined) if g.quarantined else float("nan"),
            hit / len(planted),
            r_at_1(queries, query_items, g.sums, g.counts),
        )

    rows = []
    for batching in ("image", "item"):
        rng = np.random.default_rng([seed, 1 if batching == "image" else 2])
        served, swept = served_quarantine(
            folder, labels, enrolled, batching, rng, SuspectRule(margin=DEFAULT_MARGIN)
        )
        n, p, r, r1 = figures(served)
        rows.append(
            ServedRow(
                folder.name, mode, seed, batching, len(planted), n, p, r, r1_clean, r1,
                *figures(swept),
            )
        )  # fmt: skip
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.quality_gate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[1, 2, 3], help="view seeds (default 1 2 3)"
    )
    p.add_argument(
        "--plant",
        type=float,
        default=0.05,
        help="share of gallery images mislabelled (default 0.05)",
    )
    p.add_argument(
        "--photos", nargs="+", default=None, help="only these shipped photos (default all 20)"
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="embedding cache directory, as bench.answers --cache",
    )
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[list[GateRow], list[ServedRow]]:
    embedder = OnnxEmbedder(args.model, allow_gpu=False, allow_spinning=False)
    digest = model_digest(embedder) if args.cache is not None else ""
    photos = tuple(args.photos) if args.photos else None
    rows: list[GateRow] = []
    served: list[ServedRow] = []
    for seed in args.seeds:
        for recipe in recipes(DEFAULT_FOLDERS, seed, 4, photos):
            folder = cached_folder(embedder, recipe, args.cache, digest)
            for mode in MODES:
                rows += gate_rows(folder, mode, seed, args.plant, MARGINS)
                served += served_rows(folder, mode, seed, args.plant)
    return rows, served


def print_served(rows: Sequence[ServedRow]) -> None:
    print(
        f"\nserved: enrolled through the store with the gate quarantining at margin "
        f"{DEFAULT_MARGIN}, in a shuffled order (image: one image per request; item: one "
        "request per item); worst and mean over the seeds"
    )
    print(f"{'mode':>7} {'folder':>15} {'batch':>5} {'planted':>7} {'quar.':>5} "
          f"{'P min/mean':>10} {'R min/mean':>10} {'R@1 clean':>9} {'served':>7} "
          f"{'gap max':>7} | + sweep: {'quar.':>5} {'P min/mean':>10} {'R min/mean':>10} "
          f"{'R@1':>7} {'gap max':>7}")  # fmt: skip
    groups: dict[tuple[str, str, str], list[ServedRow]] = {}
    for r in rows:
        groups.setdefault((r.mode, r.folder, r.batching), []).append(r)
    for (mode, folder, batching), g in groups.items():
        p = [r.precision for r in g]
        rc = [r.recall for r in g]
        gap = max(r.r1_clean - r.r1_served for r in g)
        sp = [r.swept_precision for r in g]
        sr = [r.swept_recall for r in g]
        sgap = max(r.r1_clean - r.r1_swept for r in g)
        print(f"{mode:>7} {folder:>15} {batching:>5} {sum(r.planted for r in g):7d} "
              f"{sum(r.quarantined for r in g):5d} {np.nanmin(p):4.2f}/{np.nanmean(p):4.2f} "
              f"{min(rc):5.2f}/{np.mean(rc):4.2f} {np.mean([r.r1_clean for r in g]):9.4f} "
              f"{np.mean([r.r1_served for r in g]):7.4f} {gap:+7.4f} | "
              f"{'':9}{sum(r.swept_quarantined for r in g):5d} "
              f"{np.nanmin(sp):4.2f}/{np.nanmean(sp):4.2f} {min(sr):5.2f}/{np.mean(sr):4.2f} "
              f"{np.mean([r.r1_swept for r in g]):7.4f} {sgap:+7.4f}")  # fmt: skip


def print_report(rows: Sequence[GateRow]) -> None:
    seeds = sorted({r.seed for r in rows})
    print(f"view seeds {' '.join(map(str, seeds))}; per row the worst and the mean over them")
    print(f"{'mode':>7} {'folder':>15} {'margin':>6} {'planted':>7} {'flagged':>7} "
          f"{'P min/mean':>10} {'R min/mean':>10} {'R@1 clean':>9} {'mislab.':>7} "
          f"{'removed':>7} {'quarant.':>8} {'gap max':>7}")  # fmt: skip
    groups: dict[tuple[str, str, float], list[GateRow]] = {}
    for r in rows:
        groups.setdefault((r.mode, r.folder, r.margin), []).append(r)
    for (mode, folder, margin), g in groups.items():
        p = [r.precision for r in g]
        rc = [r.recall for r in g]
        gap = max(r.r1_clean - r.r1_quarantined for r in g)
        mark = " *" if margin == DEFAULT_MARGIN else ""
        print(f"{mode:>7} {folder:>15} {margin:6.2f} {sum(r.planted for r in g):7d} "
              f"{sum(r.flagged for r in g):7d} {min(p):4.2f}/{np.mean(p):4.2f} "
              f"{min(rc):5.2f}/{np.mean(rc):4.2f} {np.mean([r.r1_clean for r in g]):9.4f} "
              f"{np.mean([r.r1_mislabelled for r in g]):7.4f} "
              f"{np.mean([r.r1_planted_removed for r in g]):7.4f} "
              f"{np.mean([r.r1_quarantined for r in g]):8.4f} {gap:+7.4f}{mark}")  # fmt: skip
    # The targets are the issue's: mislabels within the gallery ("swap").
    chosen = [r for r in rows if r.margin == DEFAULT_MARGIN and r.mode == "swap"]
    p_min = min(r.precision for r in chosen)
    r_min = min(r.recall for r in chosen)
    gap = max(r.r1_clean - r.r1_quarantined for r in chosen)
    mean_gap = float(np.mean([r.r1_clean - r.r1_quarantined for r in chosen]))
    oracle_gap = max(r.r1_planted_removed - r.r1_quarantined for r in chosen)
    print(f"\n* the default margin {DEFAULT_MARGIN}, swap mode, every folder and seed:")
    p_ok = "PASS" if p_min >= TARGET_PRECISION else "MISS"
    r_ok = "PASS" if r_min >= TARGET_RECALL else "MISS"
    print(f"  precision >= {p_min:.2f} (target >= {TARGET_PRECISION}) {p_ok}; "
          f"recall >= {r_min:.2f} (target >= {TARGET_RECALL}) {r_ok}")  # fmt: skip
    print(f"  R@1 clean - after quarantine: at most {gap:+.4f}, mean {mean_gap:+.4f} "
          f"(target <= {TARGET_R1_GAP}) {'PASS' if gap <= TARGET_R1_GAP else 'MISS'}; "
          f"quarantine vs the planted images removed: at most {oracle_gap:+.4f}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    rows, served = run(parse_args(argv))
    print_report(rows)
    print_served(served)


if __name__ == "__main__":
    main()
