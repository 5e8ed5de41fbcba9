"""Verdicts follow from the figures alone, and the table prints every target once per column."""

from __future__ import annotations

import math
import operator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.targets import INFO, INVALID, MISS, PASS, Target, target_json, targets_table

ORACLE = {">=": operator.ge, "<=": operator.le, "<": operator.lt, "==": operator.eq}


def _target(value: float, op: str | None = ">=", bound: float = 0.85, **kw: object) -> Target:
    return Target("k", "a target", value, op, bound, "x", "how", **kw)  # type: ignore[arg-type]


@given(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(list(ORACLE)),
    st.floats(-1e6, 1e6),
)
def test_verdict_is_the_comparison(value: float, op: str, bound: float) -> None:
    expected = PASS if math.isfinite(value) and ORACLE[op](value, bound) else MISS
    assert _target(value, op, bound).verdict == expected


def test_boundaries_invalid_and_info() -> None:
    assert _target(0.85).verdict == PASS  # at the bound: >= holds
    assert _target(50.0, "<", 50.0).verdict == MISS  # strict
    assert _target(0.0, "==", 0).verdict == PASS
    assert _target(1.0, "==", 0).verdict == MISS
    # An invalid measurement is never a pass, whatever its figure.
    assert _target(10.0, invalid="the generator lagged").verdict == INVALID
    assert _target(1.0, None, math.nan).verdict == INFO
    with pytest.raises(ValueError):
        _target(1.0, "!=")


def test_table_rows_columns_and_details() -> None:
    def column(value: float, invalid: str | None = None) -> list[Target]:
        return [
            Target("ratio", "throughput ratio", value, ">=", 0.85, "x", f"{value} / 1"),
            Target("ms", "rejections p99", 12.5, "<", 50, "ms", "12 rejections", invalid),
            Target("errs", "errors", 0, "==", 0, "count", "none"),
            Target("info", "on / batch 1", 1.2, None, math.nan, "x", "info"),
        ]

    lines = targets_table({"sqlite": column(0.91), "redis": column(0.5, "lagged")})
    header, *rows = lines[:5]
    assert header.split()[-2:] == ["sqlite", "redis"]
    assert rows[0].split()[-4:] == ["0.91", "PASS", "0.50", "MISS"]
    assert "< 50.0 ms" in rows[1] and rows[1].split()[-2:] == ["ms", "INVALID"]
    assert rows[2].split()[-4:] == ["0", "PASS", "0", "PASS"] and "= 0" in rows[2]
    assert rows[3].split()[-2:] == ["1.20", INFO]
    details = [line.strip() for line in lines[6:]]
    assert "throughput ratio [sqlite]: 0.91 / 1" in details
    assert "rejections p99 [redis]: 12 rejections; INVALID: lagged" in details
    with pytest.raises(ValueError, match="expected"):
        targets_table({"a": column(1.0), "b": column(1.0)[::-1]})


def test_json_has_the_verdict_and_no_nan() -> None:
    out = target_json(_target(math.nan))
    assert out["value"] is None and out["verdict"] == MISS
    assert target_json(_target(0.9))["verdict"] == PASS
