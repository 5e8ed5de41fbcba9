"""Peak resident memory of the service under many concurrent large uploads.

``python -m bench.upload_memory [--model PATH] [--uploads 100] [--mib 30] [--env K=V ...]``.
Starts the service the production way (``python -m app.server``, its own process, a throw-away
SQLite store), sends one small search so the model's arenas are allocated, and takes that as the
idle resident set. Then ``--uploads`` clients each POST one ``/search`` whose single file is a
real JPEG padded with zeros after its end marker to ``--mib`` MiB (the decoder reads up to the
end marker, so the search is answered like any other), all at once over raw sockets; the body
of every request is the same buffer sent in 256 KiB slices, so the client holds one copy. The
peak is the kernel's high-water mark of the service's resident set over the burst (``VmHWM``,
reset before it). Target: peak - idle <= 1 GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.loadtest.photo_set import build_photo_set
from bench.process_cpu import child_pids
from bench.process_memory import MiB, peak_rss_bytes, reset_peak_rss, rss_bytes
from bench.service_flags import add_service_flags, service_flags
from bench.service_process import service_process

TARGET_BYTES = 1024 * MiB
BOUNDARY = b"uploadmemorybench"
SLICE = 256 * 1024


def multipart_body(payload: bytes) -> bytes:
    head = (
        b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    return head + payload + b"\r\n--" + BOUNDARY + b"--\r\n"


def padded_jpeg(size: int) -> bytes:
    photo = build_photo_set(1).all_views()[0]
    return photo + bytes(max(0, size - len(photo)))


async def upload(host: str, port: int, body: memoryview, timeout_s: float) -> str:
    """POST ``body`` to /search; the status line's code, or what went wrong."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError) as exc:
        return f"connect: {type(exc).__name__}"
    try:
        writer.write(
            b"POST /search HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
            b"Content-Type: multipart/form-data; boundary=" + BOUNDARY + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        for start in range(0, len(body), SLICE):
            writer.write(body[start : start + SLICE])
            await asyncio.wait_for(writer.drain(), timeout_s)
        status = await asyncio.wait_for(reader.readline(), timeout_s)
        return status.split(b" ")[1].decode() if status.count(b" ") >= 2 else "no answer"
    except (OSError, TimeoutError) as exc:
        # The service may answer early (503) and close while the rest is still being sent.
        return f"send: {type(exc).__name__}"
    finally:
        writer.close()


async def burst(url: str, body: bytes, uploads: int, timeout_s: float) -> list[str]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    view = memoryview(body)
    sent = (upload(host, port, view, timeout_s) for _ in range(uploads))
    return list(await asyncio.gather(*sent))


def run(model: Path, uploads: int, mib: int, env: dict[str, str], timeout_s: float) -> int:
    payload = padded_jpeg(mib * MiB)
    body = multipart_body(payload)
    small = multipart_body(build_photo_set(1).all_views()[0])
    service_env = {"RETRIEVAL_MAX_REQUEST_BYTES": str(max(32 * MiB, len(body) + MiB)), **env}
    with (
        tempfile.TemporaryDirectory() as tmp,
        service_process(model.resolve(), Path(tmp) / "data", env=service_env) as url,
    ):
        (pid,) = child_pids()
        warm = asyncio.run(burst(url, small, 1, timeout_s))
        time.sleep(1.0)
        idle = rss_bytes(pid)
        exact = reset_peak_rss(pid)
        start = time.perf_counter()
        outcomes = asyncio.run(burst(url, body, uploads, timeout_s))
        elapsed = time.perf_counter() - start
        peak = peak_rss_bytes(pid)
        after = rss_bytes(pid)
    counts = collections.Counter(outcomes)
    above = peak - idle
    print(f"uploads: {uploads} concurrent POST /search of {len(body) / MiB:.1f} MiB each")
    print(f"warm-up search: {warm[0]}; burst took {elapsed:.1f} s")
    print("outcomes: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    print(f"idle RSS: {idle / MiB:.0f} MiB")
    print(f"peak RSS: {peak / MiB:.0f} MiB" + ("" if exact else " (since start: no reset)"))
    print(f"peak above idle: {above / MiB:.0f} MiB (target <= {TARGET_BYTES // MiB} MiB)")
    print(f"RSS after the burst: {after / MiB:.0f} MiB")
    print("PASS" if above <= TARGET_BYTES else "FAIL")
    return 0 if above <= TARGET_BYTES else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.upload_memory",
        description="Peak resident memory of the service under concurrent large uploads.",
    )
    add_service_flags(parser)
    parser.add_argument(
        "--uploads", type=int, default=100, help="concurrent uploads (default: %(default)s)"
    )
    parser.add_argument(
        "--mib", type=int, default=30, help="size of each upload's file (default: %(default)s)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="per-step client timeout (default: 120 s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    model, env = service_flags(args)
    return run(model, args.uploads, args.mib, env, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
