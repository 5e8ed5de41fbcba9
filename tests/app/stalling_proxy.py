"""A TCP proxy in front of a real Redis that can stall right after an ``EXEC`` reached Redis.

It forwards bytes both ways unchanged. Armed with :meth:`StallingProxy.stall_after_next_exec`,
the next client chunk holding an ``EXEC`` is delivered to Redis (which commits the transaction),
and from then on nothing moves in either direction on any connection, old or new, until
:meth:`release`: what a client sees when Redis stops answering (a SIGSTOP, a full stall) just
after taking its commit. Unlike a SIGSTOP at a random moment, the commit is surely in flight.
Threads with blocking sockets, so a live service and redis-py use it as they use Redis.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

EXEC_COMMAND = b"*1\r\n$4\r\nEXEC\r\n"  # how redis-py sends EXEC
CHUNK = 65536


class StallingProxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._armed = threading.Event()
        self._marker = b""  # what the stalling EXEC's chunk must also hold
        self.stalled = threading.Event()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stall_after_next_exec(self, of: bytes = b"") -> None:
        """Stall after the next ``EXEC`` sent in one chunk with ``of`` (a key of the write
        under test: other clients of the service, such as the change feed's reader, send
        EXECs of their own at any moment)."""
        self._marker = of
        self.stalled.clear()
        self._armed.set()

    def release(self) -> None:
        self._flowing.set()

    def __enter__(self) -> StallingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        self.release()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self._upstream)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        tail = b""
        marked = False  # this connection sent the marker since its last EXEC
        with contextlib.suppress(OSError):
            while data := source.recv(CHUNK):
                # A command (or the marker) may span two chunks: look at the end of the last
                # one too.
                keep = max(len(EXEC_COMMAND), len(self._marker)) - 1
                seen = tail + data
                tail = seen[-keep:]
                marked = marked or self._marker in seen
                if from_client and EXEC_COMMAND in seen:
                    stall, marked = marked and self._armed.is_set(), False
                else:
                    stall = False
                if stall:
                    # Stopped before the EXEC goes out, so that not even its reply gets back.
                    self._armed.clear()
                    self._flowing.clear()
                    self.stalled.set()
                else:
                    self._flowing.wait()
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
