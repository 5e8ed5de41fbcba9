"""Hold one image out of its item's centroid, or bring it back: the quarantine's manual side.

The quality gate quarantines what it flags when ``RETRIEVAL_QUARANTINE_SUSPECTS`` is set; a
reviewer releases an image it got wrong (or quarantines one by hand) here. Either way it is a
write like the others: the item lock, a new version and change record, the position header,
``Idempotency-Key`` honoured.
"""

# No `from __future__ import annotations`: FastAPI evaluates the route's annotations.

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.authorization import WriteScope
from app.dependencies import ImageIdPath, ItemIdPath, RetrieverDep, StateDep
from app.idempotency import IdempotencyDep, as_response
from app.request_body import require_media_type
from app.schemas import (
    PROBLEM_RESPONSES,
    ImageQuarantineRequest,
    ImageQuarantineResponse,
    write_headers,
    write_response,
)
from app.settings import Settings
from app.write_position import position_token
from store.mutations import StoredResponse
from store.records import PatchOutcome


def quarantine_answer(
    image_id: str, quarantined: bool, outcome: PatchOutcome, index_pending: bool = False
) -> StoredResponse:
    """The answer, for the first response and its recorded replay."""
    position = position_token(outcome.item)
    body = ImageQuarantineResponse(
        item_id=outcome.item.item_id,
        image_id=image_id,
        quarantined=quarantined,
        image_count=outcome.item.count,
        position=position,
        index_pending=index_pending,
    )
    json = body.model_dump_json(exclude=None if index_pending else {"index_pending"})
    return StoredResponse(200, json.encode(), JSON, write_headers(position, index_pending))


JSON = "application/json"


async def read_quarantine_request(request: Request) -> tuple[ImageQuarantineRequest, bytes]:
    """The body, read only once the route's key and scope were checked (a parameter of the
    route would be read before them): 415 unless JSON, 422 (problem+json) unless
    ``{"quarantined": bool}``; and the raw bytes."""
    require_media_type(request, JSON)
    raw = await request.body()
    try:
        return ImageQuarantineRequest.model_validate_json(raw), raw
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def image_quarantine_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["items"], responses=PROBLEM_RESPONSES)

    @router.patch(
        "/items/{item_id}/images/{image_id}",
        response_model=ImageQuarantineResponse,
        dependencies=[WriteScope],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": ImageQuarantineRequest.model_json_schema()}},
            }
        },
        responses={
            **write_response(200, "The image is so now; the item's counted images."),
            409: {
                **PROBLEM_RESPONSES[422],
                "description": "The image is the last one counted in its item: an item keeps "
                "at least one image in its centroid (delete the image or the item instead). "
                "Nothing written.",
            },
        },
        summary="Hold an image out of its item's centroid, or count it again",
        description=(
            'Body `{"quarantined": true}`: the image is kept (listed in `GET /items/{item_id}` '
            "under `quarantined_image_ids`, downloadable) but out of the item's centroid, "
            'spread, evidence and every query; `{"quarantined": false}` counts it again. The '
            "item's sums are recomputed from its counted images in enrollment order. An image "
            "already so writes nothing (same position). "
            + (
                "The quality gate quarantines the images it flags at enrollment "
                "(`RETRIEVAL_QUARANTINE_SUSPECTS` is on)."
                if settings.quarantine_suspects
                else "With `RETRIEVAL_QUARANTINE_SUSPECTS` the quality gate quarantines "
                "the images it flags at enrollment (off here: it only flags them)."
            )
        ),
    )
    async def set_image_quarantine(
        request: Request,
        item_id: ItemIdPath,
        image_id: ImageIdPath,
        state: StateDep,
        retriever: RetrieverDep,
        idempotent: IdempotencyDep,
    ) -> Response:
        body, raw = await read_quarantine_request(request)
        claim = None
        if idempotent is not None:

            def respond(outcome: PatchOutcome) -> StoredResponse:
                return quarantine_answer(image_id, body.quarantined, outcome)

            fingerprint = idempotent.fingerprint([raw])
            claim = idempotent.claim(fingerprint, respond)
        result = await state.store_lane.run_write(
            item_id,
            retriever.reconciler.mark,
            retriever.set_image_quarantine,
            item_id,
            image_id,
            body.quarantined,
            claim,
        )
        return as_response(
            quarantine_answer(image_id, body.quarantined, result.outcome, result.index_pending)
        )

    return router
