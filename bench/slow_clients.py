"""Healthy searches while thousands of slow-body connections are open.

``python -m bench.slow_clients [--model PATH] [--slow 2000] [--duration 30] [--env K=V ...]``.
Starts the service the production way (``python -m app.server``, its own process, a throw-away
SQLite store, default settings unless ``--env``), opens ``--slow`` connections that each send
the headers of a 32 MiB upload and a few bytes, then a byte every second (reopened as the
service closes them, as an attacker would), and meanwhile sends healthy searches of a real
photo, one after another, for ``--duration`` seconds. Prints the share of healthy searches
answered 200 (target 100 %), the slow connections the service closed, and how many lines the
service logged. Needs an open-file limit above ``--slow`` (the bench raises its own soft limit).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import resource
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench.loadtest.photo_set import build_photo_set
from bench.service_flags import add_service_flags, service_flags
from bench.service_process import service_process

SLOW_HEAD = (
    b"POST /search HTTP/1.1\r\nHost: bench\r\nContent-Length: 33554000\r\n"
    b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
)


async def slow_client(host: str, port: int, stop: asyncio.Event, closed: list[int]) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        try:
            writer.write(SLOW_HEAD)
            while not stop.is_set():
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(1024), 1.0)
                except TimeoutError:
                    writer.write(b"x")
                    continue
                if not data or data.startswith(b"HTTP/1.1 408"):
                    closed[0] += 1
                    break
        except OSError:
            closed[0] += 1
        finally:
            writer.close()


async def healthy(url: str, photo: bytes, duration_s: float) -> collections.Counter[str]:
    outcomes: collections.Counter[str] = collections.Counter()
    files = {"image": ("q.jpg", photo, "image/jpeg")}
    deadline = time.monotonic() + duration_s
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while time.monotonic() < deadline:
            try:
                outcomes[str((await client.post("/search", files=files)).status_code)] += 1
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1
    return outcomes


async def scenario(
    url: str, slow: int, duration_s: float, photo: bytes
) -> tuple[collections.Counter[str], int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stop = asyncio.Event()
    closed = [0]
    tasks = [asyncio.create_task(slow_client(host, port, stop, closed)) for _ in range(slow)]
    await asyncio.sleep(3.0)  # let them all connect
    outcomes = await healthy(url, photo, duration_s)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return outcomes, closed[0]


def run(model: Path, slow: int, duration_s: float, env: dict[str, str]) -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    photo = build_photo_set(1).all_views()[0]
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "service.log"
        service_env = {"RETRIEVAL_LOG_LEVEL": "info", **env}
        with service_process(
            model.resolve(), Path(tmp) / "data", env=service_env, log_path=log_path
        ) as url:
            lines_before = len(log_path.read_text(errors="replace").splitlines())
            outcomes, closed = asyncio.run(scenario(url, slow, duration_s, photo))
            logged = log_path.read_text(errors="replace").splitlines()[lines_before:]
    # uvicorn's access log has a line per answered request: the healthy searches'.
    other = [ln for ln in logged if '"POST /search HTTP/1.1"' not in ln]
    total = sum(outcomes.values())
    share = outcomes["200"] / total if total else 0.0
    print(f"slow-body connections: {slow} (a byte a second; reopened when closed)")
    print(
        f"healthy searches: {total} in {duration_s:g} s; "
        + ", ".join(f"{k} x{v}" for k, v in sorted(outcomes.items()))
    )
    print(f"answered 200: {100 * share:.1f} % (target 100 %)")
    print(f"slow connections closed by the service: {closed}")
    print(f"service log lines during the run, beside the access log: {len(other)}")
    for line in other[:10]:
        print(f"  {line}")
    print("PASS" if share == 1.0 else "FAIL")
    return 0 if share == 1.0 else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.slow_clients",
        description="Healthy searches while thousands of slow-body connections are open.",
    )
    add_service_flags(parser)
    parser.add_argument(
        "--slow", type=int, default=2000, help="slow-body connections (default: %(default)s)"
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds of healthy searches (default: 30)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    model, env = service_flags(args)
    return run(model, args.slow, args.duration, env)


if __name__ == "__main__":
    raise SystemExit(main())
