"""A Redis namespace as plain JSON and back: for committed fixtures of an older key layout.

``DUMP`` payloads are tied to the server's RDB version, so a fixture is kept as each key's type
and contents instead (bytes as base64) and written back with ordinary commands: strings, hashes,
lists, sorted sets and streams (entries with their original ids) — what ``RedisStore`` uses.
"""

from __future__ import annotations

import base64
from typing import Any

import redis


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _raw(text: str) -> bytes:
    return base64.b64decode(text)


def dump_keys(client: redis.Redis, namespace: str) -> list[dict[str, Any]]:
    """Every key under ``namespace:``, sorted, as ``{"key" (without the namespace), "type",
    "value"}``; keys with an expiry are refused (a fixture must not depend on the clock)."""
    prefix = namespace + ":"
    out: list[dict[str, Any]] = []
    for raw_key in sorted(client.scan_iter(match=prefix + "*", count=1000)):
        key = raw_key.decode()
        if client.pttl(key) != -1:
            raise ValueError(f"{key} has an expiry")
        kind = client.type(key).decode()
        value: Any
        if kind == "string":
            value = _b64(client.get(key))
        elif kind == "hash":
            value = {_b64(k): _b64(v) for k, v in sorted(client.hgetall(key).items())}
        elif kind == "list":
            value = [_b64(v) for v in client.lrange(key, 0, -1)]
        elif kind == "zset":
            value = [[_b64(m), s] for m, s in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            value = [
                [i.decode(), {_b64(k): _b64(v) for k, v in fields.items()}]
                for i, fields in client.xrange(key)
            ]
        else:
            raise ValueError(f"{key}: type {kind} is not dumped")
        out.append({"key": key.removeprefix(prefix), "type": kind, "value": value})
    return out


def load_keys(client: redis.Redis, namespace: str, entries: list[dict[str, Any]]) -> None:
    """Write ``entries`` (from :func:`dump_keys`) under ``namespace:``, in one transaction."""
    with client.pipeline(transaction=True) as pipe:
        for entry in entries:
            key = f"{namespace}:{entry['key']}"
            value = entry["value"]
            match entry["type"]:
                case "string":
                    pipe.set(key, _raw(value))
                case "hash":
                    pipe.hset(key, mapping={_raw(k): _raw(v) for k, v in value.items()})
                case "list":
                    pipe.rpush(key, *(_raw(v) for v in value))
                case "zset":
                    pipe.zadd(key, {_raw(m): s for m, s in value})
                case "stream":
                    for entry_id, fields in value:
                        pipe.xadd(key, {_raw(k): _raw(v) for k, v in fields.items()}, id=entry_id)
                case other:
                    raise ValueError(f"{key}: type {other} is not loaded")
        pipe.execute()
