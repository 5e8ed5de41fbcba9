"""The resume state file: per service and item, saved whole, refused when not ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.enroll_state import EnrollState, EnrollStateError


def test_records_survive_a_reload_per_service_and_item(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    a = EnrollState.load(path, "http://a:8000/")
    a.record("shoe", "d1", "img1")
    a.save()
    b = EnrollState.load(path, "http://b:8000")
    b.record("shoe", "d1", "img9")
    b.save()

    # The trailing slash does not make another service; each keeps its own records.
    again = EnrollState.load(path, "http://a:8000")
    assert again.image_id("shoe", "d1") == "img1"
    assert again.image_id("boot", "d1") is None
    assert EnrollState.load(path, "http://b:8000").image_id("shoe", "d1") == "img9"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left behind


@pytest.mark.parametrize("text", ["{not json", json.dumps({"version": 99, "services": {}}), "[]"])
def test_a_file_this_tool_did_not_write_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(EnrollStateError, match="delete it to start over"):
        EnrollState.load(path, "http://a")
    assert path.read_text() == text
