"""Upload one item's files in as few requests as the service's limits allow."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import httpx

from client.file_outcome import FileOutcome, Outcome
from client.problem_detail import problem_detail
from client.service_error import ServiceError
from client.service_limits import ServiceLimits
from client.upload_chunks import fits_alone, oversize_detail, plan_chunks
from client.write_retries import RetryPolicy, send_idempotent

# Statuses that mean "this file was refused", as opposed to the service failing.
REJECTED_STATUSES = (413, 415, 422)
# The multipart field of POST /items/{item_id}/images (app/routes/items.py).
IMAGES_FIELD = "images"


class ItemUploader:
    """Sends files to ``POST /items/{item_id}/images`` in chunks within the service's limits.

    A file the service refuses is reported with its problem detail and the rest still go in;
    a 503 or a lost connection is retried with the request's ``Idempotency-Key`` (so a write
    that was in fact committed is not applied twice); any other failure raises
    :class:`ServiceError`.
    """

    def __init__(
        self,
        client: httpx.Client,
        limits: ServiceLimits,
        item_id: str,
        known_image_ids: Iterable[str] = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        self.client = client
        self.retry = retry or RetryPolicy()
        self.limits = limits
        self.item_id = item_id
        # Image ids the item holds: an upload answered with one of them was a duplicate.
        self.known_image_ids = set(known_image_ids)
        self.requests = 0
        # The item's image count after the last accepted request (None before any).
        self.image_count: int | None = None

    def upload(self, paths: Sequence[Path]) -> Iterator[list[FileOutcome]]:
        """The outcomes, one list per request answered (files too large to send come first)."""
        sizes = {p: p.stat().st_size for p in paths}
        oversize = [
            FileOutcome(p, Outcome.REJECTED, None, oversize_detail(sizes[p], self.limits))
            for p in paths
            if not fits_alone(p, sizes[p], self.limits)
        ]
        if oversize:
            yield oversize
        for chunk in plan_chunks(paths, self.limits, sizes):
            yield from self._send(chunk)

    def _send(self, chunk: Sequence[Path]) -> Iterator[list[FileOutcome]]:
        files = [(IMAGES_FIELD, (p.name, p.read_bytes())) for p in chunk]
        self.requests += 1
        url = f"/items/{self.item_id}/images"
        r = send_idempotent(lambda h: self.client.post(url, files=files, headers=h), self.retry)
        # 201: something was added; 200: every file was already in the item.
        if r.status_code in (200, 201):
            body = r.json()
            self.image_count = int(body["image_count"])
            outcomes = []
            for path, image_id in zip(chunk, body["image_ids"], strict=True):
                seen = image_id in self.known_image_ids
                self.known_image_ids.add(image_id)
                outcomes.append(
                    FileOutcome(path, Outcome.DUPLICATE if seen else Outcome.ENROLLED, image_id)
                )
            yield outcomes
            return
        if r.status_code not in REJECTED_STATUSES:
            raise ServiceError.for_response(
                r, f"enrolling {len(chunk)} file(s) of {chunk[0].parent}"
            )
        if len(chunk) > 1:
            # The service rejects a request whole when one file is bad: send the files one by
            # one to enroll the good ones and name the bad ones.
            for path in chunk:
                yield from self._send([path])
            return
        reason = f"HTTP {r.status_code}: {problem_detail(r)}"
        yield [FileOutcome(chunk[0], Outcome.REJECTED, None, reason)]
