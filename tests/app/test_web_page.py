"""The web page's serving over real HTTP (tiny model, keys required): ``/`` and every asset it
loads answer without a key, from this service only (no CDN), with the page's security headers;
the assets are package data, so an installed wheel serves them too. What the page does is
tested in a real browser (tests/app/web/)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest

from app.api_keys import Scope, make_key
from app.main import create_app
from app.settings import Settings
from app.web_page import ASSETS, CONTENT_SECURITY_POLICY, PAGE, WEB_DIR
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parents[2]
_, RECORD = make_key("reader", [Scope.READ])
# What the page and its modules make a browser load: links, scripts, module imports.
HTML_REFERENCES = re.compile(r"""(?:src|href)="([^"#]+)\"""")
MODULE_IMPORTS = re.compile(r"""^import .* from "(\./[^"]+)";$""", re.M)
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path
) -> Iterator[httpx.Client]:
    settings = Settings(
        model_path=tiny_model_path,
        data_dir=tmp_path_factory.mktemp("web-page") / "data",
        api_keys=RECORD.hash_line(),
    )
    with live_server(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        yield client


def test_the_page_is_served_at_the_root_without_a_key(keyed: httpx.Client) -> None:
    r = keyed.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "connect-src 'self'" in CONTENT_SECURITY_POLICY
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.text == (WEB_DIR / PAGE).read_text(encoding="utf-8")
    assert keyed.get("/info").status_code == 401  # the data stays behind the key
    assert keyed.get("/docs").status_code == 200  # the docs stay where they were
    assert 'href="docs"' in r.text


def test_every_asset_the_page_loads_is_served_without_a_key_from_here(
    keyed: httpx.Client,
) -> None:
    html = keyed.get("/").text
    loaded = set(HTML_REFERENCES.findall(html)) - {"docs"}
    assert loaded == {"web/app.js", "web/app.css", "web/favicon.svg"}
    # Follow the module graph from app.js: every import is a relative file of app/web/.
    pending, modules = ["app.js"], set()
    while pending:
        name = pending.pop()
        if name in modules:
            continue
        modules.add(name)
        source = keyed.get(f"/web/{name}").text
        pending += [m.removeprefix("./") for m in MODULE_IMPORTS.findall(source)]
    served = {*modules, "app.css", "favicon.svg"}
    assert served == set(ASSETS)
    for name in served:
        r = keyed.get(f"/web/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"].startswith(CONTENT_TYPES[Path(name).suffix]), name
        assert r.headers["cache-control"] == "no-cache" and r.headers["etag"], name
        assert r.content == (WEB_DIR / name).read_bytes()
        if name != "favicon.svg":  # its xmlns is a name, not a URL it loads
            assert "://" not in r.text, f"{name} names an absolute URL"
    assert keyed.get("/web/nope.js").status_code == 404


def test_the_assets_are_every_file_of_app_web_and_package_data() -> None:
    on_disk = {p.name for p in WEB_DIR.iterdir() if p.is_file()}
    assert on_disk == {PAGE, *ASSETS}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["app"]
    for name in on_disk:
        assert any(fnmatch(f"web/{name}", pattern) for pattern in patterns), name
