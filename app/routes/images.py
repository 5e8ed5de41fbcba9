"""Download an enrolled image's original bytes.

404 only when the store has no such image (or originals are not kept). When the store
references the image but this replica cannot read its blob — the backend does not answer, or has
no blob for it here (a shared volume not mounted yet, a lost object) — the answer is 503 with
``Retry-After``: the image exists, and another replica or a later try may serve it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from app.authorization import ReadScope
from app.dependencies import ImageIdPath, ItemIdPath, RetrieverDep, StateDep
from app.schemas import PROBLEM_RESPONSES
from app.settings import Settings
from store.blob_backend import BlobMissingError
from store.errors import ImageNotFoundError

# Leading bytes → media type, for the formats enrollment accepts (artifact/image_decode.py).
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF8", "image/gif"),
    (8, b"WEBP", "image/webp"),
    (0, b"BM", "image/bmp"),
)
OCTET_STREAM = "application/octet-stream"
MEDIA_TYPES = (*(media for _, _, media in _SIGNATURES), OCTET_STREAM)


def media_type_of(data: bytes) -> str:
    for offset, signature, media in _SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return media
    return OCTET_STREAM


_ORIGINAL_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The original bytes as enrolled, in the format they were sent in.",
        "content": {m: {"schema": {"type": "string", "format": "binary"}} for m in MEDIA_TYPES},
    },
    404: {"description": "No such item or image, or originals are not kept."},
    503: {
        "description": "The store references the image but this replica cannot read its "
        "original now (blob backend unreachable, or no blob here): retry after Retry-After."
    },
}


def images_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["items"], responses=PROBLEM_RESPONSES)

    @router.get(
        "/items/{item_id}/images/{image_id}",
        dependencies=[ReadScope],
        response_class=Response,
        responses=_ORIGINAL_RESPONSE,
        summary="One image's original bytes",
    )
    async def get_image(
        item_id: ItemIdPath, image_id: ImageIdPath, state: StateDep, retriever: RetrieverDep
    ) -> Response:
        blobs = retriever.blobs
        if blobs is None:
            raise ImageNotFoundError("originals are not kept (RETRIEVAL_KEEP_BLOBS is off)")
        content_hash = await state.store_lane.run(
            retriever.store.image_content_hash, item_id, image_id
        )
        # Off the store lane: a slow bucket must not take the store's threads.
        data = await run_in_threadpool(blobs.get, content_hash)
        if data is None:
            raise BlobMissingError(
                f"{blobs.describe()} has no blob {content_hash} for image {image_id!r} of "
                f"item {item_id!r}, which the store references"
            )
        return Response(
            data,
            media_type=media_type_of(data),
            headers={
                "X-Content-Type-Options": "nosniff",
                # Content-addressed: these bytes never change under this URL's image id.
                "ETag": f'"{content_hash}"',
                "Cache-Control": "private, max-age=31536000, immutable",
            },
        )

    return router
