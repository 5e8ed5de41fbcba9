"""The web page at ``GET /``: search by photo, enroll, browse and curate, status, maintenance.

A static single page (``app/web/``: ``index.html`` and plain ES modules, no framework, no
build step, no CDN) that talks to this service's public API like any client; it is package
data, so an installed wheel serves it too. Like the API docs, the page and its assets need no
API key (they hold no data): the page asks for a key and sends it with each API request.

The page's Content-Security-Policy lets it load scripts, styles and data only from this origin
and images from ``blob:`` URLs (the photos it fetches with the key), so a page change that
reached for another host would fail in the browser, not quietly phone out.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

PAGE_URL = "/"
ASSETS_URL = "/web"
WEB_DIR = Path(str(files("app") / "web"))
PAGE = "index.html"
ASSETS = (
    "app.js",
    "api.js",
    "dom.js",
    "results.js",
    "search.js",
    "enroll.js",
    "browse.js",
    "item.js",
    "status.js",
    "admin.js",
    "app.css",
    "favicon.svg",
)
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class WebAssets(StaticFiles):
    """The page's scripts and styles: revalidated on every load (``no-cache`` with the ETag
    StaticFiles sends), so an upgraded service is never run with an older cached script."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install_web_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under :data:`ASSETS_URL`."""
    missing = [name for name in (PAGE, *ASSETS) if not (WEB_DIR / name).is_file()]
    if missing:
        # A broken install: fail at start, not with a blank page in a browser later.
        raise RuntimeError(f"web page files missing from {WEB_DIR}: {', '.join(missing)}")
    html = (WEB_DIR / PAGE).read_text(encoding="utf-8")
    app.mount(ASSETS_URL, WebAssets(directory=WEB_DIR), name="web")

    @app.get(PAGE_URL, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})
