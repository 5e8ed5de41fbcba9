"""Read file parts out of a parsed multipart form."""

from __future__ import annotations

from starlette.datastructures import FormData, UploadFile

from app.retriever import Upload
from artifact.image_decode import ImageDecodeError


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


def multipart_openapi(field: str, many: bool) -> dict[str, object]:
    """OpenAPI ``requestBody`` for routes that parse their multipart body themselves."""
    file_schema = {"type": "string", "format": "binary"}
    prop = {"type": "array", "items": file_schema} if many else file_schema
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": [field], "properties": {field: prop}}
                }
            },
        }
    }
