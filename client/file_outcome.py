"""What became of one file sent (or not sent) for enrollment."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Outcome(StrEnum):
    ENROLLED = "enrolled"
    # The item already held these bytes: the service kept one copy and returned its image id.
    DUPLICATE = "duplicate"
    # An earlier run enrolled these bytes and the item still holds them: not sent again.
    ALREADY = "skipped-already"
    # Refused by the service (with its problem detail), too large to send, or unreadable.
    REJECTED = "rejected"


@dataclass(frozen=True)
class FileOutcome:
    path: Path
    outcome: Outcome
    # The image id for every outcome but REJECTED.
    image_id: str | None
    # Why a file was rejected; empty otherwise.
    reason: str = ""
