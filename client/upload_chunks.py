"""Batches of files that each fit in one enrollment request, by file count and by bytes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from client.service_limits import ServiceLimits

# Multipart framing per file: boundary line, Content-Disposition and Content-Type headers,
# CRLFs (~150 bytes for httpx) plus the file name, which may be escaped or UTF-8 encoded (up to
# 4 bytes a character). Generous, so a chunk never goes over the body limit by its framing.
PART_OVERHEAD = 512
NAME_BYTES_PER_CHAR = 4
REQUEST_OVERHEAD = 512


def part_bytes(path: Path, size: int) -> int:
    """Upper bound of one file's share of a multipart body."""
    return size + PART_OVERHEAD + NAME_BYTES_PER_CHAR * len(path.name)


def request_budget(limits: ServiceLimits) -> int:
    """Bytes the files of one request may take, framing included."""
    return limits.max_request_bytes - REQUEST_OVERHEAD


def fits_alone(path: Path, size: int, limits: ServiceLimits) -> bool:
    return part_bytes(path, size) <= request_budget(limits)


def oversize_detail(size: int, limits: ServiceLimits) -> str:
    """Why a file is not sent at all."""
    return (
        f"{size} bytes does not fit in one request "
        f"(the service accepts at most {limits.max_request_bytes} bytes per request)"
    )


def plan_chunks(
    paths: Sequence[Path], limits: ServiceLimits, sizes: dict[Path, int]
) -> Iterator[list[Path]]:
    """Consecutive chunks of ``paths`` within both per-request limits (greedy, in order).

    A file too large to go in any request on its own is left out here; the caller reports it.
    """
    budget = request_budget(limits)
    chunk: list[Path] = []
    used = 0
    for path in paths:
        cost = part_bytes(path, sizes[path])
        if cost > budget:
            continue
        if chunk and (len(chunk) == limits.max_images_per_request or used + cost > budget):
            yield chunk
            chunk, used = [], 0
        chunk.append(path)
        used += cost
    if chunk:
        yield chunk
