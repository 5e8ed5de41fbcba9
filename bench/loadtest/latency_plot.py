"""``latency.png``: latency percentiles against offered load, one panel per scenario, with the
share of requests that failed at each level drawn on the same panel (bars, right-hand axis):
503 rejections apart from the other errors (other non-2xx answers, timeouts, connection errors,
arrivals dropped at the in-flight cap). A latency line alone would hide a level that looks fast
because most of its requests were turned away."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the load test runs on servers and in CI

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.loadtest.latency_stats import ALL_ENDPOINTS, EndpointStats
from bench.loadtest.level_result import LevelResult

_PERCENTILES = (("p50_ms", "p50", ":"), ("p95_ms", "p95", "--"), ("p99_ms", "p99", "-"))
_REJECTED_COLOUR = "0.55"
_ERROR_COLOUR = "tab:red"


def failure_shares(stats: EndpointStats) -> tuple[float, float]:
    """``(503 rejections, other errors)`` as shares of the level's due requests."""
    if not stats.requests:
        return 0.0, 0.0
    return stats.rejected / stats.requests, (stats.errors - stats.rejected) / stats.requests


def _draw_failures(ax: Axes, rows: Sequence[LevelResult]) -> Axes:
    totals = [next(e for e in r.endpoints if e.endpoint == ALL_ENDPOINTS) for r in rows]
    xs = [r.offered_rps for r in rows]
    gaps = [b - a for a, b in itertools.pairwise(xs) if b > a]
    width = 0.35 * min(gaps) if gaps else max(xs[0] * 0.2, 0.5)
    shares = [failure_shares(t) for t in totals]
    rejected = [100 * s[0] for s in shares]
    other = [100 * s[1] for s in shares]
    bars = ax.twinx()
    bars.bar(xs, rejected, width, color=_REJECTED_COLOUR, alpha=0.45, label="503 rejections %")
    bars.bar(
        xs, other, width, bottom=rejected, color=_ERROR_COLOUR, alpha=0.45, label="other errors %"
    )
    for x, r, o in zip(xs, rejected, other, strict=True):
        if r + o > 0:
            bars.annotate(f"{r + o:.0f}%", (x, r + o), ha="center", va="bottom", fontsize=7)
    bars.set_ylim(0, 105)
    bars.set_ylabel("failed requests (% of the level)")
    # Latency lines above the bars.
    ax.set_zorder(bars.get_zorder() + 1)
    ax.patch.set_visible(False)
    return bars


def plot_latency(results: Sequence[LevelResult], path: Path) -> None:
    fig = latency_figure(results)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_figure(results: Sequence[LevelResult]) -> Figure:
    """The figure ``plot_latency`` saves: per scenario, a latency axis and its twin with the
    failure bars."""
    scenarios = list(dict.fromkeys(r.scenario for r in results))
    fig, axes = plt.subplots(
        1, len(scenarios), figsize=(5.5 * len(scenarios), 4), squeeze=False, sharey=True
    )
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        rows = sorted((r for r in results if r.scenario == scenario), key=lambda r: r.offered_rps)
        endpoints = sorted({e.endpoint for r in rows for e in r.endpoints} - {ALL_ENDPOINTS})
        for colour, endpoint in enumerate(endpoints):
            for field, label, style in _PERCENTILES:
                xs, ys = [], []
                for r in rows:
                    stats = next((e for e in r.endpoints if e.endpoint == endpoint), None)
                    value = getattr(stats, field) if stats is not None else math.nan
                    if math.isfinite(value):
                        xs.append(r.offered_rps)
                        ys.append(value)
                ax.plot(xs, ys, style, marker="o", color=f"C{colour}", label=f"{endpoint} {label}")
        bars = _draw_failures(ax, rows)
        ax.set_title(scenario)
        ax.set_xlabel("offered load (requests/s)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        # One legend for lines and bars, on the latency axis (drawn above the bars).
        lines, labels = ax.get_legend_handles_labels()
        patches, bar_labels = bars.get_legend_handles_labels()
        ax.legend(lines + patches, labels + bar_labels, fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("latency from scheduled send (ms)")
    fig.tight_layout()
    return fig
