"""The service-level sections of bench.answers, on the tiny model over real HTTP."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import answer_service_sections as sections


def test_filtered_answers_of_the_service_equal_the_brute_force(tiny_model_path: Path) -> None:
    lines, value = sections.filtered_search(tiny_model_path, seed=3, items=40, queries=2, k=5)
    rows = value["rows"]
    assert [r["share"] for r in rows] == list(sections.SELECTIVITIES)
    # At least one item per filter, exactly the share otherwise.
    assert [r["matching"] for r in rows] == [1, 1, 4, 20, 40]
    assert all(r["exact"] == r["searches"] == 2 for r in rows), lines
    assert value["pass"] and "PASS" in lines[-1]


def test_the_latency_section_measures_both_rankings_side_by_side(tiny_model_path: Path) -> None:
    lines, value = sections.two_stage_latency(
        tiny_model_path, seed=1, photos=("astronaut",), rounds=1
    )
    rows = {r["ranking"]: r for r in value["rows"]}
    assert set(rows) == {"two_stage", "centroid"}
    # 1 photo x 4 quarters x 4 query views, once each.
    assert all(r["searches"] == 16 and r["p50_ms"] > 0 for r in rows.values())
    assert value["p50_ratio"] == rows["two_stage"]["p50_ms"] / rows["centroid"]["p50_ms"]
    assert lines[-1].startswith("p50 two-stage / centroid")


def test_near_ties_may_swap_but_a_real_difference_is_not_equal() -> None:
    expected = [("a", 0.9), ("b", 0.8), ("c", 0.79995)]
    assert sections.same_up_to_ties(expected, expected)
    assert sections.same_up_to_ties([("a", 0.9), ("c", 0.79995), ("b", 0.8)], expected)
    assert not sections.same_up_to_ties([("b", 0.8), ("a", 0.9), ("c", 0.79995)], expected)
    assert not sections.same_up_to_ties(expected[:2], expected)


def test_the_brute_force_breaks_ties_by_item_id() -> None:
    rows = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    top = sections.brute_force_top_k(
        np.array([2, 0], np.float32), ["d", "b", "a", "c"], rows, {0, 1, 2, 3}, 3
    )
    assert [t[0] for t in top] == ["a", "d", "c"]
    assert top[2][1] == np.float32(0.6)
