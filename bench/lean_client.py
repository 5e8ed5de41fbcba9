"""A lean HTTP/1.1 client for the bench: each request built once as bytes, sent over asyncio
streams, each answer read for its status line, headers and body, nothing more.

Why not httpx here: the bench offers hundreds of ≈ 1 MP uploads per second from the same
machine as the service, and httpx's per-request work (its multipart encoder, connection pool,
header and URL models) then takes a noticeable share of a core that the service lacks; a figure
the client limits says nothing about the service. Here a request is one ``write`` of prepared
bytes and an answer is one header read plus the body, and the client's CPU share is printed
next to every figure anyway.

Failures without an answer are raised as httpx's exception types (``httpx.ConnectError``,
``httpx.WriteError``, ``httpx.ReadError``, ``httpx.RemoteProtocolError``, ``httpx.ReadTimeout``)
so the load-test loops (``bench/loadtest``) classify them as they do httpx's. A request is
never retried: a reset or a dropped connection is counted, never hidden. Idle keep-alive
connections are closed after ``keepalive_s`` (below uvicorn's 5 s), before the server could
close them under a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from bench.loadtest.request_sample import Operation
from client.api_key_header import api_key_headers

# uvicorn closes an idle keep-alive connection after 5 s (its --timeout-keep-alive default).
DEFAULT_KEEPALIVE_S = 4.0
_HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True)
class FilePart:
    """One file of a ``multipart/form-data`` body."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class MultipartBody:
    content_type: str
    data: bytes


def multipart_body(parts: Sequence[FilePart]) -> MultipartBody:
    """``parts`` as a ``multipart/form-data`` body, as a browser would send them."""
    boundary = uuid.uuid4().hex
    chunks = []
    for part in parts:
        if boundary.encode() in part.data:  # 2^-128 per position; checked rather than assumed
            raise ValueError("boundary occurs in the data")
        chunks += [
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="{part.field}"; '
            f'filename="{part.filename}"\r\n'.encode(),
            f"Content-Type: {part.content_type}\r\n\r\n".encode(),
            part.data,
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    return MultipartBody(f"multipart/form-data; boundary={boundary}", b"".join(chunks))


@dataclass(frozen=True)
class PreparedRequest:
    """A request as bytes: ``head`` (request line and headers) then ``body``, kept apart so
    requests that differ only in their path share one body. ``endpoint``: the label the
    load-test statistics group by, e.g. ``"POST /search"``."""

    endpoint: str
    head: bytes
    body: bytes


def prepare(
    endpoint: str, method: str, target: str, host: str, body: MultipartBody
) -> PreparedRequest:
    # The key (CENTROID_RETRIEVAL_API_KEY) is read once here, with the rest of the bytes.
    auth = "".join(f"{name}: {value}\r\n" for name, value in api_key_headers().items())
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{auth}"
        f"Content-Type: {body.content_type}\r\nContent-Length: {len(body.data)}\r\n\r\n"
    ).encode()
    return PreparedRequest(endpoint, head, body.data)


@dataclass(frozen=True)
class LeanResponse:
    """``headers``: names lower-cased (a repeated header keeps its last value)."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def close(self) -> None:
        self.writer.close()


@dataclass
class ResponseTally:
    """What the answers were: ``statuses`` per code, and 503s that were not a proper
    rejection (no ``Retry-After`` header or not ``application/problem+json``)."""

    statuses: Counter[int] = field(default_factory=Counter)
    improper_503: int = 0

    def record(self, response: LeanResponse) -> None:
        self.statuses[response.status] += 1
        if response.status == 503 and (
            "retry-after" not in response.headers
            or not response.headers.get("content-type", "").startswith("application/problem+json")
        ):
            self.improper_503 += 1


class LeanClient:
    """Keep-alive connections to one ``http://host:port``, one request per connection at a
    time, opened as needed (the caller bounds the concurrency)."""

    def __init__(
        self, base_url: str, *, timeout_s: float, keepalive_s: float = DEFAULT_KEEPALIVE_S
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or url.hostname is None:
            raise ValueError(f"expected http://host:port, got {base_url!r}")
        self.host = url.hostname
        self.port = url.port or 80
        self.authority = f"{self.host}:{self.port}"
        self.timeout_s = timeout_s
        self.keepalive_s = keepalive_s
        self.tally = ResponseTally()
        self._idle: list[_Connection] = []

    def operation(self, request: PreparedRequest) -> Operation[LeanClient]:
        async def send(client: LeanClient) -> int:
            return (await client.send(request)).status

        return Operation(request.endpoint, send)

    async def send(self, request: PreparedRequest) -> LeanResponse:
        """Send one prepared request, return its answer (also counted in ``tally``)."""
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = await self._acquire()
                response, keep = await self._exchange(conn, request)
        except TimeoutError:
            if conn is not None:
                conn.close()
            raise httpx.ReadTimeout(f"no complete answer within {self.timeout_s:g} s") from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if keep:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        self.tally.record(response)
        return response

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()

    async def _acquire(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < self.keepalive_s:
                return conn
            conn.close()  # the server may be about to close it: never send on it
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise httpx.ConnectError(f"{self.authority}: {exc}") from exc
        return _Connection(reader, writer)

    async def _exchange(
        self, conn: _Connection, request: PreparedRequest
    ) -> tuple[LeanResponse, bool]:
        try:
            conn.writer.writelines((request.head, request.body))
            await conn.writer.drain()
        except OSError as exc:
            raise httpx.WriteError(f"sending the request: {exc}") from exc
        try:
            head = await conn.reader.readuntil(_HEAD_END)
        except asyncio.IncompleteReadError as exc:
            raise httpx.RemoteProtocolError(
                f"server closed the connection after {len(exc.partial)} bytes of the answer"
            ) from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError("answer headers too long") from exc
        except OSError as exc:
            raise httpx.ReadError(f"reading the answer: {exc}") from exc
        status, version, headers = _parse_head(head)
        body = await _read_body(conn.reader, headers)
        connection = headers.get("connection", "").lower()
        persistent = (version == "HTTP/1.1" and connection != "close") or connection == "keep-alive"
        # A body that ran to the end of the connection leaves nothing to reuse.
        delimited = "content-length" in headers or _chunked(headers)
        return LeanResponse(status, headers, body), persistent and delimited


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """Status line and headers → ``(status, HTTP version, lower-cased headers)``."""
    try:
        status_line, *lines = head[: -len(_HEAD_END)].decode("latin-1").split("\r\n")
        version, code, *_ = status_line.split(" ", 2)
        status = int(code)
    except ValueError as exc:
        raise httpx.RemoteProtocolError(f"malformed status line in {head[:80]!r}") from exc
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise httpx.RemoteProtocolError(f"malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return status, version, headers


def _chunked(headers: dict[str, str]) -> bool:
    return headers.get("transfer-encoding", "").lower() == "chunked"


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    try:
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
        if _chunked(headers):
            chunks: list[bytes] = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)  # the data, then CRLF
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk[:-2])
        return await reader.read()  # no length: the body ends with the connection
    except (asyncio.IncompleteReadError, ValueError) as exc:
        raise httpx.RemoteProtocolError(f"answer body cut short or malformed: {exc}") from exc
    except OSError as exc:
        raise httpx.ReadError(f"reading the answer body: {exc}") from exc
