"""A model migration over HTTP, behind the ``admin`` scope: its status, re-embedding in the
service, switch and rollback (``app/migration_follower.py``; the command is
``centroid-retrieval migrate``)."""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Literal

import anyio.to_thread
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.dependencies import RetrieverDep, StateDep
from app.migration_follower import MigrationFollower, MigrationStateError
from app.problem import problem_response
from app.routes.admin import admin_routes
from app.service_state import ServiceState
from app.settings import Settings
from artifact.preprocess_spec import ContractError
from store.errors import StoreError

log = logging.getLogger(__name__)

MigrationAction = Literal["reembed", "switch", "rollback"]


def migration_router(settings: Settings) -> APIRouter:
    router = admin_routes(
        {
            409: "No migration is recorded, the shadow lacks images (switch), a "
            "re-embedding runs already, or the index is Milvus (no migration there).",
            503: "Not ready yet, or the store is unreachable.",
        }
    )
    reembedding = threading.Lock()  # one background re-embedding per app

    @router.get(
        "/migration",
        summary="The model migration's state, which model serves, the last re-embedding pass",
    )
    async def migration_status(state: StateDep, _: RetrieverDep) -> JSONResponse:
        follower = _follower(state)
        if follower is None:
            return _no_migrations()
        return JSONResponse(follower.status())

    @router.post(
        "/migration",
        summary="Re-embed into the shadow (in the background), switch or roll back",
        description=(
            "`reembed`: re-embed every kept original with the migration's model into its "
            "shadow store, in this process at RETRIEVAL_REEMBED_SHARE of that model's time "
            "(answers 202 at once; GET shows the progress). `switch`: catch up (re-embed what "
            "changed), then serve the new model, on this replica from the next request on and "
            "on the others at their next poll of the store's record. `rollback`: serve the old "
            "model again (it received every write). Start a migration with `centroid-retrieval "
            "migrate --model NEW.onnx`."
        ),
        responses={202: {"description": "`reembed`: started."}},
    )
    async def migration_change(
        state: StateDep,
        _: RetrieverDep,
        action: Annotated[MigrationAction, Query(description="reembed, switch or rollback")],
    ) -> JSONResponse:
        follower = _follower(state)
        if follower is None:
            return _no_migrations()
        if action == "reembed":
            if not reembedding.acquire(blocking=False):
                return problem_response(409, "a re-embedding runs already")
            threading.Thread(
                target=_reembed, args=(follower, reembedding), name="reembed", daemon=True
            ).start()
            return JSONResponse(follower.status(), status_code=202)
        try:
            await anyio.to_thread.run_sync(
                follower.change, action, limiter=anyio.CapacityLimiter(1)
            )
        except (MigrationStateError, StoreError, ContractError, OSError, ValueError) as exc:
            log.warning("migration %s refused: %s", action, exc)
            return problem_response(409, state.redact(f"not done: {exc}"))
        return JSONResponse(follower.status())

    return router


def _follower(state: ServiceState) -> MigrationFollower | None:
    return state.migration


def _no_migrations() -> JSONResponse:
    return problem_response(409, "model migrations need an index of this process (not Milvus)")


def _reembed(follower: MigrationFollower, lock: threading.Lock) -> None:
    try:
        follower.reembed()
    except Exception as exc:
        follower.last_error = f"{type(exc).__name__}: {exc}"
        log.error("migration: the re-embedding failed", exc_info=exc)
    finally:
        lock.release()
