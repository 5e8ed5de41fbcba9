"""Error text for clients without the server's file paths, hosts or ports.

Start-up failures and store errors carry the model file's path, the SQLite file's path or the
Redis ``host:port`` (ONNX Runtime, sqlite3 and redis-py put them in their messages), or the
Milvus URI. They help the operator, who reads them in the log, and tell a client how the server
is laid out, so what ``/readyz`` and the 503s say goes through :class:`Redactor` first: the
configured paths and the Redis, Milvus and S3 addresses (and the Milvus token and the S3 keys,
should a message ever carry them) become placeholders, and any other absolute path or
``host:port`` too.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from urllib.parse import urlsplit

from app.settings import Settings

_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.+~-]+/)*[\w.+~-]+")
_HOST_PORT = re.compile(
    r"\b(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:]+\]|[A-Za-z][\w-]*(?:\.[\w-]+)*):\d{1,5}\b"
)


def _path_forms(path: Path) -> list[str]:
    forms = {str(path), str(path.absolute())}
    with contextlib.suppress(OSError):
        forms.add(str(path.resolve()))
    # A bare relative name ("data") is a word too, not worth mangling every "metadata" for.
    return [f for f in forms if "/" in f]


def _url_forms(url: str, placeholder: str) -> list[tuple[str, str]]:
    """The URL itself, its netloc (credentials included) and its ``host:port``."""
    forms = [(url, placeholder)]
    parts = urlsplit(url)
    if parts.netloc:
        forms.append((parts.netloc, placeholder))
    if parts.hostname and parts.port:
        forms.append((f"{parts.hostname}:{parts.port}", placeholder))
    return forms


class Redactor:
    def __init__(self, settings: Settings) -> None:
        needles: list[tuple[str, str]] = []
        needles += [(f, "<model file>") for f in _path_forms(settings.model_path)]
        needles += [(f, "<store file>") for f in _path_forms(settings.sqlite_path)]
        needles += [(f, "<blob directory>") for f in _path_forms(settings.blob_dir)]
        needles += [(f, "<data directory>") for f in _path_forms(settings.data_dir)]
        if settings.redis_url:
            needles += _url_forms(settings.redis_url, "<redis>")
        if settings.milvus_uri and settings.milvus_uri.endswith(".db"):  # Milvus Lite's file
            needles += [(f, "<milvus>") for f in _path_forms(Path(settings.milvus_uri))]
        elif settings.milvus_uri:
            needles += _url_forms(settings.milvus_uri, "<milvus>")
        if settings.milvus_token:
            needles.append((settings.milvus_token.get_secret_value(), "<milvus token>"))
        if settings.s3_endpoint:
            needles += _url_forms(settings.s3_endpoint, "<s3>")
        needles += [
            (secret.get_secret_value(), "<s3 key>")
            for secret in (settings.s3_access_key, settings.s3_secret_key)
            if secret is not None and secret.get_secret_value()
        ]
        # Longest first: the SQLite file's path contains the data directory's.
        self._needles = sorted(needles, key=lambda n: len(n[0]), reverse=True)

    def __call__(self, message: str) -> str:
        for needle, placeholder in self._needles:
            message = message.replace(needle, placeholder)
        message = _ABSOLUTE_PATH.sub("<path>", message)
        return _HOST_PORT.sub("<host:port>", message)
