"""bench/settings_sweep.py: the choice rule against a brute-force reading of it, the value
flags, and one short sweep end to end on the tiny artifact (its own service processes)."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings
from bench.service_process import REPO_ROOT
from bench.settings_sweep import (
    DEFAULT_VALUES,
    SweepRow,
    choose,
    default_value,
    median_row,
    parse_values,
)


def _row(value: int, rate: float, overload_p99: float) -> SweepRow:
    return SweepRow(
        setting="admission_queue",
        value=value,
        is_default=value == 16,
        searches_per_s=rate,
        p95_ms=1.0,
        mean_batch=1.0,
        baseline_p99_ms=10.0,
        overload_accepted_p99_ms=overload_p99,
        overload_rejected=0,
        overload_rejected_p99_ms=math.nan,
        overload_achieved_share=1.0,
        other_errors=0,
    )


def test_choose_takes_the_lowest_overload_p99_among_throughput_ties() -> None:
    rates = [100.0, 97.0, 94.0, 80.0]
    p99s = [300.0, 200.0, 150.0, 50.0]
    for noise in (0.0, 0.02, 0.05, 0.1, 0.25):
        for order in itertools.permutations(range(4)):
            rows = [_row(i, rates[i], p99s[i]) for i in order]
            # Oracle: a row ties when no row is faster by more than the band; of the ties,
            # the one no other tie beats on the overload p99.
            ties = [
                r
                for r in rows
                if all(r.searches_per_s >= (1 - noise) * o.searches_per_s for o in rows)
            ]
            (want,) = [
                r
                for r in ties
                if all(r.overload_accepted_p99_ms <= o.overload_accepted_p99_ms for o in ties)
            ]
            assert choose(rows, noise) == want


def test_value_flags_override_one_setting_and_refuse_unknown_ones() -> None:
    values = parse_values(["admission_queue=2,3"])
    assert values["admission_queue"] == (2, 3)
    assert values["worker_threads"] == DEFAULT_VALUES["worker_threads"]
    for bad in ("no_such_setting=1", "admission_queue", "admission_queue=a,b"):
        with pytest.raises(ValueError):
            parse_values([bad])


def test_default_inference_threads_is_reported_as_the_threads_it_means() -> None:
    settings = Settings(inference_threads=0)
    assert default_value("inference_threads", settings) >= 1
    assert default_value("inference_threads", Settings(inference_threads=3)) == 3
    assert default_value("admission_queue", Settings(admission_queue=5)) == 5


def test_a_short_sweep_measures_every_value_and_prints_the_choice(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    cmd = [
        sys.executable, "-m", "bench.settings_sweep", "--model", str(tiny_model_path),
        "--only", "admission_queue", "--values", "admission_queue=3",
        "--search-seconds", "0.6", "--open-loop-seconds", "0.6", "--warmup-seconds", "0.2",
        "--photo-views", "1", "--megapixels", "0.05", "--gallery-copies", "1",
        "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    (report_path,) = tmp_path.glob("sweep-*/sweep.json")
    report = json.loads(report_path.read_text())
    default = Settings().admission_queue
    rows = report["rows"]
    # The asked value and today's default, each once, in order; only the default is marked.
    assert [(r["setting"], r["value"]) for r in rows] == [
        ("admission_queue", v) for v in sorted({3, default})
    ]
    assert [r["is_default"] for r in rows] == [r["value"] == default for r in rows]
    for r in rows:
        assert r["searches_per_s"] > 0 and r["other_errors"] == 0, r
        assert r["overload_ratio"] == pytest.approx(
            r["overload_accepted_p99_ms"] / r["baseline_p99_ms"]
        )
    # The printed choice is the rule applied to the report's own rows.
    as_rows = [SweepRow(**{k: v for k, v in r.items() if k != "overload_ratio"}) for r in rows]
    picked = choose(as_rows, report["noise"])
    assert report["chosen"] == {"admission_queue": picked.value}
    assert f"admission_queue = {picked.value}" in done.stdout


def test_rounds_are_reduced_to_each_figures_median() -> None:
    rows = [_row(4, rate, p99) for rate, p99 in ((90.0, 300.0), (120.0, 100.0), (100.0, 200.0))]
    row = median_row(rows)
    assert (row.setting, row.value) == ("admission_queue", 4)
    # Each figure on its own: the median rate comes from one round, the median p99 from another.
    assert row.searches_per_s == 100.0 and row.overload_accepted_p99_ms == 200.0
    assert median_row([_row(4, 90.0, 1.0), _row(4, 120.0, 3.0)]).searches_per_s == 105.0
