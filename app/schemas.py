"""Response bodies: the field names here are the public API contract (add keys, never rename)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.write_position import HEADER as POSITION_HEADER

# Sent (``true``) with a 2xx write that the store committed but the shared index (Milvus) could
# not take yet; absent otherwise.
INDEX_PENDING_HEADER = "X-Retrieval-Index-Pending"
INDEX_PENDING_DESCRIPTION = (
    "Present (`true`) when the store committed this write but the centroid index (Milvus) was "
    "unreachable: the write is durable and is applied to the index from the store once Milvus "
    "answers (within seconds of its return); until then searches may not show it. Absent "
    "otherwise, and in an idempotent replay (recorded at commit)."
)


class SuspectImageResponse(BaseModel):
    """An image the quality gate flags as probably enrolled under the wrong item."""

    image_id: str
    reasons: list[str] = Field(
        description="`closer_to_other_item`: its cosine to another item's centroid exceeds its "
        "cosine to its own item's centroid formed without it by more than "
        "`RETRIEVAL_SUSPECT_MARGIN`; `outside_item_spread`: that own cosine sits more than "
        "`-RETRIEVAL_SUSPECT_MIN_Z` item widths below what the item's spread predicts."
    )
    own_score: float = Field(description="Cosine to the item's centroid formed without it.")
    spread_z: float = Field(
        description="(own_score - expected) / (1 - expected), the expected cosine from the "
        "spread of the item's other images."
    )
    nearest_other_item: str | None = Field(
        description="The other item whose centroid is nearest (null: no other item)."
    )
    nearest_other_score: float | None = Field(description="Its cosine.")
    quarantined: bool = Field(
        False,
        description="Held out of its item's centroid, spread, evidence and queries (kept).",
    )


class SuspectsResponse(BaseModel):
    item_id: str
    image_count: int
    suspects: list[SuspectImageResponse] = Field(
        description="The item's suspect images, in enrollment order; [] when none."
    )


class EnrollResponse(BaseModel):
    item_id: str
    image_ids: list[str] = Field(
        description="One per uploaded file, in upload order; a file whose bytes the item "
        "already held (or that repeats an earlier file of this request) gets the existing id."
    )
    created: list[bool] = Field(
        description="One per uploaded file, in upload order: `true` where this request added "
        "the image, `false` for a duplicate. All `false` is answered 200 instead of 201."
    )
    image_count: int = Field(
        description="Images counted in the item's centroid after this request (quarantined "
        "ones are held but not counted)."
    )
    suspects: list[SuspectImageResponse] = Field(
        default_factory=list,
        description="The images this request added that the quality gate flags (stored "
        "all the same, and with `RETRIEVAL_QUARANTINE_SUSPECTS` held out of the item's "
        "centroid: `quarantined`; `GET /items/{item_id}/suspects` lists the item's suspects "
        "now).",
    )
    position: str = Field(
        description="This write's position (also in `X-Retrieval-Position`): a search with "
        "`after=<position>` on any replica sees it."
    )
    index_pending: bool = Field(
        False,
        description=f"Only present, `true`, as `{INDEX_PENDING_HEADER}` is: "
        + INDEX_PENDING_DESCRIPTION,
    )


ATTRIBUTES_DESCRIPTION = (
    "The item's attributes: a JSON object ({} when none), set by the enrollment's `attributes` "
    "field and by `PATCH /items/{item_id}` (RFC 7396 merge)."
)


class SearchResult(BaseModel):
    """One result of ``/search`` or ``/items/{item_id}/neighbours``. Every field is present in
    both ranking modes (``RETRIEVAL_RANKING``)."""

    item_id: str
    score: float = Field(
        description="The ranking score, by which results are ordered (descending; ties by item "
        "id) and `min_score` cuts: with `RETRIEVAL_RANKING=two_stage` (the default) the fused "
        "score `alpha * centroid_score + (1 - alpha) * image_score` (`alpha` in `/info`'s "
        "`ranking`), with `centroid` the `centroid_score`. Not a probability: see `confidence`."
    )
    best_image_id: str | None = Field(
        description="The item's image most similar to the query (highest cosine; the first "
        "enrolled of equals). `null` only when the item's images could not be read (the store "
        "unreachable while they are read from it): then `image_score` is the centroid score."
    )
    image_score: float = Field(
        description="Cosine similarity between the query and `best_image_id`'s embedding "
        "(unit, float16)."
    )
    image_count: int = Field(
        description="Images the item holds (with `best_image_id` `null`: as this replica last "
        "saw it, 0 if it saw none)."
    )
    centroid_score: float = Field(
        description="Cosine similarity between the query and the item centroid (the L2-"
        "normalised mean of its images' embeddings)."
    )
    match: bool = Field(
        description="Whether the query is judged to show this item: `confidence >= 0.5`. The "
        "rule compares `mean(centroid_score, image_score)` with what the item's own spread "
        "(how alike its images are) predicts for a new photo of it, so it is not one flat cut "
        "on `score`; items with one image use a measured prior. Always `false` for a "
        "degenerate query (blank, uniform-colour or tiny images: every file of a set query)."
    )
    confidence: float = Field(
        description="0..1: the calibrated likelihood that the query shows this item (a "
        "logistic fit on real photos of enrolled against not-enrolled items); 0 for a "
        "degenerate query."
    )
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        description=ATTRIBUTES_DESCRIPTION + " As this replica's index reflects the item.",
    )


class SearchResponse(BaseModel):
    results: list[SearchResult]


class ItemResponse(BaseModel):
    item_id: str
    image_count: int = Field(
        description="Images counted in the item's centroid (as everywhere in the API): its "
        "image ids less its quarantined ones."
    )
    image_ids: list[str] = Field(description="In enrollment order, quarantined ones included.")
    attributes: dict[str, Any] = Field(default_factory=dict, description=ATTRIBUTES_DESCRIPTION)
    quarantined_image_ids: list[str] = Field(
        default_factory=list,
        description="The images held out of the item's centroid, spread, evidence and queries "
        "(kept and listed; `PATCH /items/{item_id}/images/{image_id}` releases one), in "
        "enrollment order.",
    )


class ImageQuarantineRequest(BaseModel):
    quarantined: bool = Field(
        description="`true`: hold the image out of its item's centroid, spread, evidence and "
        "queries (kept, listed); `false`: count it again."
    )


class ImageQuarantineResponse(BaseModel):
    item_id: str
    image_id: str
    quarantined: bool
    image_count: int = Field(description="Images counted in the item's centroid now.")
    position: str = Field(
        description="This write's position (also in `X-Retrieval-Position`); unchanged when "
        "the image already was so (nothing written)."
    )
    index_pending: bool = Field(
        False,
        description=f"Only present, `true`, as `{INDEX_PENDING_HEADER}` is: "
        + INDEX_PENDING_DESCRIPTION,
    )


class PatchResponse(BaseModel):
    """The item after a ``PATCH /items/{item_id}``: ``ItemResponse`` without the image ids (the
    answer is recorded for idempotent replay in the write's transaction, which reads no
    images), with the write's position."""

    item_id: str
    image_count: int
    attributes: dict[str, Any] = Field(description="The item's attributes after the merge.")
    position: str = Field(
        description="This write's position (also in `X-Retrieval-Position`): a search with "
        "`after=<position>` on any replica sees it. A patch that changed nothing leaves the "
        "item's version, and so its position, as it was."
    )
    index_pending: bool = Field(
        False,
        description=f"Only present, `true`, as `{INDEX_PENDING_HEADER}` is: "
        + INDEX_PENDING_DESCRIPTION,
    )


class ItemSummaryResponse(BaseModel):
    item_id: str
    image_count: int
    attributes: dict[str, Any] = Field(default_factory=dict, description=ATTRIBUTES_DESCRIPTION)


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
    attributes: dict[str, int] = Field(
        description="Item attributes held in memory for search results: `items` (with any "
        "attributes) and `bytes` (approximate)."
    )
    image_embeddings: dict[str, int | str] = Field(
        description="Per-image embeddings for the second stage: `mode` (`memory`: held here; "
        "`warming`: being read from the store after a start, searches read their candidates' "
        "images from the store meanwhile; `store`: read from the store per search, over "
        "`budget_bytes` or with the milvus index), `bytes` held (approximate), "
        "`budget_bytes`, and the `items` and `images` held."
    )
    ranking: dict[str, float | int | str] = Field(
        description="`mode` (`two_stage` or `centroid`), `candidates` (M, the items the index "
        "proposes) and `alpha` (the fusion's weight of the centroid score)."
    )
    limits: dict[str, int]
    migration: dict[str, Any] | None = Field(
        None,
        description="While a model migration is recorded: its `state`, which model is "
        "`active` (source or target) and the `serving` model's identity.",
    )


class ItemQualityResponse(BaseModel):
    item_id: str
    images: int = Field(description="The item's images that were queried.")
    r_at_1: float = Field(description="Share of them whose own item ranked first.")
    mrr: float = Field(description="Mean of 1 / the own item's rank over them.")


class ModelIdentityResponse(BaseModel):
    name: str
    version: str
    dim: int


class QualityResponse(BaseModel):
    """``GET /quality``: leave-one-image-out retrieval over a sample of the gallery."""

    r_at_1: float | None = Field(
        description="Share of the queried images whose own item ranks first among every item, "
        "its centroid formed without the image (a tie with another item counts as a miss); "
        "null when no image could be queried."
    )
    mrr: float | None = Field(description="Mean reciprocal rank of the own item; null likewise.")
    sample_size: int = Field(description="Images queried.")
    items_left_out: int = Field(
        description="Items with a single image: no centroid is left without it, so they are "
        "not queried (they still compete as others' wrong answers)."
    )
    items: int = Field(description="Items in the gallery when sampled.")
    images: int = Field(description="Images in the gallery when sampled.")
    eligible_images: int = Field(
        description="Images of the items holding two or more: the population sampled."
    )
    skipped_images: int = Field(
        description="Sampled but not queried: deleted, or their item written, between reads."
    )
    computed_at: str = Field(description="When this answer was computed (ISO 8601, UTC).")
    age_s: float = Field(description="Seconds since then (answers are cached).")
    seconds: float = Field(description="How long the computation took.")
    seed: int = Field(description="The sample's seed: the same gallery gives the same sample.")
    model: ModelIdentityResponse = Field(description="The model whose embeddings were ranked.")
    worst_items: list[ItemQualityResponse] | None = Field(
        None,
        description="With `items=true`: the queried items with the lowest MRR (then R@1, then "
        "id), up to `limit`; absent otherwise.",
    )


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
            503: "Not ready yet, the store is unreachable (writes), or the centroid index "
            "(Milvus) is: searches while it does not answer, writes while it is known down "
            "(refused before anything is written).",
        }
    ),
}


# The 2xx answers of the writes, with the headers they may carry (OpenAPI).
def write_headers(position: str, index_pending: bool) -> tuple[tuple[str, str], ...]:
    """The headers of a write's answer (what ``write_response`` documents): its position, and
    the index-pending flag only when set."""
    pending = ((INDEX_PENDING_HEADER, "true"),) if index_pending else ()
    return ((POSITION_HEADER, position), *pending)


def write_response(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "description": description,
            "headers": {
                POSITION_HEADER: {
                    "description": "This write's position: `after=` it on any replica.",
                    "schema": {"type": "string"},
                },
                INDEX_PENDING_HEADER: {
                    "description": INDEX_PENDING_DESCRIPTION,
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
        }
    }
