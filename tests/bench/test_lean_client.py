"""The lean client over real sockets: against the real app (its multipart body is what the app
parses, the answer what httpx gets) and against scripted asyncio servers for each way an answer
can be framed or fail."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from app.api_keys import Scope, make_key
from app.main import create_app
from app.settings import Settings
from bench.lean_client import (
    FilePart,
    LeanClient,
    LeanResponse,
    PreparedRequest,
    multipart_body,
    prepare,
)
from bench.loadtest.photo_set import build_photo_set
from bench.service_process import free_port
from client.api_key_header import API_KEY_VARIABLE
from tests.live_server import live_server

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def scripted_server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A real TCP server running ``handler`` per connection; yields its URL and a list that
    counts the connections it accepted."""
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def answering(*answers: bytes) -> Handler:
    """Answer the n-th request on a connection with ``answers[n]``, then wait for the next."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(answer)
            await writer.drain()
        await reader.read()  # keep the connection open until the client closes it

    return handler


def _request(url: str, path: str = "/x") -> tuple[LeanClient, PreparedRequest]:
    client = LeanClient(url, timeout_s=5)
    body = multipart_body([FilePart("image", "a.jpg", "image/jpeg", b"\xff\xd8 data \xff\xd9")])
    return client, prepare("POST /x", "POST", path, client.authority, body)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"


def test_search_body_is_what_the_app_parses_and_the_answer_what_httpx_gets(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    photos = build_photo_set(1).all_views()
    app = create_app(Settings(model_path=tiny_model_path, data_dir=tmp_path / "data"))
    with live_server(app) as url:
        files = [("images", (f"{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos[:3])]
        assert httpx.post(f"{url}/items/a/images", files=files).status_code == 201
        expected = httpx.post(
            f"{url}/search", params={"k": 5}, files={"image": ("q.jpg", photos[1], "image/jpeg")}
        )

        async def lean_search() -> LeanResponse:
            client = LeanClient(url, timeout_s=30)
            body = multipart_body([FilePart("image", "q.jpg", "image/jpeg", photos[1])])
            try:
                return await client.send(
                    prepare("POST /search", "POST", "/search?k=5", client.authority, body)
                )
            finally:
                await client.aclose()

        got = asyncio.run(lean_search())
    assert expected.status_code == got.status == 200
    assert json.loads(got.body) == expected.json()
    assert got.headers["content-type"] == "application/json"


def test_keep_alive_connection_reused_until_idle_too_long() -> None:
    async def run() -> tuple[list[int], list[int]]:
        async with scripted_server(answering(OK, OK, OK)) as (url, connections):
            client, request = _request(url)
            client.keepalive_s = 0.3
            statuses = [(await client.send(request)).status for _ in range(2)]
            assert len(connections) == 1
            await asyncio.sleep(0.4)  # past keepalive_s: never sent on again
            statuses.append((await client.send(request)).status)
            await client.aclose()
            return statuses, connections

    statuses, connections = asyncio.run(run())
    assert statuses == [200, 200, 200] and len(connections) == 2


@pytest.mark.parametrize(
    ("answer", "body", "reused"),
    [
        (b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"abcde",
            True,
        ),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
    ],
    ids=["content-length", "chunked", "connection-close", "http-1.0"],
)
def test_answer_framings(answer: bytes, body: bytes, reused: bool) -> None:
    async def run() -> tuple[LeanResponse, LeanResponse, int]:
        async with scripted_server(answering(answer, answer)) as (url, connections):
            client, request = _request(url)
            first = await client.send(request)
            second = await client.send(request)
            await client.aclose()
            return first, second, len(connections)

    first, second, connections = asyncio.run(run())
    assert first.body == second.body == body
    assert connections == (1 if reused else 2)


def test_body_to_end_of_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async def run() -> LeanResponse:
        async with scripted_server(handler) as (url, _):
            client, request = _request(url)
            return await client.send(request)

    assert asyncio.run(run()).body == b"until the end"


def _fails_with(handler: Handler, error: type[Exception], timeout_s: float = 5) -> str:
    async def run() -> None:
        async with scripted_server(handler) as (url, _):
            client, request = _request(url)
            client.timeout_s = timeout_s
            await client.send(request)

    with pytest.raises(error) as caught:
        asyncio.run(run())
    return str(caught.value)


def test_closed_without_answer_is_a_protocol_error_never_retried() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    assert "after 0 bytes" in _fails_with(hang_up, httpx.RemoteProtocolError)


def test_cut_body_and_garbage_are_protocol_errors() -> None:
    async def cut_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()

    assert "cut short" in _fails_with(cut_then_close, httpx.RemoteProtocolError)
    garbage = answering(b"SPAM\r\n\r\n")
    assert "malformed" in _fails_with(garbage, httpx.RemoteProtocolError)


def test_no_answer_in_time_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    assert "within 0.2 s" in _fails_with(silent, httpx.ReadTimeout, timeout_s=0.2)


def test_refused_connection_is_a_connect_error() -> None:
    async def run() -> None:
        client, request = _request(f"http://127.0.0.1:{free_port()}")  # nothing listens
        await client.send(request)

    with pytest.raises(httpx.ConnectError):
        asyncio.run(run())


def test_tally_tells_proper_rejections_from_other_503s() -> None:
    proper = (
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
        b"Content-Type: application/problem+json\r\nContent-Length: 2\r\n\r\n{}"
    )
    bare = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"

    async def run() -> LeanClient:
        async with scripted_server(answering(proper, bare, OK)) as (url, _):
            client, request = _request(url)
            for _ in range(3):
                await client.send(request)
            await client.aclose()
            return client

    tally = asyncio.run(run()).tally
    assert tally.statuses == {503: 2, 200: 1}
    assert tally.improper_503 == 1


def test_multipart_body_holds_every_part_between_boundaries() -> None:
    parts = [FilePart("images", f"{i}.jpg", "image/jpeg", bytes([i]) * 5) for i in range(3)]
    body = multipart_body(parts)
    boundary = body.content_type.split("boundary=")[1]
    sections = body.data.split(f"--{boundary}".encode())
    assert sections[0] == b"" and sections[-1] == b"--\r\n"
    for i, section in enumerate(sections[1:-1]):
        head, data = section.split(b"\r\n\r\n", 1)
        assert f'name="images"; filename="{i}.jpg"'.encode() in head
        assert data == bytes([i]) * 5 + b"\r\n"


def test_the_key_in_the_environment_goes_into_every_prepared_request(
    tiny_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, record = make_key("bench", [Scope.READ])
    settings = Settings(
        model_path=tiny_model_path, data_dir=tmp_path / "data", api_keys=record.hash_line()
    )
    monkeypatch.delenv(API_KEY_VARIABLE, raising=False)
    photo = build_photo_set(1).all_views()[0]
    body = multipart_body([FilePart("image", "q.jpg", "image/jpeg", photo)])

    async def lean_search(url: str) -> int:
        client = LeanClient(url, timeout_s=30)
        try:
            request = prepare("POST /search", "POST", "/search", client.authority, body)
            return (await client.send(request)).status
        finally:
            await client.aclose()

    with live_server(create_app(settings)) as url:
        assert asyncio.run(lean_search(url)) == 401
        monkeypatch.setenv(API_KEY_VARIABLE, key)
        assert asyncio.run(lean_search(url)) == 200
    head = prepare("POST /search", "POST", "/search", "h:1", body).head
    assert head.count(f"Authorization: Bearer {key}\r\n".encode()) == 1
    assert head.endswith(f"Content-Length: {len(body.data)}\r\n\r\n".encode())
