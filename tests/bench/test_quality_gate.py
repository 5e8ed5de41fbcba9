"""bench.quality_gate: its planted galleries, sums, rivals and R@1 against loops, and one run
on the tiny model."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from bench import quality_gate as tool
from bench.answer_folders import EmbeddedFolder, FolderRecipe


def random_folder(seed: int, items: int = 10, views: int = 4, dim: int = 8) -> EmbeddedFolder:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(items, dim))
    g_item = np.repeat(np.arange(items), views)
    q_item = np.repeat(np.arange(items), 2)
    return EmbeddedFolder(
        recipe=FolderRecipe("random"),
        items=tuple(f"i{k}" for k in range(items)),
        photo=tuple(f"i{k}" for k in range(items)),
        gallery=(centres[g_item] + 0.3 * rng.normal(size=(len(g_item), dim))).astype(np.float32),
        gallery_item=g_item,
        queries=(centres[q_item] + 0.3 * rng.normal(size=(len(q_item), dim))).astype(np.float32),
        query_item=q_item,
        query_input_std=np.full(len(q_item), 50.0),
    )


def test_swap_moves_the_share_to_other_items() -> None:
    f = random_folder(0)
    labels, enrolled, clean, planted = tool.planted_gallery(
        f, "swap", 0.1, np.random.default_rng(1)
    )
    assert enrolled.all() and clean.all() and len(planted) == 4
    changed = set(np.flatnonzero(labels != f.gallery_item).tolist())
    assert changed == planted


def test_foreign_enrolls_no_image_of_the_held_items_but_the_planted() -> None:
    f = random_folder(2)
    labels, enrolled, clean, planted = tool.planted_gallery(
        f, "foreign", 0.1, np.random.default_rng(3)
    )
    held = {int(f.gallery_item[i]) for i in np.flatnonzero(~clean)}
    assert len(held) == 1
    assert set(np.flatnonzero(enrolled & ~clean).tolist()) == planted
    assert all(int(labels[i]) not in held for i in np.flatnonzero(enrolled))


def test_sums_rivals_and_r_at_1_against_loops() -> None:
    f = random_folder(4)
    keep = np.random.default_rng(5).random(len(f.gallery_item)) < 0.8
    sums, unit_sums, counts = tool.item_sums(f.gallery, f.gallery_item, len(f.items), keep)
    for k in range(len(f.items)):
        rows = [
            f.gallery[i].astype(np.float64) for i in np.flatnonzero(keep) if f.gallery_item[i] == k
        ]
        assert counts[k] == len(rows)
        np.testing.assert_allclose(sums[k], np.sum(rows, axis=0) if rows else 0, atol=1e-9)
        np.testing.assert_allclose(
            unit_sums[k], sum((r / np.linalg.norm(r) for r in rows), np.zeros(8)), atol=1e-9
        )
    cents = [s / np.linalg.norm(s) if c else None for s, c in zip(sums, counts, strict=True)]
    other = tool.nearest_other(
        f.gallery,
        f.gallery_item,
        np.array([c if c is not None else np.zeros(8) for c in cents], np.float32),
        counts > 0,
    )
    for i, e in enumerate(f.gallery):
        u = e / np.linalg.norm(e)
        best = max(
            float(u @ c) for k, c in enumerate(cents) if c is not None and k != f.gallery_item[i]
        )
        assert abs(other[i] - best) < 1e-5
    hits = 0
    for q, want in zip(f.queries, f.query_item, strict=True):
        scores = [float(q @ c) / np.linalg.norm(q) if c is not None else -np.inf for c in cents]
        hits += int(np.argmax(scores)) == want
    assert tool.r_at_1(f.queries, f.query_item, sums, counts) == hits / len(f.queries)


def test_a_run_on_the_tiny_model_prints_the_verdicts(tiny_model_path: Path) -> None:
    args = tool.parse_args(
        [
            "--model",
            str(tiny_model_path),
            "--seeds",
            "1",
            "--photos",
            "astronaut",
            "coffee",
            "chelsea",
            "brick",
        ]
    )
    rows, served = tool.run(args)
    # 3 folders x 2 modes x the margins; served: x 2 batchings at the default margin.
    assert len(rows) == 3 * len(tool.MODES) * len(tool.MARGINS)
    assert len(served) == 3 * len(tool.MODES) * 2
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tool.print_report(rows)
        tool.print_served(served)
    text = out.getvalue()
    assert "precision >=" in text and "R@1 clean - after quarantine" in text
    assert "served: enrolled through the store" in text


def test_the_served_path_quarantines_what_its_judge_flags_with_the_stores_sums() -> None:
    f = random_folder(6)
    labels, enrolled, _, _ = tool.planted_gallery(f, "swap", 0.1, np.random.default_rng(7))
    items = len(f.items)
    for batching in ("image", "item"):
        # A gate that flags nothing: the store's sums are the brute-force sums of every image,
        # after the enrollments and after the sweep.
        none = tool.SuspectRule(margin=3.0, min_z=-1e9)
        want_sums, _, want_counts = tool.item_sums(f.gallery, labels, items, enrolled)
        for g in tool.served_quarantine(
            f, labels, enrolled, batching, np.random.default_rng(8), none
        ):
            assert g.quarantined == set()
            np.testing.assert_allclose(g.sums, want_sums, atol=1e-9)
            np.testing.assert_array_equal(g.counts, want_counts)
        # A gate that flags a lot (and a sweep after it): the sums are those of the images
        # left counted, and the sweep keeps the sums consistent.
        eager = tool.SuspectRule(margin=-1.0, min_z=-1e9)
        for g in tool.served_quarantine(
            f, labels, enrolled, batching, np.random.default_rng(8), eager
        ):
            assert g.quarantined
            keep = enrolled.copy()
            keep[list(g.quarantined)] = False
            want_sums, _, want_counts = tool.item_sums(f.gallery, labels, items, keep)
            np.testing.assert_allclose(g.sums, want_sums, atol=1e-9)
            np.testing.assert_array_equal(g.counts, want_counts)
            assert (g.counts[np.unique(labels[enrolled])] >= 1).all()  # every item keeps one
