"""Download an enrolled image's original bytes, or (``?size=thumb``) its JPEG thumbnail.

Both are content-addressed: the ``ETag`` is the original's content hash (the thumbnail's adds
its size), so they are cached as immutable, and a request whose ``If-None-Match`` holds the
ETag is answered 304 after one store read, without reading a blob. The thumbnail is made on its
first request and stored as a blob (``app/thumbnails.py``).

404 only when the store has no such image (or originals are not kept). When the store
references the image but this replica cannot read its blob — the backend does not answer, or has
no blob for it here (a shared volume not mounted yet, a lost object) — the answer is 503 with
``Retry-After``: the image exists, and another replica or a later try may serve it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from starlette.concurrency import run_in_threadpool

from app.authorization import ReadScope
from app.dependencies import ImageIdPath, ItemIdPath, RetrieverDep, StateDep
from app.entity_tags import if_none_match_hits
from app.schemas import PROBLEM_RESPONSES
from app.settings import Settings
from app.thumbnails import thumbnail_of
from artifact.thumbnail import THUMBNAIL_LONGEST_SIDE, THUMBNAIL_MEDIA_TYPE
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


ImageSize = Literal["original", "thumb"]
# Content-addressed: these bytes never change under this URL's image id.
CACHE_CONTROL = "private, max-age=31536000, immutable"


def image_etag(content_hash: str, size: ImageSize) -> str:
    """The ETag of an image's original or thumbnail: never the same for the two."""
    if size == "thumb":
        return f'"{content_hash}-thumb{THUMBNAIL_LONGEST_SIDE}"'
    return f'"{content_hash}"'


_ORIGINAL_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The original bytes as enrolled, in the format they were sent in; with "
        f"`size=thumb`, a JPEG whose longest side is at most {THUMBNAIL_LONGEST_SIDE} pixels "
        "(EXIF orientation applied, transparency over white).",
        "content": {m: {"schema": {"type": "string", "format": "binary"}} for m in MEDIA_TYPES},
    },
    304: {"description": "`If-None-Match` holds this ETag: the client's copy is current."},
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
        summary="One image's original bytes, or its thumbnail",
    )
    async def get_image(
        item_id: ItemIdPath,
        image_id: ImageIdPath,
        state: StateDep,
        retriever: RetrieverDep,
        size: Annotated[
            ImageSize,
            Query(
                description="`original`: the bytes as enrolled; `thumb`: a small JPEG "
                f"(longest side at most {THUMBNAIL_LONGEST_SIDE} pixels), made on first request "
                "and kept."
            ),
        ] = "original",
        if_none_match: Annotated[
            str | None, Header(description="ETags the client holds: 304 if this one is among.")
        ] = None,
    ) -> Response:
        blobs = retriever.blobs
        if blobs is None:
            raise ImageNotFoundError("originals are not kept (RETRIEVAL_KEEP_BLOBS is off)")
        content_hash = await state.store_lane.run(
            retriever.store.image_content_hash, item_id, image_id
        )
        etag = image_etag(content_hash, size)
        headers = {
            "X-Content-Type-Options": "nosniff",
            "ETag": etag,
            "Cache-Control": CACHE_CONTROL,
        }
        if if_none_match is not None and if_none_match_hits(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        # Off the store lane: a slow bucket must not take the store's threads.
        if size == "thumb":
            data = await run_in_threadpool(
                thumbnail_of, blobs, content_hash, max_pixels=settings.max_image_pixels
            )
        else:
            data = await run_in_threadpool(blobs.get, content_hash)
        if data is None:
            raise BlobMissingError(
                f"{blobs.describe()} has no blob {content_hash} for image {image_id!r} of "
                f"item {item_id!r}, which the store references"
            )
        media_type = THUMBNAIL_MEDIA_TYPE if size == "thumb" else media_type_of(data)
        return Response(data, media_type=media_type, headers=headers)

    return router
