"""Query by photo: the top-k items by centroid cosine similarity."""

# No `from __future__ import annotations`: the query limits below close over `settings`, and
# FastAPI must evaluate the annotations where they are defined.

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.authorization import ReadScope
from app.dependencies import FormDep, RetrieverDep, StateDep, admission_gate
from app.schemas import PROBLEM_RESPONSES, SearchResponse, SearchResult
from app.settings import Settings
from app.uploads import multipart_openapi, read_uploads
from app.write_position import TOKEN_PATTERN, wait_applied
from artifact.image_decode import ImageDecodeError


def search_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["search"], responses=PROBLEM_RESPONSES)

    @router.post(
        "/search",
        response_model=SearchResponse,
        openapi_extra=multipart_openapi("image", many=False),
        dependencies=[ReadScope, Depends(admission_gate)],
        summary="Find the items most similar to a photo",
        description=(
            "Multipart form field `image`: one image file. Results are distinct items, best "
            "first (ties by item id); an empty index gives an empty list. Limits: "
            f"{settings.max_request_bytes} bytes per request, {settings.max_image_pixels} pixels."
        ),
    )
    async def search(
        request: Request,
        form: FormDep,
        state: StateDep,
        retriever: RetrieverDep,
        k: Annotated[
            int, Query(ge=1, le=settings.max_k, description=f"Results, 1..{settings.max_k}.")
        ] = settings.default_k,
        min_score: Annotated[
            float | None, Query(ge=-1.0, le=1.0, description="Only results with score >= this.")
        ] = None,
        after: Annotated[
            str | None,
            Query(
                pattern=TOKEN_PATTERN,
                description="A write's position (`X-Retrieval-Position`): answer only once "
                "this replica has applied that write (503 with `Retry-After` if it has not "
                f"within {settings.read_after_timeout_ms} ms).",
            ),
        ] = None,
    ) -> SearchResponse:
        if after is not None:
            # Other replicas write only with a change feed to follow.
            last_version = (
                None
                if state.follower is None
                else partial(state.store_lane.run, retriever.store.last_version)
            )
            await wait_applied(
                retriever.applier, after, settings.read_after_timeout_ms / 1000, last_version
            )
        uploads = await read_uploads(form, "image")
        if len(uploads) != 1:
            raise ImageDecodeError(f"form field 'image' must hold one file, got {len(uploads)}")
        upload = uploads[0]
        hits = await state.pipeline.search(retriever, upload, k, min_score, request.receive)
        return SearchResponse(
            results=[SearchResult(item_id=h.item_id, score=h.score) for h in hits]
        )

    return router
