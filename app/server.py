"""``python -m app.server [--host H] [--port P]``: the one way the service is started.

``centroid-retrieval serve`` (after its checks), the image's ``CMD`` (so the compose and any
Kubernetes deployment run it too), the benchmarks and the tests all start the service here, so
each gets the same protection from slow and numerous clients: uvicorn, one worker, running
:class:`~app.slow_client_protocol.SlowClientProtocol` (header and body deadlines, the connection
cap) with its keep-alive timeout set to ``idle_timeout_s``.

At start the open-file limit is raised to its hard limit, and the connection cap kept
:data:`FD_RESERVE` below it, so ``accept()`` never runs out of descriptors (past the limit it
fails with EMFILE for everyone, and asyncio logs every failure). uvicorn's and asyncio's
per-connection warnings go through one :class:`EventLogSummary`: a line per kind per interval.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import resource
import sys

import uvicorn
from pydantic import ValidationError

from app.event_log_summary import EventLogSummary, SummarizingFilter
from app.main import create_app
from app.service_state import ServiceState
from app.settings import Settings
from app.slow_client_protocol import ConnectionLimits, SlowClientProtocol

log = logging.getLogger("app.server")  # also when run as __main__

# Descriptors kept for everything but client connections: the listening socket, the store
# (SQLite and its WAL, or Redis connections), blob files, spooled uploads, the model, logs.
FD_RESERVE = 256
# uvicorn's exit code when the server did not start (e.g. the port is taken).
STARTUP_FAILURE = 3
# Per-connection messages of uvicorn and asyncio → what a batch of them is called.
SUMMARIZED = {
    "Invalid HTTP request received.": "invalid HTTP requests answered 400",
    "Exceeded concurrency limit.": "requests over uvicorn's concurrency limit",
    "socket.accept() out of system resource": "accept() failures (out of descriptors)",
}


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to the hard limit; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # some sandboxes refuse; serve with what there is
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard


def connection_cap(max_connections: int, open_file_limit: int) -> int:
    """``max_connections``, but at most the open-file limit less :data:`FD_RESERVE`."""
    if open_file_limit == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, open_file_limit - FD_RESERVE))


def build_server(settings: Settings, host: str, port: int) -> uvicorn.Server:
    open_files = raise_open_file_limit()
    cap = connection_cap(settings.max_connections, open_files)
    app = create_app(settings)
    state: ServiceState = app.state.service
    events = EventLogSummary(logging.getLogger("app.connections"))
    limits = ConnectionLimits(
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_connections=cap,
        events=events,
        metrics=state.metrics,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=SlowClientProtocol.with_limits(limits),
        # uvicorn types it int; call_later takes any number of seconds.
        timeout_keep_alive=settings.idle_timeout_s,  # type: ignore[arg-type]
        log_level=settings.log_level.lower(),
        lifespan="on",
    )
    # After uvicorn's logging setup (in Config), which would otherwise not know the filter.
    summarizing = SummarizingFilter(events, SUMMARIZED)
    for name in ("uvicorn.error", "asyncio"):
        logging.getLogger(name).addFilter(summarizing)
    log.info(
        "connections: at most %d open (open-file limit %d), headers within %g s, body "
        "advancing within %g s, idle %g s",
        cap,
        open_files,
        settings.header_timeout_s,
        settings.body_timeout_s,
        settings.idle_timeout_s,
    )
    return uvicorn.Server(config)


def serve(settings: Settings, host: str, port: int) -> bool:
    """Serve until told to stop (SIGINT, SIGTERM); False when the server never started."""
    server = build_server(settings, host, port)
    # uvicorn re-raises the Ctrl-C it shut down gracefully for: done, not an error.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return server.started


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.server",
        description="Run the retrieval service (one uvicorn worker, slow-client deadlines); "
        "settings from the RETRIEVAL_* environment variables.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: invalid RETRIEVAL_* setting: {exc}", file=sys.stderr)
        return 1
    return 0 if serve(settings, args.host, args.port) else STARTUP_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
