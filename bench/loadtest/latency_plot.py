"""``latency.png``: latency percentiles against offered load, one panel per scenario."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the load test runs on servers and in CI

import matplotlib.pyplot as plt

from bench.loadtest.latency_stats import ALL_ENDPOINTS
from bench.loadtest.level_result import LevelResult

_PERCENTILES = (("p50_ms", "p50", ":"), ("p95_ms", "p95", "--"), ("p99_ms", "p99", "-"))


def plot_latency(results: Sequence[LevelResult], path: Path) -> None:
    scenarios = list(dict.fromkeys(r.scenario for r in results))
    fig, axes = plt.subplots(
        1, len(scenarios), figsize=(5 * len(scenarios), 4), squeeze=False, sharey=True
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
        ax.set_title(scenario)
        ax.set_xlabel("offered load (requests/s)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("latency from scheduled send (ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
