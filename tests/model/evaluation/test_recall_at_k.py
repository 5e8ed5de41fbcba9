"""Recall@K and NMI as evaluate_split reports them, against loops over distances."""

from __future__ import annotations

import numpy as np
import pytest

from model.data.sample import Sample
from model.evaluation.embed_split import (
    NMI_KEY,
    PROTOCOLS,
    RECALL_KS,
    clustering_nmi,
    score_embeddings,
)
from model.evaluation.embedding_nmi import embedding_nmi


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def oracle_instance_recall(q, query, g, gallery, cross_camera: bool, k: int) -> float:
    """Fraction of queries (with a positive left after junk removal) that have a positive among
    the first k gallery images by descending cosine, ties by gallery index."""
    hits = valid = 0
    for a, qs in enumerate(query):
        scored = []
        for j, gs in enumerate(gallery):
            if cross_camera and gs.item == qs.item and gs.camera == qs.camera:
                continue  # junk: same item, same camera
            scored.append((-float(_unit(q[a]) @ _unit(g[j])), j))
        ranked = [j for _, j in sorted(scored)]
        if not any(gallery[j].item == qs.item for j in ranked):
            continue
        valid += 1
        hits += any(gallery[j].item == qs.item for j in ranked[:k])
    return hits / valid


def oracle_centroid_recall(q, query, g, gallery, k: int) -> float:
    """Retrieval protocol: each gallery item's centroid (normalised mean of raw rows; every
    distractor its own item), ranked by cosine, ties by item order (labels, then distractors)."""
    keys = []
    for j, s in enumerate(gallery):
        keys.append((1, j) if s.is_distractor else (0, s.item))
    order = sorted(set(keys))
    cents = [
        _unit(np.mean([g[j] for j in range(len(gallery)) if keys[j] == key], axis=0))
        for key in order
    ]
    hits = valid = 0
    for a, qs in enumerate(query):
        if (0, qs.item) not in order:
            continue
        valid += 1
        scored = sorted((-float(_unit(q[a]) @ c), pos) for pos, c in enumerate(cents))
        top = [order[pos] for _, pos in scored[:k]]
        hits += (0, qs.item) in top
    return hits / valid


def _split(seed: int):
    rng = np.random.default_rng(seed)
    items = [f"i{n:02d}" for n in range(9)]
    centre = {it: rng.normal(size=16) for it in items}
    gallery = [
        Sample(f"g{j}.jpg", items[j % 9], camera=int(rng.integers(1, 4))) for j in range(40)
    ] + [Sample(f"d{j}.jpg", "0000", camera=1, is_distractor=True) for j in range(4)]
    # Query items include one with no gallery image (skipped), cameras overlap the gallery's.
    query = [Sample(f"q{a}.jpg", items[a % 9], camera=int(rng.integers(1, 4))) for a in range(25)]
    query.append(Sample("q-lone.jpg", "nobody", camera=1))
    centre["nobody"] = rng.normal(size=16)
    centre["0000"] = np.zeros(16)
    noise = 1.3
    g = np.array([centre[s.item] + noise * rng.normal(size=16) for s in gallery], np.float32)
    q = np.array([centre[s.item] + noise * rng.normal(size=16) for s in query], np.float32)
    # Ties: a duplicate gallery row and a query equal to a gallery row.
    g[5] = g[4]
    q[3] = g[7]
    return q, query, g, gallery


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("protocol", ["reid", "retrieval"])
def test_recall_at_k_matches_loops_over_distances(seed: int, protocol: str) -> None:
    q, query, g, gallery = _split(seed)
    metrics = score_embeddings(q, query, g, gallery, PROTOCOLS[protocol], clustering=False)
    cross = PROTOCOLS[protocol].cross_camera
    values = [metrics[f"instance/recall@{k}"] for k in RECALL_KS]
    for k in RECALL_KS:
        assert metrics[f"instance/recall@{k}"] == pytest.approx(
            oracle_instance_recall(q, query, g, gallery, cross, k), abs=1e-12
        ), k
        if not cross:
            assert metrics[f"centroid/recall@{k}"] == pytest.approx(
                oracle_centroid_recall(q, query, g, gallery, k), abs=1e-12
            ), k
    assert values == sorted(values) and values[0] < 1.0  # the data is hard enough to miss
    assert NMI_KEY not in metrics


def test_nmi_in_the_metrics_is_over_non_distractor_held_out_images() -> None:
    q, query, g, gallery = _split(0)
    metrics = score_embeddings(q, query, g, gallery, PROTOCOLS["reid"])
    keep = [not s.is_distractor for s in gallery]
    emb = np.concatenate([q, g[np.array(keep)]])
    items = [s.item for s in query] + [s.item for s, k in zip(gallery, keep, strict=True) if k]
    assert metrics[NMI_KEY] == embedding_nmi(emb, np.array(items))
    assert metrics[NMI_KEY] == clustering_nmi(q, query, g, gallery)
    assert 0.0 < metrics[NMI_KEY] < 1.0
