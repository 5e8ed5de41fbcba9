"""API keys: the hash line format, verification against it, and what make_key generates."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import Counter
from pathlib import Path

import pytest

from app import api_keys
from app.api_keys import ApiKeyConfigError, Keyring, Scope, make_key, parse_hash_line


def test_a_made_key_verifies_against_its_own_hash_line_only() -> None:
    key, record = make_key("svc-1", [Scope.READ, Scope.WRITE])
    line = record.hash_line()
    assert line.startswith("svc-1:read,write:")
    keyring = Keyring.from_text(line, source="test")
    found = keyring.verify(key)
    assert found is not None and found.key_id == "svc-1"
    assert found.scopes == {Scope.READ, Scope.WRITE}
    # The hash line is HMAC-SHA-256 keyed by its salt over the whole key, as documented.
    _, _, salt, mac = line.split(":")
    assert hmac.new(bytes.fromhex(salt), key.encode(), hashlib.sha256).hexdigest() == mac
    assert key not in line and key.split("_")[2] not in line


def test_wrong_secret_wrong_salt_unknown_id_and_garbage_are_refused() -> None:
    key, record = make_key("a", [Scope.READ])
    keyring = Keyring([record])
    secret = key.split("_")[2]
    flipped = secret[:-1] + ("0" if secret[-1] != "0" else "1")
    assert keyring.verify(f"cr_a_{flipped}") is None
    other_key, _ = make_key("a", [Scope.READ])  # same id, another secret
    assert keyring.verify(other_key) is None
    # The same key against a line whose salt differs (its MAC no longer matches).
    resalted = api_keys.ApiKey("a", record.scopes, bytes(16), record.mac)
    assert Keyring([resalted]).verify(key) is None
    assert keyring.verify(key.replace("cr_a_", "cr_b_")) is None  # unknown id
    for garbage in ("", "cr_a_", secret, key + "0", key.upper(), f"Bearer {key}"):
        assert keyring.verify(garbage) is None, garbage
    assert keyring.verify(key) == record


def test_verification_compares_macs_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    # A spy that calls the real function: every verdict, unknown ids included, goes through it.
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", spy)
    key, record = make_key("k", [Scope.READ])
    keyring = Keyring([record])
    assert keyring.verify(key) is not None
    assert calls[-1] == (api_keys.key_mac(record.salt, key), record.mac)
    assert keyring.verify(key[:-1] + "x") is None  # malformed: still one comparison
    assert keyring.verify("cr_zz_" + "0" * 64) is None  # unknown id: still one comparison
    assert len(calls) == 3


def test_made_keys_carry_256_random_bits() -> None:
    keys = [make_key(None, [Scope.READ])[0] for _ in range(200)]
    secrets_ = [k.split("_")[2] for k in keys]
    assert all(len(s) == 64 and int(s, 16) >= 0 for s in secrets_)  # 32 bytes, hex
    assert len(set(secrets_)) == len(secrets_)
    # Every hex digit about equally often over 12,800 digits (a biased generator would not be).
    counts = Counter("".join(secrets_))
    assert set(counts) == set("0123456789abcdef")
    expected = len(secrets_) * 64 / 16
    assert max(abs(c - expected) for c in counts.values()) < 6 * math.sqrt(expected)
    assert len({k.split("_")[1] for k in keys}) == len(keys)  # default ids differ too


def test_hash_lines_parse_every_scope_and_refuse_bad_ones() -> None:
    _, record = make_key("ops", [Scope.ADMIN])
    assert parse_hash_line(record.hash_line()).scopes == {Scope.ADMIN}
    _, everything = make_key("all", list(Scope))
    assert parse_hash_line(everything.hash_line()).scopes == set(Scope)
    salt, mac = "0" * 32, "0" * 64
    for bad in (
        f"ops:superuser:{salt}:{mac}",  # unknown scope
        f"ops::{salt}:{mac}",  # no scope
        f"ops:read:{salt[:-2]}:{mac}",  # short salt
        f"ops:read:{salt}:{mac}0",  # long MAC
        f"op_s:read:{salt}:{mac}",  # '_' separates key parts; not in ids
        "cr_ops_" + "0" * 64,  # a key pasted where its hash line belongs
    ):
        with pytest.raises(ApiKeyConfigError) as caught:
            parse_hash_line(bad)
        assert "0" * 32 not in str(caught.value)  # the line is never echoed


def test_keyrings_from_env_text_and_file(tmp_path: Path) -> None:
    k1, r1 = make_key("one", [Scope.READ])
    k2, r2 = make_key("two", [Scope.WRITE])
    k3, r3 = make_key("three", [Scope.ADMIN])
    file = tmp_path / "keys"
    file.write_text(f"# service keys\n\n{r3.hash_line()}\n")
    keyring = Keyring.from_sources(f"{r1.hash_line()};\n {r2.hash_line()} ", file)
    assert len(keyring) == 3
    assert [keyring.verify(k) for k in (k1, k2, k3)] == [r1, r2, r3]
    with pytest.raises(ApiKeyConfigError, match="'one' is configured twice"):
        Keyring.from_sources(r1.hash_line(), _write(tmp_path / "dup", r1.hash_line()))
    with pytest.raises(ApiKeyConfigError, match=r"RETRIEVAL_API_KEYS, entry 2: expected"):
        Keyring.from_text(f"{r1.hash_line()};nonsense", source="RETRIEVAL_API_KEYS")
    with pytest.raises(ApiKeyConfigError, match=r"RETRIEVAL_API_KEYS_FILE .*missing"):
        Keyring.from_sources("", tmp_path / "missing")
    assert len(Keyring.from_sources("", None)) == 0


def test_make_key_refuses_bad_ids_and_no_scope() -> None:
    with pytest.raises(ApiKeyConfigError, match="key id"):
        make_key("has_underscore", [Scope.READ])
    with pytest.raises(ApiKeyConfigError, match="no scope"):
        make_key("x", [])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
