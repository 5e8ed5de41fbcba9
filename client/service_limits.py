"""The per-request limits a running service enforces, as it reports them in ``GET /info``."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from client.service_error import ServiceError

# The service's own defaults (app/settings.py), used only when /info reports no limits (a
# service older than the `limits` key).
DEFAULT_MAX_IMAGES_PER_REQUEST = 64
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_K = 100


@dataclass(frozen=True)
class ServiceLimits:
    max_images_per_request: int
    max_request_bytes: int
    max_k: int
    # True when /info had no limits and the defaults above stand in for them.
    assumed: bool = False


def read_limits(client: httpx.Client) -> ServiceLimits:
    """The limits of the service ``client`` talks to (its ``base_url``)."""
    r = client.get("/info")
    if r.status_code != 200:
        raise ServiceError.for_response(r, f"GET {client.base_url}info (is the service ready?)")
    limits = r.json().get("limits")
    if not isinstance(limits, dict):
        return ServiceLimits(
            DEFAULT_MAX_IMAGES_PER_REQUEST, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_K, assumed=True
        )
    return ServiceLimits(
        max_images_per_request=int(
            limits.get("max_images_per_request", DEFAULT_MAX_IMAGES_PER_REQUEST)
        ),
        max_request_bytes=int(limits.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES)),
        max_k=int(limits.get("max_k", DEFAULT_MAX_K)),
    )
