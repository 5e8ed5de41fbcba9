"""API keys: how they look, how the service stores them (salted HMAC lines) and checks them.

A key is ``cr_<key id>_<secret>``: the key id names it (in logs, limits and the hash line) and is
not secret; the secret is 32 random bytes (256 bits) in hex. The service holds one *hash line*
per key, never the key::

    <key id>:<scopes, comma-separated>:<salt hex>:<HMAC-SHA-256(salt, key) hex>

A presented key is found by its id (a dict lookup, so the cost does not grow with the number of
keys) and accepted when the HMAC of what was presented equals the stored one, compared with
:func:`hmac.compare_digest`. A keyed hash rather than a slow password hash (bcrypt, scrypt)
because the secret has 256 bits of entropy: nothing is left to brute-force, so a slow hash
would only cost every request milliseconds. Standard library only, so ``make-key`` runs in
any install.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

KEY_PREFIX = "cr"
SECRET_BYTES = 32
SALT_BYTES = 16
KEY_ID_PATTERN = r"[A-Za-z0-9-]{1,64}"
_KEY_RE = re.compile(rf"{KEY_PREFIX}_({KEY_ID_PATTERN})_([0-9a-f]{{{2 * SECRET_BYTES}}})")
_LINE_RE = re.compile(
    rf"({KEY_ID_PATTERN}):([a-z,]+):([0-9a-f]{{{2 * SALT_BYTES}}}):([0-9a-f]{{64}})"
)
LINE_FORMAT = "<key id>:<scopes, comma-separated>:<salt hex>:<hmac hex>"
# A fixed salt and MAC for ids nobody configured: the same HMAC and comparison are then run, so
# an unknown id costs what a wrong secret does.
_DUMMY_SALT = bytes(SALT_BYTES)
_DUMMY_MAC = bytes(32)


class Scope(enum.StrEnum):
    """What a key may do. Independent: a key holds each scope it needs."""

    READ = "read"  # search, get an item, list items
    WRITE = "write"  # enroll, delete images and items
    ADMIN = "admin"  # maintenance: POST /admin/compact, POST /admin/backup


class ApiKeyConfigError(ValueError):
    """A configured hash line (or keys file) that cannot be used; says which and why."""


@dataclass(frozen=True)
class ApiKey:
    """One configured key, as the service knows it: never the key itself."""

    key_id: str
    scopes: frozenset[Scope]
    salt: bytes
    mac: bytes

    def hash_line(self) -> str:
        scopes = ",".join(s.value for s in Scope if s in self.scopes)
        return f"{self.key_id}:{scopes}:{self.salt.hex()}:{self.mac.hex()}"


def key_mac(salt: bytes, key: str) -> bytes:
    return hmac.digest(salt, key.encode(), hashlib.sha256)


def parse_scopes(text: str) -> frozenset[Scope]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ApiKeyConfigError("no scope given (read, write, admin)")
    known = {s.value: s for s in Scope}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ApiKeyConfigError(f"unknown scope {', '.join(unknown)} (read, write, admin)")
    return frozenset(known[name] for name in names)


def parse_hash_line(line: str) -> ApiKey:
    match = _LINE_RE.fullmatch(line.strip())
    if match is None:
        # The line itself is not echoed: a key pasted here by mistake must not reach a log.
        raise ApiKeyConfigError(f"expected {LINE_FORMAT}")
    key_id, scopes, salt, mac = match.groups()
    return ApiKey(key_id, parse_scopes(scopes), bytes.fromhex(salt), bytes.fromhex(mac))


def make_key(key_id: str | None, scopes: Iterable[Scope]) -> tuple[str, ApiKey]:
    """A new random key and its hash line's record. The key is returned once, never stored."""
    key_id = key_id if key_id is not None else secrets.token_hex(4)
    if re.fullmatch(KEY_ID_PATTERN, key_id) is None:
        raise ApiKeyConfigError(f"key id must match {KEY_ID_PATTERN}")
    scope_set = frozenset(scopes)
    if not scope_set:
        raise ApiKeyConfigError("no scope given (read, write, admin)")
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_hex(SECRET_BYTES)}"
    salt = secrets.token_bytes(SALT_BYTES)
    return key, ApiKey(key_id, scope_set, salt, key_mac(salt, key))


class Keyring:
    """The configured keys, by id; :meth:`verify` turns a presented key into its record."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._keys: dict[str, ApiKey] = {}
        for key in keys:
            if key.key_id in self._keys:
                raise ApiKeyConfigError(f"key id {key.key_id!r} is configured twice")
            self._keys[key.key_id] = key

    @classmethod
    def from_text(cls, text: str, *, source: str) -> Keyring:
        """Hash lines separated by newlines or ``;``; blank lines and ``#`` comments skipped."""
        keys = []
        for number, line in enumerate(re.split(r"[;\n]", text), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                keys.append(parse_hash_line(line))
            except ApiKeyConfigError as exc:
                raise ApiKeyConfigError(f"{source}, entry {number}: {exc}") from None
        return cls(keys)

    @classmethod
    def from_sources(cls, text: str, path: Path | None) -> Keyring:
        """The keys of the environment's ``text`` and of the keys file at ``path``, together."""
        keys = list(cls.from_text(text, source="RETRIEVAL_API_KEYS")._keys.values())
        if path is not None:
            try:
                content = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ApiKeyConfigError(
                    f"RETRIEVAL_API_KEYS_FILE {path}: {exc.strerror or exc}"
                ) from None
            keys += cls.from_text(content, source=f"RETRIEVAL_API_KEYS_FILE {path}")._keys.values()
        return cls(keys)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def keys(self) -> Mapping[str, ApiKey]:
        return self._keys

    def verify(self, presented: str) -> ApiKey | None:
        """The key record if ``presented`` is a configured key, else None. Constant time in the
        secret: the MACs are compared with :func:`hmac.compare_digest`."""
        match = _KEY_RE.fullmatch(presented)
        key = self._keys.get(match.group(1)) if match is not None else None
        salt, mac = (key.salt, key.mac) if key is not None else (_DUMMY_SALT, _DUMMY_MAC)
        same = hmac.compare_digest(key_mac(salt, presented), mac)
        return key if same and key is not None else None

    @staticmethod
    def key_id_of(presented: str) -> str | None:
        """The id part of a well-formed key (not secret, fit for a log line), else None."""
        match = _KEY_RE.fullmatch(presented)
        return match.group(1) if match is not None else None
