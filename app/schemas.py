"""Response bodies: the field names here are the public API contract (add keys, never rename)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class EnrollResponse(BaseModel):
    item_id: str
    image_ids: list[str] = Field(description="One per uploaded file, in upload order.")
    image_count: int = Field(description="Images the item holds after this request.")
    position: str = Field(
        description="This write's position (also in `X-Retrieval-Position`): a search with "
        "`after=<position>` on any replica sees it."
    )


class SearchResult(BaseModel):
    item_id: str
    score: float = Field(description="Cosine similarity between the query and the item centroid.")


class SearchResponse(BaseModel):
    results: list[SearchResult]


class ItemResponse(BaseModel):
    item_id: str
    image_count: int
    image_ids: list[str]


class ItemSummaryResponse(BaseModel):
    item_id: str
    image_count: int


class ItemListResponse(BaseModel):
    items: list[ItemSummaryResponse]
    next_cursor: str | None


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str


class InfoResponse(BaseModel):
    model: dict[str, Any]
    embedding_dim: int
    execution_providers: list[str]
    device: str
    items: int
    images: int
    index_items: int
    index_bytes: int
    store_backend: str
    keep_blobs: bool
    index: dict[str, Any] = Field(
        description="The centroid index: `kind` (flat, ivf, milvus) and its parameters."
    )
    limits: dict[str, int]


def _problems(texts: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": Problem, "content": {"application/problem+json": {}}, "description": text}
        for status, text in texts.items()
    }


# The answers of a route behind an API key (app/authorization.py).
AUTH_RESPONSES = _problems(
    {
        401: "No API key, or not a valid one (with a `WWW-Authenticate: Bearer` challenge).",
        403: "The API key lacks the scope this route needs.",
        429: "The API key's request rate is used up; `Retry-After` says when to retry.",
    }
)
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    **_problems(
        {
            404: "Unknown item or image.",
            413: "Request body or image pixel count over the limit.",
            415: "Body is not multipart/form-data.",
            422: "Invalid parameter or an upload that is not a decodable image.",
            503: "Not ready yet, or the store is unreachable (writes).",
        }
    ),
}
