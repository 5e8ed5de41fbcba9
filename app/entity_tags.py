"""``If-None-Match`` against an ``ETag`` (RFC 9110 §13.1.2): the weak comparison, ``*``, lists."""

from __future__ import annotations


def if_none_match_hits(header: str, etag: str) -> bool:
    """True when ``header`` (an ``If-None-Match`` value) names ``etag`` (a quoted entity tag):
    the client holds this representation, so a GET answers 304. ``*`` matches any (the
    resource exists); weak tags (``W/"..."``) compare by their opaque part."""
    wanted = _opaque(etag)
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or (tag and _opaque(tag) == wanted):
            return True
    return False


def _opaque(tag: str) -> str:
    return tag.removeprefix("W/")
