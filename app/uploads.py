"""Read file parts out of a parsed multipart form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

from fastapi.exceptions import RequestValidationError
from starlette.datastructures import FormData, UploadFile

from app.retriever import Upload
from artifact.image_decode import ImageDecodeError

# A query's files; `image` is the one-file field of the first API, kept as a deprecated alias.
QUERY_FIELD = "images"
DEPRECATED_QUERY_FIELD = "image"

_FILE_SCHEMA = {"type": "string", "format": "binary"}


async def read_uploads(form: FormData, field: str) -> list[Upload]:
    """All files of form field ``field``; a missing field or a non-file value is a 422."""
    parts = form.getlist(field)
    if not parts:
        raise ImageDecodeError(f"no file in multipart form field {field!r}")
    uploads = []
    for part in parts:
        if not isinstance(part, UploadFile):
            raise ImageDecodeError(f"form field {field!r} must hold files, not text")
        uploads.append(Upload(filename=part.filename or field, data=await part.read()))
    return uploads


async def read_query_uploads(form: FormData) -> list[Upload]:
    """A query's files: form field ``images`` or its deprecated alias ``image``, exactly one of
    the two (both, or neither, is a 422 before anything is decoded)."""
    present = [f for f in (QUERY_FIELD, DEPRECATED_QUERY_FIELD) if form.getlist(f)]
    if len(present) != 1:
        what = "both" if present else "neither"
        refuse_field(
            f"send the query files in form field {QUERY_FIELD!r} or in its deprecated alias "
            f"{DEPRECATED_QUERY_FIELD!r}, not {what}",
            QUERY_FIELD,
        )
    return await read_uploads(form, present[0])


def refuse_field(message: str, field: str, value: object = None) -> NoReturn:
    """A 422 problem+json naming form field ``field``, as FastAPI's own validation errors do."""
    raise RequestValidationError(
        [{"loc": ("body", field), "msg": message, "type": "value_error", "input": value}]
    )


def multipart_openapi(field: str, many: bool) -> dict[str, object]:
    """OpenAPI ``requestBody`` for routes that parse their multipart body themselves."""
    prop = {"type": "array", "items": _FILE_SCHEMA} if many else _FILE_SCHEMA
    schema = {"type": "object", "required": [field], "properties": {field: prop}}
    return _multipart_body(schema)


def query_openapi(max_files: int, weights_rule: str) -> dict[str, object]:
    """OpenAPI ``requestBody`` of a query: ``images`` (1..max_files files) or the deprecated
    ``image``, exactly one of them, and the optional ``weights``."""
    schema = {
        "type": "object",
        "properties": {
            QUERY_FIELD: {
                "type": "array",
                "items": _FILE_SCHEMA,
                "minItems": 1,
                "maxItems": max_files,
                "description": f"The query: 1..{max_files} image files (a set query when more "
                "than one: items are ranked by the weighted centroid of their embeddings).",
            },
            DEPRECATED_QUERY_FIELD: {
                **_FILE_SCHEMA,
                "deprecated": True,
                "description": f"Deprecated alias of `{QUERY_FIELD}` (send one of the two).",
            },
            "weights": {"type": "string", "description": f"Optional: {weights_rule}."},
        },
        "oneOf": [{"required": [QUERY_FIELD]}, {"required": [DEPRECATED_QUERY_FIELD]}],
    }
    return _multipart_body(schema)


def _multipart_body(schema: Mapping[str, object]) -> dict[str, object]:
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }
