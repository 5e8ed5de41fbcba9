"""An item's suspect images: the enrollment quality gate's verdicts on all its images now."""

# No `from __future__ import annotations`: FastAPI evaluates the route's annotations.

from fastapi import APIRouter

from app.authorization import ReadScope
from app.dependencies import ItemIdPath, RetrieverDep, StateDep
from app.schemas import PROBLEM_RESPONSES, SuspectImageResponse, SuspectsResponse
from app.settings import Settings
from store.errors import ItemNotFoundError
from store.records import SuspectImage


def suspect_response(record: SuspectImage) -> SuspectImageResponse:
    return SuspectImageResponse(
        image_id=record.image_id,
        reasons=list(record.reasons),
        own_score=record.own_score,
        spread_z=record.spread_z,
        nearest_other_item=record.nearest_other_item,
        nearest_other_score=record.nearest_other_score,
        quarantined=record.quarantined,
    )


def suspects_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["items"], responses=PROBLEM_RESPONSES)

    @router.get(
        "/items/{item_id}/suspects",
        response_model=SuspectsResponse,
        dependencies=[ReadScope],
        summary="An item's images that look enrolled under the wrong item",
        description=(
            "Every image of the item judged now against its item (the centroid formed without "
            "it) and this replica's index: closer to another item's centroid by more than "
            f"{settings.suspect_margin} (`RETRIEVAL_SUSPECT_MARGIN`), or more than "
            f"{-settings.suspect_min_z:g} item widths below what the item's spread predicts. "
            "An item with one image has no suspects. 404 if the item does not exist."
        ),
    )
    async def suspects(
        item_id: ItemIdPath, state: StateDep, retriever: RetrieverDep
    ) -> SuspectsResponse:
        found = await state.store_lane.run(retriever.item_suspects, item_id)
        if found is None:
            raise ItemNotFoundError(f"item {item_id!r} not found")
        count, records = found
        return SuspectsResponse(
            item_id=item_id,
            image_count=count,
            suspects=[suspect_response(r) for r in records],
        )

    return router
