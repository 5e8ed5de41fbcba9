"""The answer rules measured on real photos, side by side in one run (issue 12's targets)::

    python -m bench.answers [--model models/default/embedder.onnx] [--seed 1] [--fit] [--json]

Folders (``bench.answer_folders``, embedded in memory through the service's decode): the
shipped photos as items (``photos``) and the four quarters of each (``quarters-2x2``: items
cut from one photo are hard negatives), each with views keeping 55-95 % of the item (the
``model.data.photo_folder`` views) and with views keeping 15-95 % (``-crops``: the photos of
one item differ more, as close-ups and sides of one object do). 4 gallery views per item.

Printed:

1. ranking: R@1 and MRR of the centroid order vs two-stage fusion (``index.two_stage_fusion``)
   at the default ``alpha`` and ``M``, and the sweep over both the default was chosen from;
2. set queries: R@1 of each of two query views alone vs the pair as one query,
   ``normalize(raw_a + raw_b)`` (an item's centroid is built the same way);
3. open set (``index.match_confidence``): ``--holdout`` of the items left out of the gallery
   in each of ``--splits`` seeded splits (pooled); a held-out item's query should get
   ``match = false``. True-match rate (TMR: enrolled queries whose top result is their item
   and matches) and false-match rate (FMR: held-out queries whose top result matches) at the
   rule's operating point, vs the best single flat threshold on the top score (centroid or
   fused, whichever is better) at equal TMR; AUROC of ``confidence`` and of the flat score
   (enrolled-and-right vs held-out queries);
4. degenerate queries (blank, uniform, tiny images): their verdicts, and how close real
   queries come to the uniform-image gate;
5. service-level figures over HTTP (:data:`SERVICE_SECTIONS`, ``bench.answer_service_sections``):
   search p50 of two-stage against centroid-only ranking, two services side by side; filtered
   search against a brute force at selectivities 0.1 % to 100 %. ``--no-service`` skips them.

``--fit`` also fits the match rule's constants (``PRIOR_PAIR_COSINE``, ``SLOPE``, the two ratio
weights, ``OFFSET``) on the folders of ``--fit-seed`` (other views than the evaluation's) and
evaluates with them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from artifact.onnx_embedder import OnnxEmbedder
from bench.answer_folders import (
    EmbeddedFolder,
    FolderRecipe,
    cached_folder,
    degenerate_images,
    embed_inputs,
    model_digest,
    model_inputs,
)
from bench.answer_service_sections import run_filtered_search, run_two_stage_latency
from index.centroid_math import l2_normalize
from index.match_confidence import (
    MatchRule,
    best_other,
    input_std,
    is_degenerate,
    match_confidence,
    match_features,
    norm_fraction,
    uniform_cosine,
    uniform_inputs,
)
from index.two_stage_fusion import (
    DEFAULT_ALPHA,
    DEFAULT_CANDIDATES,
    RankMode,
    rank_candidates,
)

DEFAULT_MODEL = Path("models/default/embedder.onnx")
SWEEP_ALPHAS = (1.0, 0.9, 0.75, 0.6, 0.5, 0.25, 0.0)
SWEEP_CANDIDATES = (5, 10, 20)
# Issue 12's targets.
TARGET_R1_GAIN_HARD = 0.02
TARGET_SET_GAIN = 0.05
TARGET_FMR_REDUCTION = 0.30
TARGET_AUROC = 0.95

FloatArray = npt.NDArray[np.float32]


# name → (grid, smallest fraction of the item a view keeps)
FOLDERS: dict[str, tuple[tuple[int, int], float]] = {
    "photos": ((1, 1), 0.55),
    "quarters-2x2": ((2, 2), 0.55),
    "photos-crops": ((1, 1), 0.15),
    "quarters-crops": ((2, 2), 0.15),
}
# photos-crops is at R@1 = 1.0 and AUROC ~0.94 like photos: left out by default for time.
DEFAULT_FOLDERS = ("photos", "quarters-2x2", "quarters-crops")


def recipes(
    names: Sequence[str], seed: int, query_views: int, photos: tuple[str, ...] | None
) -> list[FolderRecipe]:
    kw: dict[str, Any] = {"query_views": query_views, "seed": seed}
    if photos:
        kw["photos"] = photos
    return [FolderRecipe(name, FOLDERS[name][0], min_area=FOLDERS[name][1], **kw) for name in names]


@dataclass(frozen=True)
class Gallery:
    """What the service holds for the enrolled items of a folder (``E`` of them).

    ``items``: indices into the folder's items ``(E,)``; ``centroids`` ``(E, D)`` unit float32
    (``normalize(sum of raw)``); ``images``: per item ``(n_i, D)`` unit float16;
    ``count`` ``(E,)`` int64; ``spread`` ``(E,)`` float64 ``= dot(unit_sum, c) / count``.
    """

    items: npt.NDArray[np.int64]
    names: list[str]
    centroids: FloatArray
    images: list[npt.NDArray[np.float16]]
    count: npt.NDArray[np.int64]
    spread: npt.NDArray[np.float64]


def enrolled_gallery(
    folder: EmbeddedFolder,
    enrolled: npt.NDArray[np.bool_],
    keep: npt.NDArray[np.int64] | None = None,
) -> Gallery:
    """The gallery of the ``enrolled`` items ``(I,)`` bool, each with its first ``keep[i]``
    gallery views (all when ``keep`` is None)."""
    items = np.flatnonzero(enrolled).astype(np.int64)
    centroids, images, counts, spreads = [], [], [], []
    for i in items:
        raw = folder.gallery[folder.gallery_item == i].astype(np.float64)
        if keep is not None:
            raw = raw[: keep[i]]
        c = l2_normalize(raw.sum(axis=0))
        unit = l2_normalize(raw)
        centroids.append(c)
        images.append(unit.astype(np.float16))
        counts.append(raw.shape[0])
        spreads.append(float(unit.astype(np.float64).sum(axis=0) @ c) / raw.shape[0])
    return Gallery(
        items=items,
        names=[folder.items[i] for i in items],
        centroids=np.stack(centroids).astype(np.float32),
        images=images,
        count=np.array(counts, dtype=np.int64),
        spread=np.array(spreads, dtype=np.float64),
    )


@dataclass(frozen=True)
class Answer:
    """One query's answer: ``rank`` of the wanted item (0 = first; within the whole gallery)
    and the top result's fields (``top`` a position in the gallery), with the best centroid and
    image scores of the other candidates (the match rule's runner-up)."""

    rank: int
    top: int
    centroid_score: float
    image_score: float
    fused_score: float
    other_centroid_score: float
    other_image_score: float


def answer(
    gallery: Gallery,
    query: FloatArray,
    want: int,
    *,
    mode: RankMode,
    alpha: float,
    m: int,
) -> Answer:
    """Rank ``gallery`` for the unit ``query`` ``(D,)``: centroid top ``m``, then ``mode``.
    ``want``: the wanted item's position in the gallery, or -1 (not enrolled)."""
    scores = gallery.centroids @ query
    e = scores.shape[0]
    # Centroid order, ties by name: the index's exact rule.
    order = np.lexsort((np.arange(e), -scores.astype(np.float64)))
    cand = order[: min(m, e)]
    ranked = rank_candidates(
        query,
        [gallery.names[j] for j in cand],
        scores[cand],
        [gallery.images[j] for j in cand],
        mode=mode,
        alpha=alpha,
    )
    top = int(cand[ranked.items[0]])
    positions = cand[ranked.items]
    if want < 0:
        rank = -1
    elif want in positions:
        rank = int(np.flatnonzero(positions == want)[0])
    else:
        rank = int(np.flatnonzero(order == want)[0])  # below the candidates, centroid order
    return Answer(
        rank=rank,
        top=top,
        centroid_score=float(ranked.centroid_score[0]),
        image_score=float(ranked.image_score[0]),
        fused_score=float(ranked.fused_score[0]),
        other_centroid_score=float(best_other(ranked.centroid_score)[0]),
        other_image_score=float(best_other(ranked.image_score)[0]),
    )


@dataclass(frozen=True)
class RankFigures:
    r1: float
    mrr: float


def rank_figures(ranks: Sequence[int]) -> RankFigures:
    r = np.array(ranks, dtype=np.float64)
    return RankFigures(float((r == 0).mean()), float((1.0 / (r + 1.0)).mean()))


def folder_ranking(
    folder: EmbeddedFolder, mode: RankMode, alpha: float, m: int, queries: FloatArray
) -> RankFigures:
    gallery = enrolled_gallery(folder, np.ones(len(folder.items), dtype=np.bool_))
    ranks = [
        answer(gallery, q, int(t), mode=mode, alpha=alpha, m=m).rank
        for q, t in zip(queries, folder.query_item, strict=True)
    ]
    return rank_figures(ranks)


@dataclass(frozen=True)
class RankingRow:
    folder: str
    centroid: RankFigures
    two_stage: RankFigures
    sweep: dict[str, RankFigures]  # "alpha/M" → figures

    @property
    def r1_gain(self) -> float:
        return self.two_stage.r1 - self.centroid.r1


def ranking_rows(
    folders: Sequence[EmbeddedFolder], alpha: float, m: int, sweep: bool
) -> list[RankingRow]:
    rows = []
    for f in folders:
        q = l2_normalize(f.queries)
        grid = {}
        if sweep:
            for a in SWEEP_ALPHAS:
                for mm in SWEEP_CANDIDATES:
                    grid[f"{a:g}/{mm}"] = folder_ranking(f, RankMode.TWO_STAGE, a, mm, q)
        rows.append(
            RankingRow(
                f.name,
                folder_ranking(f, RankMode.CENTROID, alpha, m, q),
                folder_ranking(f, RankMode.TWO_STAGE, alpha, m, q),
                grid,
            )
        )
    return rows


@dataclass(frozen=True)
class SetRow:
    folder: str
    pairs: int
    view_a: float  # R@1
    view_b: float
    pair: float

    @property
    def gain(self) -> float:
        return self.pair - max(self.view_a, self.view_b)


def set_rows(folders: Sequence[EmbeddedFolder], alpha: float, m: int) -> list[SetRow]:
    """Views ``2j`` and ``2j+1`` of each item's queries as pairs, ranked in two-stage mode."""
    rows = []
    for f in folders:
        gallery = enrolled_gallery(f, np.ones(len(f.items), dtype=np.bool_))
        views = f.recipe.query_views - f.recipe.query_views % 2
        per_item = f.recipe.query_views
        a_idx = [i * per_item + v for i in range(len(f.items)) for v in range(0, views, 2)]
        b_idx = [i + 1 for i in a_idx]
        want = f.query_item[a_idx]

        def r1(qs: FloatArray, gallery: Gallery = gallery, want: Any = want) -> float:
            ranks = [
                answer(gallery, q, int(t), mode=RankMode.TWO_STAGE, alpha=alpha, m=m).rank
                for q, t in zip(qs, want, strict=True)
            ]
            return rank_figures(ranks).r1

        raw_a, raw_b = f.queries[a_idx].astype(np.float64), f.queries[b_idx].astype(np.float64)
        rows.append(
            SetRow(
                f.name,
                len(a_idx),
                r1(l2_normalize(raw_a)),
                r1(l2_normalize(raw_b)),
                r1(l2_normalize(raw_a + raw_b)),
            )
        )
    return rows


@dataclass(frozen=True)
class OpenSetSample:
    """Per query of one split: ``label`` 1 = enrolled and the top result is its item, 0 =
    held out, -1 = enrolled but the top result is another item; the top result's scores, its
    item's count and spread, and the runner-up's scores (the best other candidate's)."""

    label: npt.NDArray[np.int64]
    centroid_score: npt.NDArray[np.float64]
    image_score: npt.NDArray[np.float64]
    fused_score: npt.NDArray[np.float64]
    count: npt.NDArray[np.int64]
    spread: npt.NDArray[np.float64]
    other_centroid_score: npt.NDArray[np.float64]
    other_image_score: npt.NDArray[np.float64]


def open_set_samples(
    folder: EmbeddedFolder,
    splits: int,
    holdout: float,
    alpha: float,
    m: int,
    *,
    mixed_counts: bool = False,
) -> OpenSetSample:
    """Every query of the folder against each split's gallery (``holdout`` of the items left
    out, seeded by the split). ``mixed_counts``: each enrolled item keeps only its first 1 to
    ``gallery_views`` views (seeded), so items with one image (the prior) are among them."""
    n = len(folder.items)
    cols: dict[str, list[Any]] = {k: [] for k in OpenSetSample.__dataclass_fields__}
    q_unit = l2_normalize(folder.queries)
    for split in range(splits):
        held = np.zeros(n, dtype=np.bool_)
        held[np.random.default_rng((split, 7)).permutation(n)[: round(holdout * n)]] = True
        keep = None
        if mixed_counts:
            views = folder.recipe.gallery_views
            keep = np.random.default_rng((split, 8)).integers(1, views + 1, size=n)
        gallery = enrolled_gallery(folder, ~held, keep)
        pos = {int(i): j for j, i in enumerate(gallery.items)}
        for q, t in zip(q_unit, folder.query_item, strict=True):
            want = pos.get(int(t), -1)
            a = answer(gallery, q, want, mode=RankMode.TWO_STAGE, alpha=alpha, m=m)
            cols["label"].append(0 if want < 0 else (1 if a.rank == 0 else -1))
            cols["centroid_score"].append(a.centroid_score)
            cols["image_score"].append(a.image_score)
            cols["fused_score"].append(a.fused_score)
            cols["count"].append(gallery.count[a.top])
            cols["spread"].append(gallery.spread[a.top])
            cols["other_centroid_score"].append(a.other_centroid_score)
            cols["other_image_score"].append(a.other_image_score)
    return OpenSetSample(**{k: np.array(v) for k, v in cols.items()})


def auroc(pos: npt.NDArray[np.floating], neg: npt.NDArray[np.floating]) -> float:
    """P(score of a positive > score of a negative), ties counting one half."""
    if pos.size == 0 or neg.size == 0:
        return math.nan
    allv = np.concatenate([pos, neg])
    # Mid-ranks handle ties; Mann-Whitney U / (P * N).
    order = np.argsort(allv, kind="stable")
    ranks = np.empty(allv.size, dtype=np.float64)
    sorted_v = allv[order]
    i = 0
    while i < allv.size:
        j = i
        while j + 1 < allv.size and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def flat_fmr_at(
    pos_scores: npt.NDArray[np.floating], neg_scores: npt.NDArray[np.floating], true_matches: int
) -> tuple[float, float]:
    """The highest flat threshold letting at least ``true_matches`` right top results match,
    and the fraction of held-out queries it lets match: ``(threshold, fmr)``."""
    if true_matches <= 0:
        return math.inf, 0.0
    t = float(np.sort(pos_scores)[::-1][true_matches - 1])
    return t, float((neg_scores >= t).mean())


@dataclass(frozen=True)
class OpenSetRow:
    folder: str
    enrolled_queries: int
    held_out_queries: int
    tmr: float
    fmr: float
    wrong_item_matched: float  # of enrolled queries whose top result is another item
    flat_threshold: float
    flat_score: str
    flat_fmr: float
    auroc_confidence: float
    auroc_flat: float

    @property
    def fmr_reduction(self) -> float:
        if self.flat_fmr == 0.0:
            return 0.0 if self.fmr == 0.0 else -math.inf
        return 1.0 - self.fmr / self.flat_fmr


def sample_features(s: OpenSetSample, prior: float) -> npt.NDArray[np.float64]:
    """The rule's ``(N, 3)`` features of each query's top result."""
    return match_features(s.centroid_score, s.image_score, s.count, s.spread,
                          s.other_centroid_score, s.other_image_score, prior)  # fmt: skip


def open_set_row(name: str, s: OpenSetSample, rule: MatchRule) -> OpenSetRow:
    v = match_confidence(s.centroid_score, s.image_score, s.count, s.spread,
                         other_centroid=s.other_centroid_score,
                         other_image=s.other_image_score, rule=rule)  # fmt: skip
    pos, neg, wrong = s.label == 1, s.label == 0, s.label == -1
    enrolled = int(pos.sum() + wrong.sum())
    true_matches = int((v.match & pos).sum())
    flats = []
    for score_name, score in (("centroid", s.centroid_score), ("fused", s.fused_score)):
        t, fmr = flat_fmr_at(score[pos], score[neg], true_matches)
        flats.append((fmr, score_name, t, auroc(score[pos], score[neg])))
    flat_fmr, flat_name, flat_t, flat_auc = min(flats)
    return OpenSetRow(
        folder=name,
        enrolled_queries=enrolled,
        held_out_queries=int(neg.sum()),
        tmr=true_matches / max(enrolled, 1),
        fmr=float(v.match[neg].mean()) if neg.any() else 0.0,
        wrong_item_matched=float(v.match[wrong].mean()) if wrong.any() else 0.0,
        flat_threshold=flat_t,
        flat_score=flat_name,
        flat_fmr=flat_fmr,
        auroc_confidence=auroc(v.confidence[pos].astype(np.float64), v.confidence[neg]),
        auroc_flat=flat_auc,
    )


@dataclass(frozen=True)
class FittedRule:
    rule: MatchRule
    seed: int
    pair_cosine_items: int
    fit_queries: int


def mean_pair_cosine(folders: Sequence[EmbeddedFolder]) -> tuple[float, int]:
    """Mean cosine between two gallery views of one item, over every item of ``folders``."""
    values, items = [], 0
    for f in folders:
        for i in range(len(f.items)):
            u = l2_normalize(f.gallery[f.gallery_item == i]).astype(np.float64)
            g = u @ u.T
            n = u.shape[0]
            values.append((g.sum() - n) / (n * (n - 1)))
            items += 1
    return float(np.mean(values)), items


def fit_logistic(
    features: npt.NDArray[np.float64], y: npt.NDArray[np.float64], iters: int = 50
) -> tuple[npt.NDArray[np.float64], float]:
    """Class-balanced logistic regression of ``y`` ``(N,)`` (0/1) on ``features`` ``(N, P)``,
    by Newton's method: ``(weights (P,), offset)``."""
    w = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    x = np.concatenate([features, np.ones((features.shape[0], 1))], axis=1)
    beta = np.zeros(x.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (w * (y - p))
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return beta[:-1].copy(), float(beta[-1])


def fit_rule(
    folders: Sequence[EmbeddedFolder], splits: int, holdout: float, alpha: float, m: int
) -> FittedRule:
    """The prior from the folders' view pairs, then the weights and offset on their open-set
    features (``index.match_confidence.match_features``)."""
    prior, items = mean_pair_cosine(folders)
    xs, ys = [], []
    for f, mixed in itertools.product(folders, (False, True)):
        s = open_set_samples(f, splits, holdout, alpha, m, mixed_counts=mixed)
        keep = s.label >= 0
        xs.append(sample_features(s, prior)[keep])
        ys.append(s.label[keep].astype(np.float64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    (slope, w_centroid, w_image), offset = fit_logistic(x, y)
    rule = replace(
        MatchRule(),
        prior_pair_cosine=prior,
        slope=float(slope),
        centroid_ratio_weight=float(w_centroid),
        image_ratio_weight=float(w_image),
        offset=offset,
    )
    return FittedRule(rule, folders[0].recipe.seed, items, int(y.size))


@dataclass(frozen=True)
class DegenerateRow:
    image: str
    input_std: float
    uniform_cosine: float
    norm_fraction: float
    degenerate: bool
    top_item: str
    top_score: float
    confidence: float  # as if the gate were off
    match: bool  # with the gate


def degenerate_rows(
    embedder: OnnxEmbedder,
    folder: EmbeddedFolder,
    uniform: FloatArray,
    rule: MatchRule,
    alpha: float,
    m: int,
) -> tuple[list[DegenerateRow], float, float, float, int]:
    """The degenerate images against ``folder``'s whole gallery; of the real queries, the
    largest cosine to a uniform image, the smallest norm fraction, the smallest input standard
    deviation and how many the gate calls degenerate."""
    gallery = enrolled_gallery(folder, np.ones(len(folder.items), dtype=np.bool_))
    images = degenerate_images()
    inputs = model_inputs(embedder, list(images.values()))
    raw = embed_inputs(embedder, inputs)
    rows = []
    for name, e, x in zip(images, raw, inputs, strict=True):
        q = l2_normalize(e)
        a = answer(gallery, q, -1, mode=RankMode.TWO_STAGE, alpha=alpha, m=m)
        args = (
            np.array([a.centroid_score]),
            np.array([a.image_score]),
            gallery.count[[a.top]],
            gallery.spread[[a.top]],
        )
        oc, oi = np.array([a.other_centroid_score]), np.array([a.other_image_score])
        degenerate = is_degenerate(e, uniform, rule, model_input=x)
        ungated = match_confidence(*args, other_centroid=oc, other_image=oi, rule=rule)
        gated = match_confidence(*args, other_centroid=oc, other_image=oi,
                                 degenerate_query=degenerate, rule=rule)  # fmt: skip
        rows.append(
            DegenerateRow(
                name,
                input_std(x),
                uniform_cosine(e, uniform),
                norm_fraction(e, uniform),
                degenerate,
                gallery.names[a.top],
                a.fused_score,
                float(ungated.confidence[0]),
                bool(gated.match[0]),
            )
        )
    real_cos = max(uniform_cosine(e, uniform) for e in folder.queries)
    real_norm = min(norm_fraction(e, uniform) for e in folder.queries)
    # The pixel test needs the inputs; their flatness was kept when the folder was embedded.
    flat = folder.query_input_std < rule.max_flat_std
    flagged = sum(
        bool(f) or is_degenerate(e, uniform, rule)
        for e, f in zip(folder.queries, flat, strict=True)
    )
    return rows, real_cos, real_norm, float(folder.query_input_std.min()), int(flagged)


@dataclass(frozen=True)
class ServiceSection:
    """A service-level figure (search p50 two-stage vs centroid-only, filtered search vs brute
    force): ``run(args)`` returns printable lines and a JSON-able value."""

    title: str
    run: Callable[[argparse.Namespace], tuple[list[str], Any]]


SERVICE_SECTIONS: list[ServiceSection] = [
    ServiceSection("search p50, two-stage vs centroid-only (over HTTP)", run_two_stage_latency),
    ServiceSection("filtered search vs brute force (over HTTP)", run_filtered_search),
]


@dataclass
class Report:
    model: str
    seed: int
    alpha: float
    candidates: int
    rule: MatchRule
    fitted: FittedRule | None
    folders: dict[str, dict[str, int]]
    ranking: list[RankingRow]
    sets: list[SetRow]
    open_set: list[OpenSetRow]
    degenerate_folder: str
    degenerate: list[DegenerateRow]
    real_max_uniform_cosine: float
    real_min_norm_fraction: float
    real_min_input_std: float
    real_flagged_degenerate: int
    service: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.answers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}")
    p.add_argument("--seed", type=int, default=1, help="view seed of the evaluation (default 1)")
    p.add_argument("--query-views", type=int, default=4, help="query views per item (default 4)")
    p.add_argument(
        "--photos", nargs="+", default=None, help="only these shipped photos (default all 20)"
    )
    p.add_argument(
        "--folders",
        nargs="+",
        choices=sorted(FOLDERS),
        default=list(DEFAULT_FOLDERS),
        help=f"default {' '.join(DEFAULT_FOLDERS)}",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help=f"fusion weight of the centroid score (default {DEFAULT_ALPHA})",
    )
    p.add_argument(
        "--candidates",
        type=int,
        default=DEFAULT_CANDIDATES,
        help=f"M, candidates re-ranked (default {DEFAULT_CANDIDATES})",
    )
    p.add_argument(
        "--no-sweep", action="store_true", help="skip the alpha x M sweep (default: run it)"
    )
    p.add_argument("--splits", type=int, default=5, help="open-set splits (default 5)")
    p.add_argument("--holdout", type=float, default=0.3, help="items held out (default 0.3)")
    p.add_argument(
        "--fit",
        action="store_true",
        help="fit the match rule on --fit-seed first (default: the module's constants)",
    )
    p.add_argument("--fit-seed", type=int, default=0, help="view seed of the fit (default 0)")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="keep each folder's embeddings in this directory and reuse them on later runs "
        "with the same model and recipe (default: embed every run)",
    )
    p.add_argument(
        "--no-service",
        action="store_true",
        help="skip the service-level figures (default: run the service and measure them)",
    )
    p.add_argument(
        "--filter-items",
        type=int,
        default=1000,
        help="single-image items of the filtered-search check (default 1000: 0.1 %% is one)",
    )
    p.add_argument(
        "--filter-queries",
        type=int,
        default=20,
        help="queries per filter of the filtered-search check (default 20)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object instead (default: tables)"
    )
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> Report:
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    embedder = OnnxEmbedder(args.model, allow_gpu=False, allow_spinning=False)
    photos = tuple(args.photos) if args.photos else None
    digest = model_digest(embedder) if args.cache is not None else ""
    folders = [
        cached_folder(embedder, r, args.cache, digest)
        for r in recipes(args.folders, args.seed, args.query_views, photos)
    ]
    seconds["embed"] = time.perf_counter() - start
    fitted = None
    rule = MatchRule()
    if args.fit:
        t = time.perf_counter()
        fit_folders = [
            cached_folder(embedder, r, args.cache, digest)
            for r in recipes(args.folders, args.fit_seed, args.query_views, photos)
        ]
        fitted = fit_rule(fit_folders, args.splits, args.holdout, args.alpha, args.candidates)
        rule = fitted.rule
        seconds["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    ranking = ranking_rows(folders, args.alpha, args.candidates, not args.no_sweep)
    sets = set_rows(folders, args.alpha, args.candidates)
    seconds["ranking"] = time.perf_counter() - t
    t = time.perf_counter()
    open_set = [
        open_set_row(
            f.name + (" 1-4 img" if mixed else ""),
            open_set_samples(
                f, args.splits, args.holdout, args.alpha, args.candidates, mixed_counts=mixed
            ),
            rule,
        )
        for mixed in (False, True)
        for f in folders
    ]
    seconds["open_set"] = time.perf_counter() - t
    h, w = embedder.spec.input_size
    uniform = embedder.embed(uniform_inputs(h, w))
    # Against the largest folder (the first of them): the most items to land on.
    target = max(folders, key=lambda f: len(f.items))
    degenerate, real_max, real_norm, real_std, flagged = degenerate_rows(
        embedder, target, uniform, rule, args.alpha, args.candidates
    )
    service = {}
    t = time.perf_counter()
    for section in [] if args.no_service else SERVICE_SECTIONS:
        service[section.title] = section.run(args)
    seconds["service"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - start
    return Report(
        model=str(args.model),
        seed=args.seed,
        alpha=args.alpha,
        candidates=args.candidates,
        rule=rule,
        fitted=fitted,
        folders={
            f.name: {"items": len(f.items), "gallery": len(f.gallery), "queries": len(f.queries)}
            for f in folders
        },
        ranking=ranking,
        sets=sets,
        open_set=open_set,
        degenerate_folder=target.name,
        degenerate=degenerate,
        real_max_uniform_cosine=real_max,
        real_min_norm_fraction=real_norm,
        real_min_input_std=real_std,
        real_flagged_degenerate=flagged,
        service=service,
        seconds=seconds,
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_report(r: Report) -> None:
    print(f"model {r.model}; view seed {r.seed}; two-stage alpha {r.alpha:g}, M {r.candidates}")
    for name, f in r.folders.items():
        print(f"  {name}: {f['items']} items, {f['gallery']} gallery, {f['queries']} query views")
    print("\n1. ranking (R@1 / MRR)")
    print(f"{'folder':>16} {'centroid':>15} {'two-stage':>15} {'R@1 gain':>9}")
    for row in r.ranking:
        c, s = row.centroid, row.two_stage
        print(f"{row.folder:>16} {c.r1:7.4f}/{c.mrr:.4f} {s.r1:7.4f}/{s.mrr:.4f} "
              f"{row.r1_gain:+9.4f}")  # fmt: skip
    not_lost = all(x.two_stage.r1 >= x.centroid.r1 and x.two_stage.mrr >= x.centroid.mrr
                   for x in r.ranking)  # fmt: skip
    print(f"  never below centroid on any folder: {_verdict(not_lost)}")
    for x in r.ranking:
        if "quarters" in x.folder:
            ok = _verdict(x.r1_gain >= TARGET_R1_GAIN_HARD)
            print(f"  {x.folder}: R@1 gain {x.r1_gain:+.4f} (target >= "
                  f"+{TARGET_R1_GAIN_HARD}): {ok}")  # fmt: skip
    if r.ranking and r.ranking[0].sweep:
        print("  sweep, R@1 per folder (alpha/M):")
        print(f"{'alpha/M':>10} " + " ".join(f"{x.folder:>15}" for x in r.ranking))
        for key in r.ranking[0].sweep:
            print(f"{key:>10} " + " ".join(f"{x.sweep[key].r1:15.4f}" for x in r.ranking))
    print("\n2. set queries (two-stage R@1): two views as one query vs either view alone")
    print(f"{'folder':>16} {'pairs':>6} {'view a':>7} {'view b':>7} {'pair':>7} {'gain':>7}")
    for st in r.sets:
        print(f"{st.folder:>16} {st.pairs:>6} {st.view_a:7.4f} {st.view_b:7.4f} {st.pair:7.4f} "
              f"{st.gain:+7.4f}")  # fmt: skip
    open_sets = [st for st in r.sets if max(st.view_a, st.view_b) < 0.95]
    sets_ok = bool(open_sets) and all(st.gain >= TARGET_SET_GAIN for st in open_sets)
    print(f"  gain = pair - the better single view; target >= +{TARGET_SET_GAIN} on folders "
          f"where a view alone is below 0.95: {_verdict(sets_ok)}")  # fmt: skip
    rule = r.rule
    print(f"\n3. open set: match rule prior {rule.prior_pair_cosine:.4f}, slope "
          f"{rule.slope:.4f}, centroid ratio {rule.centroid_ratio_weight:.4f}, image ratio "
          f"{rule.image_ratio_weight:.4f}, offset {rule.offset:.4f}, match at "
          f"{rule.match_at}")  # fmt: skip
    if r.fitted:
        print(f"  (fitted on view seed {r.fitted.seed}: {r.fitted.fit_queries} queries, "
              f"prior over {r.fitted.pair_cosine_items} items)")  # fmt: skip
    print(
        "  rows '1-4 img': each enrolled item keeps 1 to 4 of its views (one-image items "
        "use the prior)"
    )
    print(f"{'folder':>23} {'enr q':>6} {'held q':>6} {'TMR':>6} {'FMR':>6} {'flat FMR':>8} "
          f"{'(score, t)':>16} {'FMR cut':>8} {'AUROC':>6} {'flat':>6} {'wrong':>6}")  # fmt: skip
    for o in r.open_set:
        flat = f"{o.flat_score} {o.flat_threshold:.3f}"
        print(f"{o.folder:>23} {o.enrolled_queries:>6} {o.held_out_queries:>6} {o.tmr:6.3f} "
              f"{o.fmr:6.3f} {o.flat_fmr:8.3f} {flat:>16} {o.fmr_reduction:8.1%} "
              f"{o.auroc_confidence:6.3f} {o.auroc_flat:6.3f} "
              f"{o.wrong_item_matched:6.3f}")  # fmt: skip
    cut_ok = all(o.fmr_reduction >= TARGET_FMR_REDUCTION for o in r.open_set if o.flat_fmr > 0)
    auc_ok = all(o.auroc_confidence >= TARGET_AUROC for o in r.open_set)
    print(f"  FMR cut >= {TARGET_FMR_REDUCTION:.0%} wherever the flat threshold lets any "
          f"held-out query match: {_verdict(cut_ok)}; AUROC >= {TARGET_AUROC} everywhere: "
          f"{_verdict(auc_ok)}")  # fmt: skip
    print(f"  FMR cut: 1 - FMR / flat FMR at equal TMR (target >= {TARGET_FMR_REDUCTION:.0%}; "
          f"0 % when both are 0); AUROC goal {TARGET_AUROC}; wrong = enrolled queries whose "
          "wrong top result matched")  # fmt: skip
    print(f"\n4. degenerate queries (against {r.degenerate_folder})")
    print(f"{'image':>14} {'pixel std':>9} {'uniform cos':>11} {'norm frac':>9} {'gate':>5} "
          f"{'top score':>9} {'conf (no gate)':>14} {'match':>6}  top item")  # fmt: skip
    for d in r.degenerate:
        print(f"{d.image:>14} {d.input_std:9.2f} {d.uniform_cosine:11.3f} {d.norm_fraction:9.3f} "
              f"{d.degenerate!s:>5} {d.top_score:9.3f} {d.confidence:14.3f} {d.match!s:>6}  "
              f"{d.top_item}")  # fmt: skip
    print(f"  real queries: largest cosine to a uniform image {r.real_max_uniform_cosine:.3f} "
          f"(gate >= {rule.max_uniform_cosine}), smallest norm fraction "
          f"{r.real_min_norm_fraction:.3f} (gate < {rule.min_norm_fraction}), smallest pixel "
          f"std {r.real_min_input_std:.1f} (gate < {rule.max_flat_std}); "
          f"{r.real_flagged_degenerate} flagged")  # fmt: skip
    print("\n5. service-level figures")
    for title, (lines, _value) in r.service.items():
        print(f"  {title}")
        for line in lines:
            print(f"    {line}")
    if not r.service:
        print("  not measured (--no-service)")
    print("\nseconds: " + ", ".join(f"{k} {v:.1f}" for k, v in r.seconds.items()))


def report_json(r: Report) -> dict[str, Any]:
    out = asdict(r)
    out["service"] = {k: v[1] for k, v in r.service.items()}
    for row, rank_row in zip(out["ranking"], r.ranking, strict=True):
        row["r1_gain"] = rank_row.r1_gain
    for row, set_row in zip(out["sets"], r.sets, strict=True):
        row["gain"] = set_row.gain
    for row, open_row in zip(out["open_set"], r.open_set, strict=True):
        row["fmr_reduction"] = open_row.fmr_reduction
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    if args.json:
        print(json.dumps(report_json(report), indent=2, default=float))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
