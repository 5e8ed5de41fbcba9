"""Who may call the data routes, decided from the settings once: the configured keys, the
anonymous rule, the per-key rate limit.

The anonymous rule: with keys configured every protected route needs a valid key. With none,
requests need no key, but only over loopback connections (the address the client connected
to is 127.0.0.1 or ::1) unless ``RETRIEVAL_ALLOW_ANONYMOUS=true``. So an app built in process
(tests, ``make run``) works without keys, and one that a plain ``uvicorn --host 0.0.0.0`` or a
container exposes does not answer the network anonymously by accident. ``centroid-retrieval
serve`` refuses to start in that case instead of serving 401s.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from app.access_errors import MissingScopeError, NotAuthenticatedError, RateLimitedError
from app.api_keys import ApiKeyConfigError, Keyring, Scope
from app.rate_limit import RateLimiter
from app.settings import Settings

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
HOW_TO_SEND = "send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`"


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``; a name or anything else is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Caller:
    """Who made a request: a key's id, or ``anonymous`` (which holds every scope)."""

    key_id: str
    scopes: frozenset[Scope]


@dataclass(frozen=True)
class AccessPolicy:
    keyring: Keyring
    allow_anonymous: bool
    metrics_requires_key: bool
    limiter: RateLimiter | None

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        """Raises :class:`ApiKeyConfigError` for unusable key lines or contradictory settings."""
        keyring = Keyring.from_sources(settings.api_keys, settings.api_keys_file)
        if len(keyring) and settings.allow_anonymous:
            raise ApiKeyConfigError(
                "RETRIEVAL_ALLOW_ANONYMOUS=true with API keys configured: anonymous callers "
                "would bypass the keys; leave one of the two out"
            )
        limiter = (
            RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
            if settings.rate_limit_per_second > 0
            else None
        )
        return cls(keyring, settings.allow_anonymous, settings.metrics_requires_key, limiter)

    @property
    def keys_required(self) -> bool:
        return len(self.keyring) > 0

    def authenticate(self, presented: str | None, local_host: str | None) -> Caller:
        """The caller behind ``presented`` (a key, or None), reached on ``local_host``."""
        if not self.keys_required:
            # A key sent to a service without keys is ignored: nothing to check it against.
            if self.allow_anonymous or (local_host is not None and is_loopback(local_host)):
                return Caller(ANONYMOUS, frozenset(Scope))
            raise NotAuthenticatedError(
                "this service has no API keys configured and answers requests without a key "
                "over loopback only; configure keys (centroid-retrieval make-key) or set "
                "RETRIEVAL_ALLOW_ANONYMOUS=true",
                invalid_key=False,
            )
        if presented is None:
            raise NotAuthenticatedError(f"an API key is needed: {HOW_TO_SEND}", invalid_key=False)
        key = self.keyring.verify(presented)
        if key is None:
            # The id part only: it names a key, it does not open one.
            log.info("refused an API key (key id %r)", Keyring.key_id_of(presented))
            raise NotAuthenticatedError("the API key is not valid", invalid_key=True)
        return Caller(key.key_id, key.scopes)

    def authorize(self, caller: Caller, scope: Scope | None) -> None:
        """Raise unless ``caller`` holds ``scope`` (None: any valid caller) and is within rate."""
        if scope is not None and scope not in caller.scopes:
            log.info("key %r lacks scope %r", caller.key_id, scope.value)
            raise MissingScopeError(
                f"this API key does not have the {scope.value!r} scope", scope=scope.value
            )
        if self.limiter is not None:
            wait_s = self.limiter.acquire(caller.key_id)
            if wait_s > 0:
                raise RateLimitedError(
                    f"rate limit of {self.limiter.rate:g} requests/s (burst "
                    f"{self.limiter.burst}) reached for this key; retry in {wait_s:.2f} s",
                    retry_after_s=wait_s,
                )
