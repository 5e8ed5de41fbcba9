"""Search by item: the items whose centroids are most like an enrolled item's (duplicate
listings, confusable identities)."""

# No `from __future__ import annotations`: the query limits below close over `settings`, and
# FastAPI must evaluate the annotations where they are defined.

from typing import Annotated

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.attribute_requests import FilterQuery, read_filter
from app.authorization import ReadScope
from app.dependencies import ItemIdPath, RetrieverDep, StateDep
from app.read_your_writes import after_query, wait_for_position
from app.routes.search import MinScoreQuery, search_response, top_k_query
from app.schemas import PROBLEM_RESPONSES, SearchResponse
from app.settings import Settings


def neighbours_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["search"], responses=PROBLEM_RESPONSES)

    @router.get(
        "/items/{item_id}/neighbours",
        response_model=SearchResponse,
        dependencies=[ReadScope],
        summary="Find the items most similar to an enrolled item",
        description=(
            "Other items ranked with this item's centroid as the query (by centroid cosine, "
            "re-ranked by their images in `two_stage`), best first (ties by item id), with "
            "the same evidence and verdicts; the item itself is never among them. Same answer "
            "as `POST /search`, `filter` included (the k best others among the matching "
            "items). 404 if the item is not in this replica's index (send `after=` with the "
            "enrollment's position to wait for it)."
        ),
    )
    async def neighbours(
        item_id: ItemIdPath,
        state: StateDep,
        retriever: RetrieverDep,
        k: Annotated[int, top_k_query(settings)] = settings.default_k,
        min_score: MinScoreQuery = None,
        after: Annotated[str | None, after_query(settings)] = None,
        filters: FilterQuery = None,
    ) -> SearchResponse:
        where = read_filter(filters)
        await wait_for_position(state, retriever, after)
        # Index work only (no model): a worker thread, not the admission queue.
        hits = await run_in_threadpool(retriever.neighbours, item_id, k, min_score, where)
        return search_response(hits)

    return router
