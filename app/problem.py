"""RFC 9457 problem details: every error the service answers is ``application/problem+json``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.request_body import expects_continue
from app.retriever_errors import (
    ClientGoneError,
    InferenceFailedError,
    InvalidCursorError,
    InvalidPositionError,
    NotReadyError,
    PositionNotAppliedError,
    QueueFullError,
    QueueTimeoutError,
    TooManyImagesError,
    UnsupportedMediaTypeError,
)
from artifact.image_decode import ImageDecodeError, ImageTooLargeError
from store.blob_backend import BlobUnavailableError
from store.errors import (
    AttributeFilterError,
    AttributesError,
    ImageNotFoundError,
    ItemNotFoundError,
    LastCountedImageError,
    ModelMismatchError,
    StoreOutcomeUnknownError,
    StoreUnavailableError,
)
from store.idempotency import IdempotencyKeyReusedError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# Domain exception → HTTP status. Subclasses map through their first listed base.
_STATUS_OF: Mapping[type[Exception], int] = {
    ImageDecodeError: 422,
    ImageTooLargeError: 413,
    ItemNotFoundError: 404,
    ImageNotFoundError: 404,
    LastCountedImageError: 409,
    # Before its base, so its own detail (the outcome is unknown, retrying is safe) is given.
    StoreOutcomeUnknownError: 503,
    StoreUnavailableError: 503,
    # A missing blob of a referenced image too (its subclass): the image exists, this replica
    # cannot read it now.
    BlobUnavailableError: 503,
    NotReadyError: 503,
    ModelMismatchError: 503,
    UnsupportedMediaTypeError: 415,
    TooManyImagesError: 422,
    InvalidCursorError: 422,
    InvalidPositionError: 422,
    IdempotencyKeyReusedError: 422,
    AttributesError: 422,
    AttributeFilterError: 422,
    QueueFullError: 503,
    QueueTimeoutError: 503,
    PositionNotAppliedError: 503,
    InferenceFailedError: 500,
}
# Overload passes within a second or so; the other 503s (starting, store down) take longer.
_RETRY_AFTER_S: Mapping[type[Exception], int] = {
    QueueFullError: 1,
    QueueTimeoutError: 1,
    PositionNotAppliedError: 1,
}
DEFAULT_RETRY_AFTER_S = 5
# nginx's "client closed request": recorded in the metrics, never seen by the client.
CLIENT_CLOSED_REQUEST = 499


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    retry_after_s: int = DEFAULT_RETRY_AFTER_S,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    headers = {"Retry-After": str(retry_after_s)} if status == 503 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _exception_detail(exc: BaseException) -> str:
    # KeyError's str() wraps its message in quotes.
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def install_problem_handlers(app: FastAPI) -> None:
    """Route FastAPI's, Starlette's and the domain's errors through :func:`problem_response`."""

    async def on_http_exception(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(exc.status_code, str(exc.detail))

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return problem_response(422, summary or "invalid request", errors=errors)

    async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
        for exc_type, status in _STATUS_OF.items():
            if isinstance(exc, exc_type):
                retry_after = _RETRY_AFTER_S.get(exc_type, DEFAULT_RETRY_AFTER_S)
                detail = getattr(exc, "public_detail", None) or _exception_detail(exc)
                if detail != _exception_detail(exc):  # the message names paths or hosts
                    log.warning("%s on %s: %s", type(exc).__name__, request.url.path, exc)
                response = problem_response(status, detail, retry_after_s=retry_after)
                if isinstance(exc, QueueFullError) and expects_continue(request.scope):
                    # Turned away before its body was sent: the connection cannot be reused.
                    response.headers["Connection"] = "close"
                return response
        raise exc  # pragma: no cover - only registered for the mapped types

    async def on_client_gone(request: Request, exc: Exception) -> JSONResponse:
        # Nobody reads this; it is what the request metrics record.
        return problem_response(
            CLIENT_CLOSED_REQUEST, _exception_detail(exc), title="Client Closed Request"
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal error; see the service log")

    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    for exc_type in _STATUS_OF:
        app.add_exception_handler(exc_type, on_domain_error)
    app.add_exception_handler(ClientGoneError, on_client_gone)
    app.add_exception_handler(Exception, on_unexpected)
