"""A real, deliberately slow HTTP server: one request at a time, each taking a fixed time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer


class _SerialServer(HTTPServer):
    # Every client connection waits in the listen backlog instead of being refused: the queue
    # in front of a busy server is exactly what the open-loop test must observe. (The default
    # backlog of 5 would make Linux retry SYNs after a second and blur the timings.)
    request_queue_size = 256


@contextmanager
def slow_http_server(service_s: float) -> Iterator[str]:
    """Yield the base URL of a server that answers every request with 200 after ``service_s``.

    Serial (not threaded) and HTTP/1.0 (one request per connection), so requests that arrive
    faster than ``1 / service_s`` per second queue, as at a saturated single-worker service.
    """

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            time.sleep(service_s)
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _SerialServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
