"""The item id rule over real HTTP: "." and ".." (which URLs resolve as path segments, so an
item stored under them could never be addressed again) are refused as sent, raw or
percent-encoded, with problem+json and nothing stored; "..." is an ordinary id."""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlsplit

import httpx
import pytest

from app.dependencies import ITEM_ID_PATTERN


def raw_request(
    client: httpx.Client, method: str, path: str, files: dict[str, tuple[str, bytes]] | None
) -> tuple[int, str, bytes]:
    """Send ``path`` byte for byte (httpx would resolve its dot segments before sending)."""
    body, headers = b"", {}
    if files is not None:
        built = httpx.Request(method, "http://x/", files=files)
        body = built.read()
        headers = {"Content-Type": built.headers["Content-Type"]}
    url = urlsplit(str(client.base_url))
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("item_id", [".", "..", "%2E", "%2e%2E", ".%2E"])
def test_dot_segment_item_ids_are_refused_and_store_nothing(
    client: httpx.Client, photo_views: dict[str, list[bytes]], item_id: str
) -> None:
    photo = photo_views["coffee"][0]
    status, content_type, body = raw_request(
        client, "POST", f"/items/{item_id}/images", {"images": ("a.jpg", photo)}
    )
    assert 400 <= status < 500, (status, body)
    assert content_type == "application/problem+json" and b'"status"' in body
    for method in ("GET", "DELETE"):
        status, content_type, _ = raw_request(client, method, f"/items/{item_id}", None)
        assert 400 <= status < 500 and content_type == "application/problem+json"
    info = client.get("/info").json()
    assert (info["items"], info["images"]) == (0, 0)
    assert client.get("/items").json()["items"] == []


def test_three_dots_is_an_ordinary_item_id(
    client: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    photo = photo_views["coffee"][0]
    r = client.post("/items/.../images", files={"images": ("a.jpg", photo)})
    assert r.status_code == 201, r.text
    assert client.get("/items/...").json()["image_count"] == 1
    assert [i["item_id"] for i in client.get("/items").json()["items"]] == ["..."]
    assert client.delete("/items/...").status_code == 204


def test_the_rule_is_the_old_one_minus_the_two_dot_segments() -> None:
    old = re.compile(r"[A-Za-z0-9._:-]{1,128}")
    samples = [".", "..", "...", "a", ".a", "a.", "..a", "a..", ":", "-.", "é", "", "a b"]
    samples += ["x" * 128, "x" * 129, "." * 128, "." * 129, ".." + "x" * 126, ".." + "x" * 127]
    for s in samples:
        expected = bool(old.fullmatch(s)) and s not in (".", "..")
        assert bool(re.fullmatch(ITEM_ID_PATTERN, s)) == expected, s
