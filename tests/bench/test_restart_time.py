"""The restart bench on a few hundred items with the tiny artifact: both ways of starting run,
the snapshot start replays the writes made meanwhile and its index equals the store's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench import restart_time


@pytest.mark.parametrize("store", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_rebuild_then_snapshot_start(
    store: str, tiny_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = [
        "restart_time", "--model", str(tiny_model_path), "--store", store, "--items", "300",
        "--changes", "40", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    restart_time.main()
    (report,) = (tmp_path / "out").glob("restart-time-*/restart_time.json")
    starts = json.loads(report.read_text())["starts"]
    assert [s["how"] for s in starts] == ["rebuild", "snapshot"]
    rebuild, snapshot = starts
    assert rebuild["items"] == 300
    assert snapshot["items"] == 300 + 30 - 10  # 30 new items, 10 of them deleted again
    assert snapshot["replayed_writes"] == 40 and snapshot["index_agrees"] is True
    assert rebuild["in_step_s"] > 0 and snapshot["in_step_s"] > 0
    assert (tmp_path / "data" / "index-snapshot.bin").exists()
