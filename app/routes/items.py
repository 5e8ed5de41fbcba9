"""Enroll, browse and delete gallery items and their images."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from app.authorization import ReadScope, WriteScope
from app.dependencies import (
    ITEM_ID_PATTERN,
    FormDep,
    ImageIdPath,
    ItemIdPath,
    RetrieverDep,
    StateDep,
    admission_gate,
)
from app.idempotency import IdempotencyDep, as_response, upload_parts
from app.retriever_errors import InvalidCursorError
from app.schemas import (
    INDEX_PENDING_HEADER,
    PROBLEM_RESPONSES,
    EnrollResponse,
    ItemListResponse,
    ItemResponse,
    ItemSummaryResponse,
    write_response,
)
from app.settings import Settings
from app.uploads import multipart_openapi, read_uploads
from app.write_position import HEADER as POSITION_HEADER
from app.write_position import position_token
from store.errors import ItemNotFoundError
from store.mutations import StoredResponse
from store.records import DeleteOutcome, EnrollOutcome


def enrolled(outcome: EnrollOutcome, index_pending: bool = False) -> StoredResponse:
    """An enrollment's answer, rendered once for its first answer and for its recorded replay
    (at commit, before the index update: never ``index_pending``): 201 when it added an image,
    200 when every file was already in the item (nothing was created, so a client can tell a
    re-send from new content by the status alone)."""
    position = position_token(outcome.item)
    body = EnrollResponse(
        item_id=outcome.item.item_id,
        image_ids=outcome.image_ids,
        created=outcome.created,
        image_count=outcome.item.count,
        position=position,
        index_pending=index_pending,
    )
    # The flag only when set, so that the usual answer and its replay stay byte for byte equal.
    json = body.model_dump_json(exclude=None if index_pending else {"index_pending"})
    status = 201 if any(outcome.created) else 200
    return StoredResponse(
        status, json.encode(), "application/json", _write_headers(position, index_pending)
    )


def deleted(outcome: DeleteOutcome, index_pending: bool = False) -> StoredResponse:
    position = position_token(outcome.item)
    return StoredResponse(204, b"", None, _write_headers(position, index_pending))


def _write_headers(position: str, index_pending: bool) -> tuple[tuple[str, str], ...]:
    pending = ((INDEX_PENDING_HEADER, "true"),) if index_pending else ()
    return ((POSITION_HEADER, position), *pending)


def encode_cursor(cursor: str | None) -> str | None:
    return None if cursor is None else base64.urlsafe_b64encode(cursor.encode()).decode()


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        decoded = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursorError(f"invalid cursor {cursor!r}") from exc
    if not re.fullmatch(ITEM_ID_PATTERN, decoded):
        raise InvalidCursorError(f"invalid cursor {cursor!r}")
    return decoded


def items_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["items"], responses=PROBLEM_RESPONSES)
    limits = (
        f"Limits: at most {settings.max_images_per_request} files and "
        f"{settings.max_request_bytes} bytes per request, {settings.max_image_pixels} pixels "
        "per image. Accepted formats (judged by content): JPEG, PNG, WebP, GIF, BMP."
    )

    @router.post(
        "/items/{item_id}/images",
        status_code=201,
        response_model=EnrollResponse,
        responses={
            **write_response(201, "Enrolled: at least one file added an image to the item."),
            200: {
                **write_response(
                    200,
                    "Nothing new: every file's bytes were already in the item; `image_ids` "
                    "are the existing ids and `created` is all `false`.",
                )[200],
                "model": EnrollResponse,
            },
        },
        openapi_extra=multipart_openapi("images", many=True),
        # The key first: a request without one is refused before it takes a queue place.
        dependencies=[WriteScope, Depends(admission_gate)],
        summary="Enroll gallery images of an item",
        description=(
            "Multipart form field `images`: one or more image files, embedded as one batch. "
            "All or nothing: one bad file rejects the request. Re-sending bytes the item "
            "already has is a no-op that returns the existing image id (`created: false`); "
            "a request that adds nothing new is answered 200 instead of 201. " + limits
        ),
    )
    async def enroll(
        request: Request,
        item_id: ItemIdPath,
        form: FormDep,
        state: StateDep,
        retriever: RetrieverDep,
        idempotent: IdempotencyDep,
    ) -> Response:
        uploads = await read_uploads(form, "images")
        claim = None
        if idempotent is not None:
            fingerprint = idempotent.fingerprint(upload_parts(uploads))
            claim = idempotent.claim(fingerprint, enrolled)
            # A retry whose answer is recorded costs one store read, not an inference.
            await state.store_lane.run(retriever.replay_if_recorded, claim)
        result = await state.pipeline.enroll(retriever, item_id, uploads, request.receive, claim)
        return as_response(enrolled(result.outcome, result.index_pending))

    @router.get(
        "/items/{item_id}",
        response_model=ItemResponse,
        dependencies=[ReadScope],
        summary="One item",
    )
    async def get_item(
        item_id: ItemIdPath, state: StateDep, retriever: RetrieverDep
    ) -> ItemResponse:
        record = await state.store_lane.run(retriever.get_item, item_id)
        if record is None:
            raise ItemNotFoundError(f"item {item_id!r} not found")
        return ItemResponse(
            item_id=record.item_id, image_count=len(record.image_ids), image_ids=record.image_ids
        )

    @router.get(
        "/items",
        response_model=ItemListResponse,
        dependencies=[ReadScope],
        summary="Items, by item id",
    )
    async def list_items(
        state: StateDep,
        retriever: RetrieverDep,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[
            str | None, Query(description="`next_cursor` of the previous page")
        ] = None,
    ) -> ItemListResponse:
        page, next_cursor = await state.store_lane.run(
            retriever.list_items, limit, decode_cursor(cursor)
        )
        return ItemListResponse(
            items=[ItemSummaryResponse(item_id=s.item_id, image_count=s.image_count) for s in page],
            next_cursor=encode_cursor(next_cursor),
        )

    @router.delete(
        "/items/{item_id}",
        status_code=204,
        dependencies=[WriteScope],
        responses=write_response(204, "Deleted."),
        summary="Delete an item and its images",
    )
    async def delete_item(
        item_id: ItemIdPath, state: StateDep, retriever: RetrieverDep, idempotent: IdempotencyDep
    ) -> Response:
        claim = None if idempotent is None else idempotent.claim(idempotent.fingerprint(), deleted)
        result = await state.store_lane.run_write(
            item_id, retriever.reconciler.mark, retriever.delete_item, item_id, claim
        )
        return as_response(deleted(result.outcome, result.index_pending))

    @router.delete(
        "/items/{item_id}/images/{image_id}",
        status_code=204,
        dependencies=[WriteScope],
        responses=write_response(204, "Deleted."),
        summary="Delete one image (the item goes with its last image)",
    )
    async def delete_image(
        item_id: ItemIdPath,
        image_id: ImageIdPath,
        state: StateDep,
        retriever: RetrieverDep,
        idempotent: IdempotencyDep,
    ) -> Response:
        claim = None if idempotent is None else idempotent.claim(idempotent.fingerprint(), deleted)
        result = await state.store_lane.run_write(
            item_id, retriever.reconciler.mark, retriever.delete_image, item_id, image_id, claim
        )
        return as_response(deleted(result.outcome, result.index_pending))

    return router
