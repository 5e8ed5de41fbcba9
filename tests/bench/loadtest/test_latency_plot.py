"""The load-test plot shows, per level, the share of 503 rejections and of other errors as bars
beside the latency lines, taken from the level's figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.patches import Rectangle

from bench.loadtest.latency_plot import failure_shares, latency_figure, plot_latency
from bench.loadtest.latency_stats import summarize
from bench.loadtest.level_result import LevelResult
from bench.loadtest.request_sample import RequestSample


def _level(rate: float, statuses: list[int | None]) -> LevelResult:
    samples = [
        RequestSample(
            "POST /search",
            i / rate,
            i / rate,
            0.01 * (1 + i),
            status,
            None if status is not None else "timeout",
        )
        for i, status in enumerate(statuses)
    ]
    endpoints = summarize(samples, wall_s=len(samples) / rate)
    return LevelResult("search", rate, 1.0, 1.0, 0.1, 0.1, endpoints, 0)


LEVELS = [
    _level(10, [200] * 10),
    _level(20, [200] * 14 + [503] * 4 + [500, None]),  # 20 % rejected, 10 % other errors
    _level(40, [200] * 10 + [503] * 30),  # 75 % rejected
]


def test_failure_shares_are_the_levels_counts() -> None:
    assert [failure_shares(lv.endpoints[-1]) for lv in LEVELS] == [
        (0.0, 0.0),
        pytest.approx((0.2, 0.1)),
        pytest.approx((0.75, 0.0)),
    ]


def test_bars_drawn_per_level_stacked_rejections_then_errors(tmp_path: Path) -> None:
    fig = latency_figure(LEVELS)
    latency_ax, bars_ax = fig.axes  # one scenario: its latency axis and the twin with bars
    assert latency_ax.get_yscale() == "log"
    rects = [p for p in bars_ax.patches if isinstance(p, Rectangle)]
    rejected, other = rects[:3], rects[3:]
    assert [r.get_x() + r.get_width() / 2 for r in rejected] == pytest.approx([10, 20, 40])
    assert [r.get_height() for r in rejected] == pytest.approx([0, 20, 75])
    assert [r.get_height() for r in other] == pytest.approx([0, 10, 0])
    assert [r.get_y() for r in other] == pytest.approx([0, 20, 75])  # on top of the 503s
    legend = latency_ax.get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[-2:] == ["503 rejections %", "other errors %"]
    assert labels[:3] == ["POST /search p50", "POST /search p95", "POST /search p99"]
    assert [t.get_text() for t in bars_ax.texts] == ["30%", "75%"]
    plot_latency(LEVELS, tmp_path / "latency.png")
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
