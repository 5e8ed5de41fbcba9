"""The FastAPI application: ``uvicorn app.main:create_app --factory``.

One process (one uvicorn worker) per instance; concurrency comes from a thread pool that runs
decoding, inference, index and store work off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.access_policy import AccessPolicy
from app.authorization import install_access_handlers
from app.body_limit import BodyLimitMiddleware
from app.bytes_in_flight import BytesInFlight
from app.circuit_breaker import install_breaker_handlers
from app.idempotency import install_idempotency_handlers
from app.index_breaker import install_index_handlers
from app.metrics import RequestMetricsMiddleware
from app.offline_docs import install_offline_docs
from app.problem import install_problem_handlers
from app.routes import (
    admin_router,
    health_router,
    image_quarantine_router,
    images_router,
    items_router,
    migration_router,
    neighbours_router,
    quality_router,
    search_router,
    suspects_router,
)
from app.service_state import ServiceState
from app.settings import Settings
from app.web_page import install_web_page

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Unusable key lines stop the start here, before the model loads.
    access = AccessPolicy.from_settings(settings)
    _log_access(access)
    state = ServiceState(settings=settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        state.start_loading()
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        title="Centroid image retrieval",
        version="0.1.0",
        summary="Enroll gallery photos per item; query with a photo; items ranked by centroid.",
        description=(
            "Each item is one centroid: the L2-normalised mean of its gallery embeddings "
            "(Wieczorek et al., 2021). Errors are RFC 9457 `application/problem+json`. "
            f"Limits: {settings.max_request_bytes} bytes per request, "
            f"{settings.max_images_per_request} files per enrollment, "
            f"{settings.max_image_pixels} pixels per image, k <= {settings.max_k}."
        ),
        lifespan=lifespan,
        # Served from the installed package instead of FastAPI's CDN pages (app/offline_docs.py).
        docs_url=None,
        redoc_url=None,
    )
    install_offline_docs(app)
    install_web_page(app)
    app.state.service = state
    app.state.access = access
    install_problem_handlers(app)
    install_breaker_handlers(app)
    install_index_handlers(app)
    install_access_handlers(app)
    install_idempotency_handlers(app)
    routers = [
        items_router(settings),
        images_router(settings),
        image_quarantine_router(settings),
        search_router(settings),
        neighbours_router(settings),
        suspects_router(settings),
        quality_router(settings),
        health_router(settings),
        admin_router(settings),
        migration_router(settings),
    ]
    for router in routers:
        app.include_router(router)
    # The last added is the outermost. The body limit wraps the app, so it sees the body before
    # anything parses it; the request metrics wrap the body limit, so its 413s are counted
    # (with their route, and their own status rather than the 500 of an escaping error).
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        bytes_in_flight=BytesInFlight(settings.max_bytes_in_flight, metrics=state.metrics),
    )
    app.add_middleware(
        RequestMetricsMiddleware,
        metrics=state.metrics,
        # The routers' own routes: the app's list holds the included routers, not their paths.
        routes=[route for router in routers for route in router.routes],
    )
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        # Outermost, so every answer (a 401 or 413 too) carries the headers a browser needs to
        # read it, and preflights are answered before anything counts or limits them. Keys
        # travel in headers, never cookies: no credentials mode.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=["Retry-After", "WWW-Authenticate"],
            max_age=600,
        )
    return app


def _log_access(access: AccessPolicy) -> None:
    if access.keys_required:
        log.info("API keys required: %d configured", len(access.keyring))
    elif access.allow_anonymous:
        log.warning(
            "no API keys and RETRIEVAL_ALLOW_ANONYMOUS=true: anyone who can reach this service "
            "may search, enroll and delete"
        )
    else:
        log.info("no API keys configured: requests without a key are answered over loopback only")
