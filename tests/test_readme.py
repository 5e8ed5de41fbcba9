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
    rows = re.findall(r"^\| `(RETRIEVAL_[A-Z0-9_]+)` \| `([^`]*)` \|", section, flags=re.M)
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


# Top-level folders of the checkout: a backticked path starting with one of them must exist.
TREE = ("app", "artifact", "store", "index", "model", "bench", "cli", "client", "deploy")
TREE += ("tests", "configs", "docs", "requirements")


def test_every_python_module_the_readme_runs_exists() -> None:
    text = README.read_text(encoding="utf-8")
    # `python -m bench.<tool>` names a family, not a module: a match ending in "." is dropped.
    modules = {m for m in re.findall(r"python -m ([A-Za-z_][\w.]*)", text) if m[-1] != "."}
    assert "bench.service_bench" in modules  # the pattern finds what it is meant to
    ours = {m for m in modules if m.split(".")[0] in TREE}
    root = README.parent
    missing = [
        m
        for m in sorted(ours)
        if not (root / f"{m.replace('.', '/')}.py").is_file()
        and not (root / m.replace(".", "/") / "__main__.py").is_file()
    ]
    assert not missing, missing


def test_every_repository_path_the_readme_names_exists() -> None:
    text = README.read_text(encoding="utf-8")
    folders = "|".join(TREE)
    paths = set(re.findall(rf"`((?:{folders})/[\w./-]*)`", text))
    assert "deploy/redis.conf" in paths
    root = README.parent
    missing = sorted(p for p in paths if not (root / p).exists())
    assert not missing, missing
