"""The resume record of ``enroll-folder``: what earlier runs had the service accept."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Next to the photos by default, so a re-run over the same folder finds it.
DEFAULT_STATE_NAME = ".centroid-retrieval-enroll.json"
STATE_VERSION = 1

# service URL → item id → sha256 of a file's bytes → the image id the service returned for it.
Services = dict[str, dict[str, dict[str, str]]]


class EnrollStateError(RuntimeError):
    """The state file exists but is not one this tool wrote."""


class EnrollState:
    """Per service URL and item, the image id each file's bytes were enrolled as.

    A record is a claim to check, not a fact: the caller skips a file only while the item
    still holds the recorded image id, so a deleted image or a wiped service is re-sent.
    """

    def __init__(self, path: Path, url: str, services: Services) -> None:
        self.path = path
        self.url = url.rstrip("/")
        # Every service's records, so saving keeps those of the services not talked to now.
        self.services = services

    @classmethod
    def load(cls, path: Path, url: str) -> EnrollState:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path, url, {})
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise EnrollStateError(f"{path} is not JSON ({exc}); delete it to start over") from exc
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise EnrollStateError(
                f"{path} is not a version {STATE_VERSION} enroll-folder state file; "
                "delete it to start over"
            )
        services: Services = data["services"]
        return cls(path, url, services)

    def image_id(self, item_id: str, sha256: str) -> str | None:
        return self.services.get(self.url, {}).get(item_id, {}).get(sha256)

    def record(self, item_id: str, sha256: str, image_id: str) -> None:
        self.services.setdefault(self.url, {}).setdefault(item_id, {})[sha256] = image_id

    def save(self) -> None:
        """Replace the file atomically: an interrupted run leaves the old or the new record."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump({"version": STATE_VERSION, "services": self.services}, f)
            f.flush()
            os.fsync(f.fileno())
        # No directory fsync: after a power cut the worst case is the previous record, and
        # what it lacks is merely sent again (the service keeps one copy per content).
        os.replace(tmp, self.path)
