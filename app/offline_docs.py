"""The API docs served from this process alone: Swagger UI and ReDoc without a CDN.

FastAPI's own ``/docs`` and ``/redoc`` pages load their JavaScript and CSS from a CDN, so on a
machine without internet access (an air-gapped deployment, a laptop on a train) they render
blank. The assets come instead from the ``fastapi-offline`` package (MIT; it ships
``swagger-ui-dist`` 5's bundle and stylesheet, Apache-2.0, and ReDoc 2's standalone bundle,
MIT), mounted as static files under :data:`ASSETS_URL`; the pages are FastAPI's own
``get_swagger_ui_html`` / ``get_redoc_html`` pointed at them. Like the OpenAPI document, the
pages and their assets need no API key: they describe the API and hold no data.

The web page at ``GET /`` (app/web_page.py) links to :data:`DOCS_URL`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"
# No online validator badge (it would call validator.swagger.io with the document's URL).
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def install_offline_docs(app: FastAPI) -> None:
    """Serve the docs pages and their assets; ``app`` must be made with ``docs_url=None`` and
    ``redoc_url=None`` (FastAPI's CDN pages)."""
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("create the app with docs_url=None and redoc_url=None")
    for name in (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON):
        if not (ASSETS_DIR / name).is_file():
            # A broken install: fail at start, not with a blank docs page in a browser later.
            raise RuntimeError(f"the docs asset {ASSETS_DIR / name} is missing")
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    def asset(request: Request, name: str) -> str:
        # Behind a proxy that strips a path prefix, links must carry it (as FastAPI's do).
        return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{request.scope.get('root_path', '')}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=asset(request, SWAGGER_JS),
            swagger_css_url=asset(request, SWAGGER_CSS),
            swagger_favicon_url=asset(request, FAVICON),
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=f"{request.scope.get('root_path', '')}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, REDOC_JS),
            redoc_favicon_url=asset(request, FAVICON),
            with_google_fonts=False,
        )
