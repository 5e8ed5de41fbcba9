"""A benchmark's report directory: everything as strict JSON beside a table to read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.loadtest.report_writer import finite_json


def write_report_files(out_dir: Path, json_name: str, report: dict[str, Any], text: str) -> None:
    """``out_dir/json_name`` (NaN and inf as null: strict JSON has neither) and
    ``out_dir/summary.txt``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / json_name).write_text(
        json.dumps(finite_json(report), indent=2, allow_nan=False) + "\n"
    )
    (out_dir / "summary.txt").write_text(text)
