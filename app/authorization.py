"""The routes' access dependencies (``require_scope``) and the 401/403/429 answers.

Keys are read from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, declared as FastAPI
security schemes so the OpenAPI document lists them and ``/docs`` has an Authorize button.
Every refusal is problem+json with a ``WWW-Authenticate: Bearer`` challenge (429 with
``Retry-After``); no answer or log line holds a presented key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.access_errors import MissingScopeError, NotAuthenticatedError, RateLimitedError
from app.access_policy import AccessPolicy, Caller
from app.api_keys import Scope
from app.problem import problem_response
from app.rate_limit import RateLimiter
from app.request_body import drain_before_refusing, expects_continue

REALM = "centroid-retrieval"

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearerKey",
    description="An API key (`cr_<id>_<secret>`, from `centroid-retrieval make-key`).",
)
api_key_header_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKeyHeader",
    description="The same API key in the `X-API-Key` header, for clients that cannot send "
    "`Authorization`.",
)


def get_access_policy(request: Request) -> AccessPolicy:
    policy: AccessPolicy = request.app.state.access
    return policy


def _presented_key(
    bearer: HTTPAuthorizationCredentials | None, header_key: str | None
) -> str | None:
    keys = {k for k in (bearer.credentials if bearer else None, header_key) if k}
    if len(keys) > 1:
        raise NotAuthenticatedError(
            "two different API keys sent (Authorization and X-API-Key); send one",
            invalid_key=True,
        )
    return keys.pop() if keys else None


def require_scope(scope: Scope | None) -> Any:
    """A route dependency: a valid key holding ``scope`` (None: any valid key), within rate.

    Runs before the body is parsed. A refused request's body is read and dropped (up to the
    request limit) so that a client still uploading reads the answer instead of a reset.
    """

    async def authorized_caller(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        header_key: Annotated[str | None, Security(api_key_header_scheme)],
        policy: Annotated[AccessPolicy, Depends(get_access_policy)],
    ) -> Caller:
        server = request.scope.get("server")
        local_host = str(server[0]) if server else None
        try:
            caller = policy.authenticate(_presented_key(bearer, header_key), local_host)
            policy.authorize(caller, scope)
        except (NotAuthenticatedError, MissingScopeError, RateLimitedError):
            budget = request.app.state.service.settings.max_request_bytes
            await drain_before_refusing(request.scope, request.receive, budget)
            raise
        return caller

    return Depends(authorized_caller)


ReadScope = require_scope(Scope.READ)
WriteScope = require_scope(Scope.WRITE)
AdminScope = require_scope(Scope.ADMIN)
AnyKey = require_scope(None)


def _challenge(error: str | None = None, scope: str | None = None) -> str:
    parts = [f'realm="{REALM}"']
    if error is not None:
        parts.append(f'error="{error}"')
    if scope is not None:
        parts.append(f'scope="{scope}"')
    return "Bearer " + ", ".join(parts)


def install_access_handlers(app: FastAPI) -> None:
    async def on_not_authenticated(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, NotAuthenticatedError)
        response = problem_response(401, str(exc))
        response.headers["WWW-Authenticate"] = _challenge(
            "invalid_token" if exc.invalid_key else None
        )
        return _closing_if_unread(request, response)

    async def on_missing_scope(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MissingScopeError)
        response = problem_response(403, str(exc), required_scope=exc.scope)
        response.headers["WWW-Authenticate"] = _challenge("insufficient_scope", exc.scope)
        return _closing_if_unread(request, response)

    async def on_rate_limited(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RateLimitedError)
        response = problem_response(429, str(exc))
        response.headers["Retry-After"] = RateLimiter.retry_after_header(exc.retry_after_s)
        return _closing_if_unread(request, response)

    app.add_exception_handler(NotAuthenticatedError, on_not_authenticated)
    app.add_exception_handler(MissingScopeError, on_missing_scope)
    app.add_exception_handler(RateLimitedError, on_rate_limited)


def _closing_if_unread(request: Request, response: JSONResponse) -> JSONResponse:
    if expects_continue(request.scope):
        # Answered before the client sent its body: the connection cannot be reused.
        response.headers["Connection"] = "close"
    return response
