"""Liveness, readiness, service information and Prometheus metrics.

Liveness and readiness answer without a key (probes carry none); ``/info`` needs a valid key of
any scope, ``/metrics`` too when ``metrics_requires_key`` says so.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from app.authorization import AnyKey
from app.circuit_breaker import StoreBreakerOpenError
from app.dependencies import StateDep
from app.problem import problem_response
from app.retriever import Retriever
from app.schemas import AUTH_RESPONSES, InfoResponse
from app.service_state import ServiceState
from app.settings import Settings
from index.index_errors import IndexUnavailableError
from store.errors import StoreUnavailableError

log = logging.getLogger(__name__)


# Longest /readyz waits for the store to answer its ping.
READY_PING_S = 0.8


def health_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @router.get(
        "/readyz",
        summary="Readiness: model loaded, index rebuilt and store reachable",
        responses={503: {"description": "Not ready; `detail` says why."}},
    )
    async def readyz(state: StateDep) -> JSONResponse:
        retriever = state.retriever
        if retriever is None:
            reason = state.failure or f"still {state.phase}"
            return problem_response(503, f"not ready: {reason}", phase=state.phase)
        lane = state.store_lane
        try:
            # Within a second, whatever the store's deadline: a load balancer's probe is short.
            # An open breaker refuses at once; half-open, this ping may be its probe.
            await lane.run(retriever.store.ping, deadline_s=READY_PING_S)
        except StoreBreakerOpenError as exc:
            detail = f"store unreachable: {exc.public_detail}"
            return problem_response(
                503,
                detail,
                retry_after_s=exc.retry_after_s,
                phase="store unreachable",
                store_breaker=lane.breaker_state,
            )
        except StoreUnavailableError as exc:
            log.warning("readiness: store unreachable: %s", exc)
            detail = f"store unreachable: {exc.public_detail}"
            return problem_response(
                503, detail, phase="store unreachable", store_breaker=lane.breaker_state
            )
        follower = state.follower
        if follower is not None:
            # Not behind the load balancer until caught up, nor while lagging far behind (a
            # short lag keeps it in: replicas must not flap).
            if not follower.caught_up:
                return problem_response(
                    503, "not ready: catching up with the change feed", phase="catching up"
                )
            if follower.lag_s > settings.max_replication_lag_s:
                detail = (
                    f"not ready: {follower.lag_s:.1f} s ({follower.lag_records} changes) behind "
                    f"the change feed, over {settings.max_replication_lag_s:g} s"
                )
                return problem_response(503, detail, phase="lagging")
        # A shared index (Milvus) that is down does not make the replica unready: every
        # replica shares it, so taking them all out of the load balancer would serve nobody
        # better, and they would all flap together on each blip. They stay in, answering
        # searches 503 with Retry-After, writes 2xx index_pending or 503 (breaker open); the
        # state is reported here and in the log ("items" is null while Milvus is down).
        return JSONResponse(
            {
                "status": "ready",
                "items": await _index_items(state, retriever),
                "store_breaker": lane.breaker_state,
                "index_breaker": retriever.applier.breaker_state,
            }
        )

    @router.get(
        "/info",
        response_model=InfoResponse,
        dependencies=[AnyKey],
        responses=AUTH_RESPONSES,
        summary="Model contract, counts, limits",
        description=(
            "While start-up is refused because the store holds another model's embeddings, "
            "answers 200 with `status: model mismatch`, `stored_model`, `configured_model` and "
            "`migrate_command` instead."
        ),
    )
    async def info(state: StateDep) -> dict[str, Any] | JSONResponse:
        if state.retriever is None and state.mismatch is not None:
            # Not ready, and never will be with this model: say what the store holds, what is
            # configured, and the command that migrates it (no limits: nothing is served).
            return JSONResponse({"status": "model mismatch", **state.mismatch})
        retriever = state.require_retriever()
        data = await state.store_lane.run(retriever.info)
        migration = state.migration
        if migration is not None and migration.record is not None:
            status = migration.status()
            data["migration"] = {k: status[k] for k in ("state", "active", "serving")}
        s = state.settings
        data["limits"] = {
            "max_request_bytes": s.max_request_bytes,
            "max_image_pixels": s.max_image_pixels,
            "max_images_per_request": s.max_images_per_request,
            "max_attributes_bytes": s.max_attributes_bytes,
            "max_k": s.max_k,
            "default_k": s.default_k,
        }
        return data

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        dependencies=[AnyKey] if settings.metrics_requires_key else [],
        responses=AUTH_RESPONSES if settings.metrics_requires_key else None,
    )
    async def metrics(state: StateDep) -> Response:
        # Collecting asks the store for its counts: not on the event loop.
        body = await run_in_threadpool(generate_latest, state.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router


async def _index_items(state: ServiceState, retriever: Retriever) -> int | None:
    """How many items the index holds: an own index at once; a shared one asks Milvus, on the
    worker threads, and says None when Milvus does not answer."""
    if not retriever.applier.shared:
        return len(retriever.index)
    try:
        with retriever.applier.guarded():
            return await run_in_threadpool(len, retriever.index)
    except IndexUnavailableError:
        return None
