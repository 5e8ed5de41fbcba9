"""Why a request was refused before it reached its route: no valid key, a key without the
scope, or a key over its rate. Their messages never hold a presented key."""

from __future__ import annotations


class NotAuthenticatedError(Exception):
    """No key where one is needed, or one the service does not know: 401."""

    def __init__(self, detail: str, *, invalid_key: bool) -> None:
        super().__init__(detail)
        # RFC 6750: a presented key that failed is `error="invalid_token"`; a missing one is
        # a bare challenge.
        self.invalid_key = invalid_key


class MissingScopeError(Exception):
    """A valid key without the scope the route needs: 403."""

    def __init__(self, detail: str, *, scope: str) -> None:
        super().__init__(detail)
        self.scope = scope


class RateLimitedError(Exception):
    """The key used up its request rate: 429, with when to retry."""

    def __init__(self, detail: str, *, retry_after_s: float) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
