"""Bad input gets a clear problem+json 4xx and leaves no trace in store, blobs or index."""

from __future__ import annotations

import io
import socket
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.app.conftest import ServiceFactory
from tests.app.metrics_text import wait_for_metric

PROBLEM = "application/problem+json"


def assert_problem(r: httpx.Response, status: int, needle: str = "") -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert needle.lower() in body["detail"].lower(), body


def state_snapshot(client: httpx.Client, data_dir: Path) -> tuple[object, ...]:
    info = client.get("/info").json()
    blobs = sorted(p.name for p in (data_dir / "blobs").rglob("*") if p.is_file())
    return info["items"], info["images"], info["index_items"], tuple(blobs)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_rejections_leave_no_trace(
    client: httpx.Client, photo_views: dict[str, list[bytes]], data_dir: Path
) -> None:
    good = photo_views["coffee"][0]
    assert client.post("/items/keep/images", files={"images": ("a.jpg", good)}).status_code == 201
    before = state_snapshot(client, data_dir)
    png_magic = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

    # Not multipart → 415.
    assert_problem(client.post("/items/x/images", json={"images": []}), 415, "multipart")
    assert_problem(
        client.post("/search", content=good, headers={"content-type": "image/jpeg"}), 415
    )
    # Empty, non-image, corrupt, truncated uploads → 422, judged by bytes not declared type.
    for payload, needle in [
        (b"", "empty"),
        (b"hello, I am text", "not a decodable image"),
        (png_magic, ""),
        (good[: len(good) // 3], "truncated"),
    ]:
        r = client.post("/items/x/images", files={"images": ("photo.jpg", payload, "image/jpeg")})
        assert_problem(r, 422, needle)
    # One bad image rejects a multi-image enrollment whole.
    files = [
        ("images", ("ok1.jpg", photo_views["coffee"][1])),
        ("images", ("bad.jpg", b"garbage")),
        ("images", ("ok2.jpg", photo_views["coffee"][2])),
    ]
    assert_problem(client.post("/items/x/images", files=files), 422, "images[1] ('bad.jpg')")
    # A rejected query names the file it was sent as.
    r = client.post("/search", files={"image": ("query-7.jpg", b"garbage")})
    assert_problem(r, 422, "'query-7.jpg': not a decodable image")
    # Wrong field name / text instead of a file.
    assert_problem(client.post("/items/x/images", files={"image": ("a.jpg", good)}), 422)
    r = client.post("/items/x/images", data={"images": "text"}, files={"other": ("o.jpg", good)})
    assert_problem(r, 422, "must hold files")
    assert_problem(client.post("/items/x/images", data={"images": "text"}), 415)
    # Malformed item id (the pattern allows [A-Za-z0-9._:-]{1,128}).
    for bad in ("a b", "x" * 129, "caf\u00e9", "a/b"):
        r = client.post(f"/items/{bad}/images", files={"images": ("a.jpg", good)})
        assert r.status_code in (404, 422) if "/" in bad else r.status_code == 422
        assert r.headers["content-type"].startswith(PROBLEM)
    # k and min_score out of range.
    for params in ({"k": 0}, {"k": 101}, {"k": "ten"}, {"min_score": 1.5}, {"min_score": -2}):
        assert_problem(client.post("/search", params=params, files={"image": ("q.jpg", good)}), 422)
    # Unknown item or image.
    assert_problem(client.get("/items/nope"), 404, "nope")
    assert_problem(client.delete("/items/nope"), 404)
    assert_problem(client.delete("/items/keep/images/deadbeef"), 404)

    assert state_snapshot(client, data_dir) == before


def test_pixel_limit_is_413_before_decoding(
    service_factory: ServiceFactory, data_dir: Path
) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (3000, 2000)).save(buf, format="PNG")
    with service_factory(max_image_pixels=5_000_000) as client:
        r = client.post("/items/big/images", files={"images": ("big.png", buf.getvalue())})
        assert_problem(r, 413, "pixels")
        r = client.post("/search", files={"image": ("big.png", buf.getvalue())})
        assert_problem(r, 413, "pixels")
        assert state_snapshot(client, data_dir)[:3] == (0, 0, 0)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR (valid CRC) claims ``width``x``height``, then garbage for pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\x00garbage" * 8)


def jpeg_header_only(width: int, height: int) -> bytes:
    """A baseline JPEG whose SOF0 claims ``width``x``height``, then a bogus scan."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return b"\xff\xd8\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xda\x00\x08garbage"


@pytest.mark.parametrize("make", [png_header_only, jpeg_header_only])
def test_pixel_limit_is_judged_from_the_header_alone(
    service_factory: ServiceFactory, data_dir: Path, make: Callable[[int, int], bytes]
) -> None:
    """Only a header, no decodable pixels: a check after decoding would answer 422, not 413."""
    with service_factory(max_image_pixels=5_000_000) as client:
        # The same bytes with a small size are undecodable (422): nothing but the header
        # can have told the large ones apart.
        small = make(100, 100)
        assert_problem(client.post("/search", files={"image": ("s.img", small)}), 422, "corrupt")
        # Over the configured limit, and far over Pillow's own bomb limit.
        for width, height in ((3000, 2000), (60000, 60000)):
            blob = make(width, height)
            r = client.post("/items/big/images", files={"images": ("big.img", blob)})
            assert_problem(r, 413, "pixels")
            assert_problem(client.post("/search", files={"image": ("big.img", blob)}), 413)
        assert state_snapshot(client, data_dir) == (0, 0, 0, ())


def test_a_png_header_of_100000_by_100000_is_413(
    service_factory: ServiceFactory, data_dir: Path
) -> None:
    with service_factory() as client:  # the default pixel limit
        blob = png_header_only(100_000, 100_000)
        assert_problem(client.post("/items/x/images", files={"images": ("b.png", blob)}), 413)
        assert state_snapshot(client, data_dir) == (0, 0, 0, ())


def test_too_many_files_is_rejected(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory(max_images_per_request=2) as client:
        files = [("images", (f"{i}.jpg", v)) for i, v in enumerate(photo_views["china"][:3])]
        assert_problem(client.post("/items/x/images", files=files), 422, "limit is 2")


def test_oversized_body_gets_a_413_the_client_receives(
    service_factory: ServiceFactory, data_dir: Path
) -> None:
    limit = 1 << 20
    big = b"\xff\xd8" + bytes(3 * limit)
    with service_factory(max_request_bytes=limit) as client:
        # Declared length over the limit (httpx sends Content-Length).
        r = client.post("/items/x/images", files={"images": ("big.jpg", big)})
        assert_problem(r, 413, str(limit))

        # Chunked upload with no Content-Length: caught while streaming.
        def chunks() -> object:
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]

        boundary = "b0undary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; '
            f'filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()

        def body() -> object:
            yield head
            yield from chunks()  # type: ignore[misc]
            yield f"\r\n--{boundary}--\r\n".encode()

        r = client.post(
            "/items/x/images",
            content=body(),  # type: ignore[arg-type]
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert_problem(r, 413)
        assert state_snapshot(client, data_dir)[:3] == (0, 0, 0)
        assert client.get("/healthz").status_code == 200


def test_raw_socket_client_reads_the_413(service_factory: ServiceFactory) -> None:
    """A plain HTTP/1.1 client that sends a whole oversized body still gets the answer."""
    limit = 1 << 20
    with service_factory(max_request_bytes=limit) as client:
        host, port = client.base_url.host, client.base_url.port
        payload = bytes(2 * limit)
        head = (
            f"POST /items/x/images HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(payload)}\r\n"
            "Content-Type: multipart/form-data; boundary=zz\r\n\r\n"
        ).encode()
        with socket.create_connection((host, port), timeout=30) as sock:
            sock.sendall(head + payload)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize("declared_times_limit", [4, 1000])
def test_expect_100_continue_gets_the_413_without_sending_the_body(
    service_factory: ServiceFactory, declared_times_limit: int
) -> None:
    """The client waits for leave to send; it must get the 413 instead of "100 Continue".

    4x the limit is within what the server would otherwise drain, 1000x beyond it.
    """
    limit = 1 << 20
    with service_factory(max_request_bytes=limit) as client:
        host, port = client.base_url.host, client.base_url.port
        head = (
            f"POST /items/x/images HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Length: {declared_times_limit * limit}\r\nExpect: 100-continue\r\n"
            "Content-Type: multipart/form-data; boundary=zz\r\n\r\n"
        ).encode()
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(head)  # and never a byte of body
            answer = b""
            while True:
                chunk = sock.recv(65536)  # socket.timeout here: the server waits for the body
                if not chunk:
                    break  # the server closed the connection after its answer
                answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 413 Request Entity Too Large", answer[:200]
        headers, _, body = rest.partition(b"\r\n\r\n")
        assert b"content-type: application/problem+json" in headers.lower()
        assert str(limit).encode() in body
        assert b"100 Continue" not in answer
        assert client.get("/healthz").status_code == 200
        counted = wait_for_metric(
            client,
            "http_requests_total",
            1,
            method="POST",
            route="/items/{item_id}/images",
            status="413",
        )
        assert counted == 1
