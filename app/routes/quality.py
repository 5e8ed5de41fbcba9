"""How well the gallery finds itself: leave-one-image-out R@1 and MRR on a sample of it
(``app/gallery_quality.py``), cached."""

# No `from __future__ import annotations`: FastAPI must evaluate the annotations where they are
# defined (the query limits).

from typing import Annotated

from fastapi import APIRouter, Query

from app.authorization import ReadScope
from app.dependencies import RetrieverDep, StateDep
from app.gallery_quality import QualityCache, QualityReport, finite_or_none
from app.schemas import (
    AUTH_RESPONSES,
    ItemQualityResponse,
    ModelIdentityResponse,
    QualityResponse,
)
from app.service_state import ServiceState
from app.settings import Settings

MAX_WORST_ITEMS = 1000


def quality_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["quality"], responses=AUTH_RESPONSES)
    # One cache per app (each app builds its routers), made with the app's metrics on first use.
    caches: list[QualityCache] = []

    def cache_of(state: ServiceState) -> QualityCache:
        if not caches:
            caches.append(
                QualityCache(
                    sample_images=settings.quality_sample_images,
                    ttl_s=settings.quality_cache_seconds,
                    metrics=state.metrics,
                )
            )
        return caches[0]

    @router.get(
        "/quality",
        response_model=QualityResponse,
        response_model_exclude_none=False,
        dependencies=[ReadScope],
        responses={503: {"description": "Not ready, or the store did not answer."}},
        summary="Leave-one-image-out retrieval quality of the gallery",
        description=(
            f"Up to {settings.quality_sample_images} images (`RETRIEVAL_QUALITY_SAMPLE_IMAGES`) "
            "of items holding two or more are drawn with a fixed seed; each is searched against "
            "every item's centroid, its own item's formed without it, and its own item's rank "
            "gives R@1 and MRR. Items with one image are counted in `items_left_out`. Cached "
            f"for {settings.quality_cache_seconds:g} s (`RETRIEVAL_QUALITY_CACHE_SECONDS`); an "
            "older answer is returned while the next is computed in the background, so only "
            "the first request (or the first after a model change) waits. `items=true` adds "
            "the worst items."
        ),
    )
    async def quality(
        state: StateDep,
        retriever: RetrieverDep,
        items: Annotated[
            bool, Query(description="Add `worst_items`: the queried items with the lowest MRR.")
        ] = False,
        limit: Annotated[
            int, Query(ge=1, le=MAX_WORST_ITEMS, description="How many `worst_items`.")
        ] = 20,
    ) -> QualityResponse:
        report = await cache_of(state).report(
            retriever.store, retriever.index, state.store_lane, retriever.identity
        )
        return quality_response(report, items, limit, cache_of(state).age_of(report))

    return router


def quality_response(
    report: QualityReport, with_items: bool, limit: int, age_s: float
) -> QualityResponse:
    quality = report.quality
    result, sample = quality.result, quality.sample
    worst = None
    if with_items:
        worst = [
            ItemQualityResponse(item_id=q.item_id, images=q.images, r_at_1=q.r_at_1, mrr=q.mrr)
            for q in result.worst_items(limit)
        ]
    return QualityResponse(
        r_at_1=finite_or_none(result.r_at_1),
        mrr=finite_or_none(result.mrr),
        sample_size=result.queried_images,
        items_left_out=result.single_image_items,
        items=sample.items,
        images=sample.gallery_images,
        eligible_images=sample.eligible_images,
        skipped_images=quality.skipped_images,
        computed_at=report.computed_at.isoformat(),
        age_s=age_s,
        seconds=report.seconds,
        seed=sample.seed,
        model=ModelIdentityResponse(
            name=report.model.name, version=report.model.version, dim=report.model.dim
        ),
        worst_items=worst,
    )
