"""Item attributes and attribute filters as requests carry them: the ``filter=key:value`` query
parameter, the enrollment form's ``attributes`` field and a ``PATCH`` body of
``application/merge-patch+json`` (RFC 7396).

Everything is checked here, before any inference or store work, as far as it can be without the
item: the JSON is an object of JSON values, and the patch alone (merged into ``{}``) fits the
size limit. Merging into the item's attributes can only add to that (RFC 7396 keeps every
non-null value of the patch), so a patch refused here would be refused by the store too; the
store checks the merged result itself, in the write's transaction.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import Query, Request
from starlette.datastructures import FormData, UploadFile

from app.request_body import require_media_type
from store.errors import AttributesInvalidError, AttributesTooLargeError
from store.item_attributes import (
    FILTER_KEY,
    AttributeFilter,
    Attributes,
    attributes_size,
    merge_patch,
)

MERGE_PATCH_JSON = "application/merge-patch+json"
ATTRIBUTES_FIELD = "attributes"

FILTER_DESCRIPTION = (
    "Exact-match attribute filter `key:value`, repeatable (ANDed): an item matches when its "
    "attribute `key` is a JSON scalar whose string form is `value` (a string as is, a number "
    'or boolean as JSON writes it: `n:5` matches 5 and "5", not 5.0; `ok:true`). Split at the '
    f"first `:`; key `{FILTER_KEY.pattern}`. A missing key, an object or an array never "
    "matches. Malformed: 422."
)

FilterQuery = Annotated[list[str] | None, Query(alias="filter", description=FILTER_DESCRIPTION)]


def read_filter(specs: list[str] | None) -> AttributeFilter | None:
    """The filter of repeated ``filter`` parameters (None: none given);
    ``AttributeFilterError`` (422) for a malformed one."""
    if not specs:
        return None
    return AttributeFilter.parse(specs)


def parse_patch(raw: bytes | str, max_bytes: int, where: str) -> Attributes:
    """A JSON object to merge into an item's attributes; ``AttributesInvalidError`` (422) if
    ``raw`` is not JSON or not an object of JSON values, ``AttributesTooLargeError`` (422) if
    it alone, merged into ``{}``, is over ``max_bytes``."""
    try:
        patch = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AttributesInvalidError(f"{where} is not JSON: {exc}") from exc
    if not isinstance(patch, dict):
        raise AttributesInvalidError(f"{where} must be a JSON object, got {type(patch).__name__}")
    size = attributes_size(merge_patch({}, patch))  # checks every value, NaN included
    if size > max_bytes:
        raise AttributesTooLargeError(size, max_bytes)
    return patch


async def read_attributes_field(form: FormData, max_bytes: int) -> tuple[Attributes, bytes] | None:
    """The enrollment form's ``attributes`` field (text, or a file part holding the JSON) as
    a patch and its raw bytes (for the idempotency fingerprint); None when absent."""
    parts = form.getlist(ATTRIBUTES_FIELD)
    if not parts:
        return None
    if len(parts) > 1:
        raise AttributesInvalidError(f"form field {ATTRIBUTES_FIELD!r} given {len(parts)} times")
    part = parts[0]
    raw = await part.read() if isinstance(part, UploadFile) else part.encode()
    return parse_patch(raw, max_bytes, f"form field {ATTRIBUTES_FIELD!r}"), raw


async def read_merge_patch(request: Request, max_bytes: int) -> tuple[Attributes, bytes]:
    """A ``PATCH`` body: ``UnsupportedMediaTypeError`` (415) unless its content type is
    ``application/merge-patch+json`` (parameters such as ``charset`` allowed), else the patch
    and the raw body."""
    require_media_type(request, MERGE_PATCH_JSON)
    raw = await request.body()
    return parse_patch(raw, max_bytes, "the body"), raw
