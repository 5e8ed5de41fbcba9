"""What the enroll-folder tests share: a real service with small batches, folders of photos."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.main import create_app
from app.settings import Settings
from tests.live_server import live_server

# Small, so a handful of photos needs several requests per item.
MAX_IMAGES = 2
ENROLL_ROUTE = "/items/{item_id}/images"
# One line per file: "<outcome> <path relative to ROOT>: <image id or reason>".
OUTCOME_LINE = re.compile(r"^(enrolled|duplicate|skipped-already|rejected) +(.+?): (.+)$", re.M)


@contextmanager
def enroll_service(model_path: Path, data_dir: Path) -> Iterator[httpx.Client]:
    settings = Settings(
        model_path=model_path, data_dir=data_dir, allow_gpu=False, max_images_per_request=MAX_IMAGES
    )
    with (
        live_server(create_app(settings)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        yield client


def write_files(root: Path, files: dict[str, bytes]) -> None:
    """``files``: path relative to ``root`` → bytes."""
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def outcomes(text: str) -> dict[str, str]:
    """Path relative to ROOT → outcome, from enroll-folder's output."""
    found = OUTCOME_LINE.findall(text)
    paths = [path for _, path, _ in found]
    assert len(paths) == len(set(paths)), f"a file reported twice:\n{text}"
    return {path: outcome for outcome, path, _ in found}


def item_image_counts(client: httpx.Client, prefix: str) -> dict[str, int]:
    r = client.get("/items", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return {
        row["item_id"]: row["image_count"]
        for row in r.json()["items"]
        if row["item_id"].startswith(prefix)
    }
