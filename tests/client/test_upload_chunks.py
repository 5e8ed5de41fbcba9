"""Enrollment chunks stay within both per-request limits, framing included."""

from __future__ import annotations

from pathlib import Path

import httpx
from PIL import Image

from client.service_limits import ServiceLimits
from client.upload_chunks import fits_alone, part_bytes, plan_chunks


def _images(folder: Path, names: list[str]) -> list[Path]:
    paths = []
    for name in names:
        p = folder / name
        Image.new("RGB", (8, 8)).save(p)
        paths.append(p)
    return paths


def _body_bytes(chunk: list[Path]) -> int:
    files = [("images", (p.name, p.read_bytes())) for p in chunk]
    request = httpx.Client().build_request("POST", "http://x/items/a/images", files=files)
    return int(request.headers["Content-Length"])


def test_chunks_stay_under_the_byte_limit_with_long_file_names(tmp_path: Path) -> None:
    # The framing estimate scales with the file name: a long non-ASCII name cannot push a
    # chunk over the byte limit.
    paths = _images(tmp_path, [f"{'ü' * 120}{i}.jpg" for i in range(6)])
    sizes = {p: p.stat().st_size for p in paths}
    limits = ServiceLimits(max_images_per_request=64, max_request_bytes=3000, max_k=100)
    chunks = list(plan_chunks(paths, limits, sizes))
    assert [p for c in chunks for p in c] == paths
    for chunk in chunks:
        assert _body_bytes(chunk) <= limits.max_request_bytes
        assert sum(part_bytes(p, sizes[p]) for p in chunk) <= limits.max_request_bytes


def test_chunks_respect_the_file_count_and_leave_out_what_cannot_fit(tmp_path: Path) -> None:
    paths = _images(tmp_path, [f"{i}.png" for i in range(7)])
    sizes = {p: p.stat().st_size for p in paths}
    sizes[paths[3]] = 10_000  # as if huge: no request can carry it
    limits = ServiceLimits(max_images_per_request=2, max_request_bytes=5000, max_k=100)
    assert not fits_alone(paths[3], sizes[paths[3]], limits)
    chunks = list(plan_chunks(paths, limits, sizes))
    assert chunks == [paths[0:2], [paths[2], paths[4]], paths[5:7]]
