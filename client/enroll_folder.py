"""``enroll-folder``: enroll a folder of photos, one item per sub-folder, resumably."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

from client.enroll_state import EnrollState
from client.file_outcome import FileOutcome, Outcome
from client.image_folders import image_files, item_folders
from client.item_ids import map_item_ids
from client.item_uploader import ItemUploader
from client.service_error import ServiceError
from client.service_limits import ServiceLimits, read_limits


class EmptyFolderError(RuntimeError):
    """ROOT has no sub-folder with image files in it."""


@dataclass
class FolderSummary:
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    items: int = 0
    requests: int = 0

    @property
    def ok(self) -> bool:
        """Every image file is enrolled now (by this run or an earlier one)."""
        return self.outcomes[Outcome.REJECTED] == 0

    def line(self) -> str:
        counts = ", ".join(f"{self.outcomes[o]} {o.value}" for o in Outcome)
        files = self.outcomes.total()
        return f"summary: {files} files in {self.items} items: {counts}; {self.requests} uploads"


def held_image_ids(client: httpx.Client, item_id: str) -> set[str]:
    """The image ids the item holds now (none when it does not exist)."""
    r = client.get(f"/items/{item_id}")
    if r.status_code == 404:
        return set()
    if r.status_code != 200:
        raise ServiceError.for_response(r, f"GET /items/{item_id}")
    return set(r.json()["image_ids"])


class FolderEnrollment:
    """One run of ``enroll-folder`` over ``root``: one line per file to ``out``, notes to ``err``.

    Raises :class:`ServiceError` (or httpx's transport errors) when the service fails; what was
    accepted up to then is in the state file already.
    """

    def __init__(
        self, client: httpx.Client, root: Path, state: EnrollState, out: TextIO, err: TextIO
    ) -> None:
        self.client = client
        self.root = root
        self.state = state
        self.out = out
        self.err = err
        self.summary = FolderSummary()

    def run(self, prefix: str) -> FolderSummary:
        folders = item_folders(self.root)
        if not folders:
            raise EmptyFolderError(
                f"no sub-folder of {self.root} holds image files (one item per sub-folder)"
            )
        loose = image_files(self.root)
        if loose:
            self._note(f"ignored {len(loose)} image file(s) directly in {self.root}")
        ids = map_item_ids(sorted(folders), prefix)
        limits = read_limits(self.client)
        if limits.assumed:
            self._note(f"/info reports no limits; assuming the service's defaults {limits}")
        for name, paths in folders.items():
            self._enroll_item(name, ids[name], paths, limits)
        return self.summary

    def _enroll_item(
        self, folder: str, item_id: str, paths: list[Path], limits: ServiceLimits
    ) -> None:
        self.summary.items += 1
        print(f"item {item_id} <- {folder}/ ({len(paths)} image files)", file=self.out, flush=True)
        held = held_image_ids(self.client, item_id)
        digests: dict[Path, str] = {}
        pending: list[Path] = []
        for path in paths:
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as exc:
                self._report(FileOutcome(path, Outcome.REJECTED, None, f"cannot read: {exc}"))
                continue
            recorded = self.state.image_id(item_id, digest)
            if recorded is not None and recorded in held:
                self._report(FileOutcome(path, Outcome.ALREADY, recorded))
                continue
            digests[path] = digest
            pending.append(path)
        uploader = ItemUploader(self.client, limits, item_id, held)
        try:
            for batch in uploader.upload(pending):
                for o in batch:
                    if o.image_id is not None:
                        self.state.record(item_id, digests[o.path], o.image_id)
                if any(o.image_id is not None for o in batch):
                    # Saved before the lines are printed: a file shown as enrolled is on
                    # record, whenever the run is interrupted.
                    self.state.save()
                for o in batch:
                    self._report(o)
        finally:
            self.summary.requests += uploader.requests

    def _note(self, message: str) -> None:
        print(f"note: {message}", file=self.err, flush=True)

    def _report(self, outcome: FileOutcome) -> None:
        self.summary.outcomes[outcome.outcome] += 1
        what = f"image {outcome.image_id}" if outcome.image_id else outcome.reason
        rel = outcome.path.relative_to(self.root)
        print(f"{outcome.outcome.value:<15} {rel}: {what}", file=self.out, flush=True)
