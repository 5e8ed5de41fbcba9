"""Enroll, browse, annotate and delete gallery items and their images."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from app.attribute_requests import (
    ATTRIBUTES_FIELD,
    FILTER_DESCRIPTION,
    MERGE_PATCH_JSON,
    FilterQuery,
    read_attributes_field,
    read_filter,
    read_merge_patch,
)
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
from app.routes.suspects import suspect_response
from app.schemas import (
    PROBLEM_RESPONSES,
    EnrollResponse,
    ItemListResponse,
    ItemResponse,
    ItemSummaryResponse,
    PatchResponse,
    write_headers,
    write_response,
)
from app.settings import Settings
from app.uploads import multipart_openapi, read_uploads
from app.write_position import position_token
from store.errors import ItemNotFoundError
from store.mutations import StoredResponse
from store.records import DeleteOutcome, EnrollOutcome, PatchOutcome


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
        suspects=[suspect_response(s) for s in outcome.suspects],
        position=position,
        index_pending=index_pending,
    )
    # The flag only when set, so that the usual answer and its replay stay byte for byte equal.
    json = body.model_dump_json(exclude=None if index_pending else {"index_pending"})
    status = 201 if any(outcome.created) else 200
    return StoredResponse(
        status, json.encode(), "application/json", write_headers(position, index_pending)
    )


def patched(outcome: PatchOutcome, index_pending: bool = False) -> StoredResponse:
    """A PATCH's answer, for its first answer and its recorded replay (as ``enrolled``)."""
    position = position_token(outcome.item)
    body = PatchResponse(
        item_id=outcome.item.item_id,
        image_count=outcome.item.count,
        attributes=outcome.item.attributes,
        position=position,
        index_pending=index_pending,
    )
    json = body.model_dump_json(exclude=None if index_pending else {"index_pending"})
    return StoredResponse(
        200, json.encode(), "application/json", write_headers(position, index_pending)
    )


def _enroll_openapi() -> dict[str, object]:
    """The multipart body of an enrollment: ``images`` and the optional ``attributes``."""
    extra = multipart_openapi("images", many=True)
    schema = extra["requestBody"]["content"]["multipart/form-data"]["schema"]  # type: ignore[index]
    schema["properties"][ATTRIBUTES_FIELD] = {
        "type": "string",
        "description": "Optional: a JSON object merged into the item's attributes (RFC 7396: "
        "null deletes a key, objects merge) in the same transaction as the images.",
    }
    return extra


def deleted(outcome: DeleteOutcome, index_pending: bool = False) -> StoredResponse:
    position = position_token(outcome.item)
    return StoredResponse(204, b"", None, write_headers(position, index_pending))


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
        openapi_extra=_enroll_openapi(),
        # The key first: a request without one is refused before it takes a queue place.
        dependencies=[WriteScope, Depends(admission_gate)],
        summary="Enroll gallery images of an item",
        description=(
            "Multipart form field `images`: one or more image files, embedded as one batch. "
            "All or nothing: one bad file rejects the request. Re-sending bytes the item "
            "already has is a no-op that returns the existing image id (`created: false`); "
            "a request that adds nothing new is answered 200 instead of 201. Optional field "
            "`attributes`: a JSON object merged into the item's attributes (RFC 7396) in the "
            "same transaction; invalid JSON, not an object, or attributes over "
            f"{settings.max_attributes_bytes} bytes after the merge: 422, nothing stored. " + limits
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
        attributes = await read_attributes_field(form, settings.max_attributes_bytes)
        patch = None if attributes is None else attributes[0]
        claim = None
        if idempotent is not None:
            # The attributes' bytes only when sent: a key recorded without them still matches.
            extra = [] if attributes is None else [ATTRIBUTES_FIELD.encode(), attributes[1]]
            fingerprint = idempotent.fingerprint(upload_parts(uploads) + extra)
            claim = idempotent.claim(fingerprint, enrolled)
            # A retry whose answer is recorded costs one store read, not an inference.
            await state.store_lane.run(retriever.replay_if_recorded, claim)
        result = await state.pipeline.enroll(
            retriever,
            item_id,
            uploads,
            request.receive,
            claim,
            patch,
            settings.max_attributes_bytes,
        )
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
            item_id=record.item_id,
            image_count=len(record.image_ids) - len(record.quarantined_image_ids),
            image_ids=record.image_ids,
            attributes=record.attributes,
            quarantined_image_ids=record.quarantined_image_ids,
        )

    @router.patch(
        "/items/{item_id}",
        response_model=PatchResponse,
        dependencies=[WriteScope],
        responses={
            **write_response(200, "Merged: the item after the patch."),
            415: {
                **PROBLEM_RESPONSES[415],
                "description": f"The body is not `{MERGE_PATCH_JSON}`.",
            },
            422: {
                **PROBLEM_RESPONSES[422],
                "description": "Not JSON, not an object, or attributes over "
                f"{settings.max_attributes_bytes} bytes after the merge: nothing written.",
            },
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {MERGE_PATCH_JSON: {"schema": {"type": "object"}}},
            }
        },
        summary="Change an item's attributes (JSON merge patch)",
        description=(
            f"Body `{MERGE_PATCH_JSON}` (RFC 7396): a JSON object merged into the item's "
            "attributes: `null` deletes a key, an object merges into the key's object, any "
            "other value replaces. At most "
            f"{settings.max_attributes_bytes} bytes of compact JSON after the merge. A patch "
            "that changes nothing writes nothing (same position). Filter terms and search "
            "results follow on every replica (`after=` the answer's position)."
        ),
    )
    async def patch_item(
        request: Request,
        item_id: ItemIdPath,
        state: StateDep,
        retriever: RetrieverDep,
        idempotent: IdempotencyDep,
    ) -> Response:
        patch, raw = await read_merge_patch(request, settings.max_attributes_bytes)
        claim = None
        if idempotent is not None:
            claim = idempotent.claim(idempotent.fingerprint([raw]), patched)
        result = await state.store_lane.run_write(
            item_id,
            retriever.reconciler.mark,
            retriever.patch_attributes,
            item_id,
            patch,
            settings.max_attributes_bytes,
            claim,
        )
        return as_response(patched(result.outcome, result.index_pending))

    @router.get(
        "/items",
        response_model=ItemListResponse,
        dependencies=[ReadScope],
        summary="Items, by item id",
        description=(
            "Pages of items in item id order with their attributes; `filter` keeps only the "
            "items matching it (a page of a rare filter scans up to every item). "
            + FILTER_DESCRIPTION
        ),
    )
    async def list_items(
        state: StateDep,
        retriever: RetrieverDep,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[
            str | None, Query(description="`next_cursor` of the previous page")
        ] = None,
        filters: FilterQuery = None,
    ) -> ItemListResponse:
        where = read_filter(filters)
        page, next_cursor = await state.store_lane.run(
            retriever.list_items, limit, decode_cursor(cursor), where
        )
        return ItemListResponse(
            items=[
                ItemSummaryResponse(
                    item_id=s.item_id, image_count=s.image_count, attributes=s.attributes
                )
                for s in page
            ],
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
