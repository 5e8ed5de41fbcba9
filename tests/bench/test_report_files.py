"""bench/report_files.py: strict JSON (no NaN) beside the summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.report_files import write_report_files


def test_writes_strict_json_and_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = {"rate": 1.5, "p99": math.nan, "rows": [{"x": math.inf}, {"x": 2}]}
    write_report_files(out, "r.json", report, "a table\n")
    text = (out / "r.json").read_text()
    assert json.loads(text) == {"rate": 1.5, "p99": None, "rows": [{"x": None}, {"x": 2}]}
    assert "NaN" not in text and "Infinity" not in text
    assert (out / "summary.txt").read_text() == "a table\n"
