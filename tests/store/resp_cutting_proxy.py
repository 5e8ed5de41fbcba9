"""A TCP proxy between a Redis client and a real Redis server that can lose one EXEC's answer.

It forwards RESP traffic both ways unchanged. Armed with :meth:`RespCuttingProxy.cut_next_exec`,
the next client chunk that holds an ``EXEC`` command ends that connection:

* ``deliver=True``: the chunk reaches Redis, which commits the transaction; its reply is dropped
  and both sides are closed, so the client sees the connection lost after sending ``EXEC``;
* ``deliver=False``: only the bytes before ``EXEC`` reach Redis before both sides are closed, so
  Redis discards the queued transaction: the client sees the same thing, nothing is applied.

One cut per arming; every other connection, and later ones, are forwarded as usual. The proxy
runs its own asyncio loop in a thread, so blocking clients (redis-py, a live service) use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

# How redis-py sends EXEC: a one-element RESP array. Binary payloads in the same chunk (float
# vectors) will not hold these 14 bytes by chance in any test.
EXEC_COMMAND = b"*1\r\n$4\r\nEXEC\r\n"
CHUNK = 65536
# With ``deliver=True`` the server's reply is awaited (then dropped) so the commit has surely
# happened before the test looks; it takes microseconds, this is only a bound.
REPLY_WAIT_S = 2.0


class RespCuttingProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._armed: bool | None = None  # None: forward; else the pending cut's ``deliver``
        self.cuts = 0
        self.cut_done = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    def __enter__(self) -> RespCuttingProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self._server = future.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut_next_exec(self, *, deliver: bool) -> None:
        with self._lock:
            self._armed = deliver
            self.cut_done.clear()

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        # Closing every socket ends every handler (its reads see EOF); cancelling them instead
        # would make asyncio log each cancellation.
        for writer in list(self._open):
            writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    def _take_cut(self) -> bool | None:
        with self._lock:
            deliver, self._armed = self._armed, None
            return deliver

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            s_reader, s_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            c_writer.close()
            self._handlers.discard(handler)
            return
        self._open |= {c_writer, s_writer}
        client_gone = asyncio.Event()
        reply_after_cut = asyncio.Event()

        async def server_to_client() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await s_reader.read(CHUNK):
                    if client_gone.is_set():
                        reply_after_cut.set()
                        continue
                    c_writer.write(data)
                    await c_writer.drain()
            c_writer.close()

        pump = asyncio.create_task(server_to_client())
        tail = b""
        try:
            while data := await c_reader.read(CHUNK):
                seen = tail + data
                at = seen.find(EXEC_COMMAND)
                deliver = self._take_cut() if at >= 0 and self._armed is not None else None
                if deliver is None:
                    s_writer.write(data)
                    await s_writer.drain()
                    # One byte short of the command: a match must end in the next chunk.
                    tail = seen[-(len(EXEC_COMMAND) - 1) :]
                    continue
                client_gone.set()
                c_writer.close()
                if deliver:
                    s_writer.write(data)
                    await s_writer.drain()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(reply_after_cut.wait(), REPLY_WAIT_S)
                else:
                    # Bytes of EXEC already forwarded with the previous chunk are harmless:
                    # without its last bytes Redis never runs the command.
                    s_writer.write(data[: max(0, at - len(tail))])
                    await s_writer.drain()
                self.cuts += 1
                self.cut_done.set()
                break
        except (ConnectionError, OSError):
            pass
        finally:
            s_writer.close()
            c_writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await pump
            self._open -= {c_writer, s_writer}
            self._handlers.discard(handler)
