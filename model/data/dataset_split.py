"""A dataset read into its training, query and gallery parts, and the error readers raise."""

from __future__ import annotations

from dataclasses import dataclass

from model.data.sample import Sample

# "reid": cross-camera evaluation (Market-1501 protocol); "retrieval": every gallery image counts.
PROTOCOLS = ("reid", "retrieval")


class DatasetError(ValueError):
    """A dataset folder or annotation file is missing, malformed or holds no images."""


@dataclass(frozen=True)
class DatasetSplit:
    """``train`` images teach the network; ``query`` images are searched among ``gallery``."""

    name: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    protocol: str  # "reid" (cross-camera evaluation) or "retrieval"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; known: {PROTOCOLS}")
