"""The README's settings table is the user's reference: it must list every setting, with the
default the app really uses, so the two cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def _settings_rows() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(RETRIEVAL_[A-Z_]+)` \| `([^`]*)` \|", section, flags=re.M)
    return dict(rows)


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_every_setting_is_in_the_readme_with_its_default() -> None:
    rows = _settings_rows()
    fields = Settings.model_fields
    expected = {f"RETRIEVAL_{name.upper()}" for name in fields}
    assert set(rows) == expected
    for name, info in fields.items():
        documented = rows[f"RETRIEVAL_{name.upper()}"]
        if info.default is None:
            assert documented.startswith("(none"), name
        else:
            assert documented == _shown(info.default), name
