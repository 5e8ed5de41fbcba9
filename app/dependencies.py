"""``Annotated`` dependencies shared by the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request
from starlette.datastructures import FormData

from app.request_body import drain_before_refusing
from app.retriever import Retriever
from app.retriever_errors import UnsupportedMediaTypeError
from app.service_state import ServiceState
from app.settings import Settings

ITEM_ID_PATTERN = (  # [A-Za-z0-9._:-]{1,128} but "." and "..", which URLs resolve as segments
    r"^(?:[A-Za-z0-9_:-]|[A-Za-z0-9_:-][A-Za-z0-9._:-]|\.[A-Za-z0-9_:-]|[A-Za-z0-9._:-]{3,128})$"
)
IMAGE_ID_PATTERN = r"^[A-Za-z0-9]{1,64}$"

# Starlette's own caps on form parts; the per-request file limit is enforced by the retriever
# so that it can answer with a clear message.
_MAX_FORM_FILES = 1000
_MAX_FORM_FIELDS = 100


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def get_settings(state: Annotated[ServiceState, Depends(get_state)]) -> Settings:
    return state.settings


def get_retriever(state: Annotated[ServiceState, Depends(get_state)]) -> Retriever:
    return state.require_retriever()


async def admission_gate(
    request: Request, state: Annotated[ServiceState, Depends(get_state)]
) -> None:
    """Turn a search or enrollment away at once when the admission queue is full.

    Runs on the headers, before anything parses the body: the body is read and discarded (up
    to the request limit, which the body-limit middleware enforces), so the client, still
    sending, reads a complete 503 instead of a reset. A client waiting for ``100 Continue`` is
    answered before it uploads anything.
    """
    admission = state.admission
    if not admission.is_full():
        return
    error = admission.refuse()
    await drain_before_refusing(request.scope, request.receive, state.settings.max_request_bytes)
    raise error


async def multipart_form(request: Request) -> AsyncIterator[FormData]:
    """The parsed multipart body (files spooled to disk past 1 MiB); 415 for anything else."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaTypeError(
            f"expected multipart/form-data, got {content_type or 'no content type'!r}"
        )
    async with request.form(max_files=_MAX_FORM_FILES, max_fields=_MAX_FORM_FIELDS) as form:
        yield form


StateDep = Annotated[ServiceState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RetrieverDep = Annotated[Retriever, Depends(get_retriever)]
FormDep = Annotated[FormData, Depends(multipart_form)]
ItemIdPath = Annotated[
    str,
    Path(
        pattern=ITEM_ID_PATTERN,
        description="Item id: `[A-Za-z0-9._:-]{1,128}`, but not `.` or `..` (URL path segments).",
    ),
]
ImageIdPath = Annotated[str, Path(pattern=IMAGE_ID_PATTERN, description="Image id.")]
