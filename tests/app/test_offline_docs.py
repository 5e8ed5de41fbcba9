"""The API docs over real HTTP: Swagger UI and ReDoc load every asset from this service (no
CDN), with no API key even where keys are required."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.api_keys import Scope, make_key
from app.main import create_app
from app.settings import Settings
from tests.live_server import live_server

_, RECORD = make_key("reader", [Scope.READ])
# What a page makes a browser fetch: linked and scripted URLs, and the spec Swagger UI loads.
REFERENCES = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|url: '([^']*)'""")
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path
) -> Iterator[httpx.Client]:
    # Keys required: the docs must still load without one. One service for the module.
    settings = Settings(
        model_path=tiny_model_path,
        data_dir=tmp_path_factory.mktemp("docs") / "data",
        api_keys=RECORD.hash_line(),
    )
    with live_server(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        yield client


def references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCES.findall(html)]


@pytest.mark.parametrize(("page", "expected"), [("/docs", 3), ("/redoc", 3)])
def test_docs_pages_reference_only_this_service(
    keyed: httpx.Client, page: str, expected: int
) -> None:
    r = keyed.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = references(r.text)
    # Swagger UI: stylesheet, favicon, bundle, spec; ReDoc: favicon, spec, bundle.
    assert len(urls) >= expected, urls
    assert "://" not in r.text and "//" not in "".join(urls), urls
    for url in urls:
        assert url.startswith("/"), url
        asset = keyed.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rfind(".") :]
        if url == "/openapi.json":
            assert asset.headers["content-type"] == "application/json"
        else:
            assert CONTENT_TYPES[suffix] in asset.headers["content-type"], url
            assert len(asset.content) > 1000, url  # the real file, not an error page


def test_the_swagger_bundle_is_the_real_one(keyed: httpx.Client) -> None:
    docs = keyed.get("/docs").text
    (bundle,) = [u for u in references(docs) if u.endswith(".js")]
    (css,) = [u for u in references(docs) if u.endswith(".css")]
    # Swagger UI 5 is what renders OpenAPI 3.1 (FastAPI's output); 4.x shows an error instead.
    assert keyed.get("/openapi.json").json()["openapi"].startswith("3.1")
    assert b"SwaggerUIBundle" in keyed.get(bundle).content
    assert b".swagger-ui" in keyed.get(css).content
    assert "validatorUrl" in docs  # no online validator badge calling out


def test_a_missing_asset_is_a_404(keyed: httpx.Client) -> None:
    assert keyed.get("/docs-assets/nope.js").status_code == 404
