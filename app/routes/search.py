"""Query by photo, or by several photos of one thing: the top-k items by centroid cosine."""

# No `from __future__ import annotations`: the query limits below close over `settings`, and
# FastAPI must evaluate the annotations where they are defined.

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from app.attribute_requests import FilterQuery, read_filter
from app.authorization import ReadScope
from app.dependencies import FormDep, RetrieverDep, StateDep, admission_gate
from app.query_weights import RULE as WEIGHTS_RULE
from app.query_weights import read_weights
from app.read_your_writes import after_query, wait_for_position
from app.retriever import SearchHit
from app.schemas import PROBLEM_RESPONSES, SearchResponse, SearchResult
from app.settings import Settings
from app.uploads import query_openapi, read_query_uploads


def search_response(hits: list[SearchHit]) -> SearchResponse:
    return SearchResponse(
        results=[
            SearchResult(
                item_id=h.item_id,
                score=h.score,
                attributes=h.attributes,
                best_image_id=h.best_image_id,
                image_score=h.image_score,
                image_count=h.image_count,
                centroid_score=h.centroid_score,
                match=h.match,
                confidence=h.confidence,
            )
            for h in hits
        ]
    )


def top_k_query(settings: Settings) -> Any:
    """The ``k`` of every read that ranks items (``Annotated[int, top_k_query(settings)]``)."""
    return Query(ge=1, le=settings.max_k, description=f"Results, 1..{settings.max_k}.")


MinScoreQuery = Annotated[
    float | None, Query(ge=-1.0, le=1.0, description="Only results with score >= this.")
]


def search_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["search"], responses=PROBLEM_RESPONSES)
    max_files = settings.max_images_per_request

    @router.post(
        "/search",
        response_model=SearchResponse,
        openapi_extra=query_openapi(max_files, WEIGHTS_RULE),
        dependencies=[ReadScope, Depends(admission_gate)],
        summary="Find the items most similar to a photo, or to several photos of one thing",
        description=(
            f"Multipart form field `images`: 1..{max_files} image files, embedded as one batch. "
            "Several files are a set query (views of one object, a tracklet): items are ranked "
            "by `normalize(sum_i w_i * e_i)` over the files' raw embeddings `e_i`, the way an "
            "item's centroid is built from its images. Optional field `weights`: "
            f"{WEIGHTS_RULE}. The field `image` (one file) is a deprecated alias of `images`; "
            "send one of the two. Results are distinct items, best first by `score` (ties by "
            "item id); an empty index gives an empty list; each result carries its item's "
            "`attributes`, its evidence (`best_image_id`, `image_score`, `image_count`, "
            "`centroid_score`) and a verdict (`match`, `confidence`): see `SearchResult`. "
            "`filter=key:value` (repeatable, ANDed) ranks only the items whose attributes "
            "match: still the k best of them. A bad file is a 422 naming it. Limits: "
            f"{settings.max_request_bytes} bytes per request, {settings.max_image_pixels} "
            "pixels per image."
        ),
    )
    async def search(
        request: Request,
        form: FormDep,
        state: StateDep,
        retriever: RetrieverDep,
        k: Annotated[int, top_k_query(settings)] = settings.default_k,
        min_score: MinScoreQuery = None,
        after: Annotated[str | None, after_query(settings)] = None,
        filters: FilterQuery = None,
    ) -> SearchResponse:
        # The form is checked before waiting for a position or a queue place: a malformed
        # request costs nothing.
        where = read_filter(filters)
        uploads = await read_query_uploads(form)
        weights = read_weights(form, len(uploads))
        await wait_for_position(state, retriever, after)
        hits = await state.pipeline.search(
            retriever, uploads, k, min_score, request.receive, weights, where
        )
        return search_response(hits)

    return router
