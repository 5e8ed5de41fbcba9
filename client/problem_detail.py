"""The human-readable reason of an error answer from the service."""

from __future__ import annotations

import json

import httpx

# Enough of a non-problem body to recognise it (an HTML error page from a proxy, say).
MAX_BODY_CHARS = 300


def problem_detail(response: httpx.Response) -> str:
    """The problem+json ``detail`` (RFC 9457) of an error answer, or the start of its body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:MAX_BODY_CHARS] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return json.dumps(body)[:MAX_BODY_CHARS]
