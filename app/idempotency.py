"""The ``Idempotency-Key`` header of writes: what identifies the request, and its replay.

A write sent with ``Idempotency-Key: <key>`` (visible ASCII, 1–255 characters, e.g. a UUID) is
recorded with its answer in the store, in the write's own transaction (``store/idempotency.py``),
for ``idempotency_ttl_s``. The same key with the same request returns that answer again, status
and body byte for byte, with ``Idempotent-Replayed: true``, and writes nothing — on any replica
sharing the store. The same key with a different request is a 422.

Keys are scoped by the caller's API key id, so two clients cannot read each other's answers or
collide. "The same request" means the same method, path, query and body content: for an
enrollment, each file's name and bytes in order, not the multipart framing (whose boundary a
client library picks anew on every send).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request, Response

from app.access_policy import Caller
from app.authorization import WriteScope
from app.dependencies import get_settings
from app.retriever import Upload
from app.settings import Settings
from store.idempotency import IdempotencyClaim, IdempotentReplay
from store.mutations import StoredResponse
from store.write_plan import OutcomeT

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"


@dataclass(frozen=True)
class IdempotentRequest:
    """A write that came with an ``Idempotency-Key``."""

    scope: str  # the caller's API key id ("anonymous" without keys)
    key: str  # the client's key
    method: str
    target: str  # path and query, as sent
    ttl_s: float

    def fingerprint(self, body_parts: Iterable[bytes] = ()) -> str:
        """SHA-256 hex of method, target and ``body_parts``, each length-prefixed (so no two
        different part lists give the same byte stream)."""
        digest = hashlib.sha256()
        for part in (self.method.encode(), self.target.encode(), *body_parts):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()

    def claim(
        self, fingerprint: str, respond: Callable[[OutcomeT], StoredResponse]
    ) -> IdempotencyClaim[OutcomeT]:
        return IdempotencyClaim(f"{self.scope}:{self.key}", fingerprint, self.ttl_s, respond)


def upload_parts(uploads: Iterable[Upload]) -> list[bytes]:
    """An enrollment's body content for :meth:`IdempotentRequest.fingerprint`: each upload's
    file name and the SHA-256 of its bytes, in order (the hash the store keys them by)."""
    parts: list[bytes] = []
    for upload in uploads:
        parts += [upload.filename.encode(), bytes.fromhex(upload.content_hash)]
    return parts


async def idempotent_request(
    request: Request,
    caller: Annotated[Caller, WriteScope],
    settings: Annotated[Settings, Depends(get_settings)],
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            pattern=KEY_PATTERN,
            description=(
                "Makes a retry of this write safe: the first answer is kept (24 h by default: "
                "`RETRIEVAL_IDEMPOTENCY_TTL_S`) and returned again, unchanged, to a request with "
                "the same key, method, path and body, which then writes nothing. The same key "
                "with another request: 422. Use a fresh random key (e.g. a UUID) per write."
            ),
        ),
    ] = None,
) -> IdempotentRequest | None:
    if key is None:
        return None
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return IdempotentRequest(caller.key_id, key, request.method, target, settings.idempotency_ttl_s)


IdempotencyDep = Annotated[IdempotentRequest | None, Depends(idempotent_request)]


def as_response(answer: StoredResponse, replayed: bool = False) -> Response:
    headers = dict(answer.headers)
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return Response(answer.body, answer.status, headers=headers, media_type=answer.media_type)


def install_idempotency_handlers(app: FastAPI) -> None:
    async def on_replay(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IdempotentReplay)
        return as_response(exc.response, replayed=True)

    app.add_exception_handler(IdempotentReplay, on_replay)
