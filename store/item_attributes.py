"""Item attributes: a small JSON object per item, merged by RFC 7396 and filtered by exact match.

Attributes are stored as compact JSON (``attributes_size`` is what the size limit counts).
Filters compare *terms*: a top-level key whose value is a JSON scalar gives the term
``key=rendered`` — the string itself for a string, ``json.dumps`` of a number or a boolean
(``5``, ``2.5``, ``true``) — and a filter ``key:value`` asks for the term ``key=value``. So the
filter ``n:5`` matches ``{"n": 5}`` and ``{"n": "5"}`` but not ``{"n": 5.0}`` (rendered
``5.0``); objects, arrays and missing keys never match. Keys a filter cannot name (outside
``[A-Za-z0-9_.-]{1,64}``, e.g. holding ``=``) give no term either, so no term is ambiguous.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from store.errors import AttributeFilterError, AttributesInvalidError

Attributes = dict[str, Any]  # a JSON object

FILTER_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")

DEFAULT_MAX_ATTRIBUTES_BYTES = 4096


def check_json(value: Any, where: str = "attributes") -> None:
    """Raise ``AttributesInvalidError`` unless ``value`` is a JSON value: dicts with string
    keys, lists, strings, finite numbers, booleans and None, nested."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AttributesInvalidError(f"{where}: {value} is not a JSON number")
        return
    if isinstance(value, list):
        for n, v in enumerate(value):
            check_json(v, f"{where}[{n}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise AttributesInvalidError(f"{where}: key {k!r} is not a string")
            check_json(v, f"{where}.{k}")
        return
    raise AttributesInvalidError(f"{where}: a {type(value).__name__} is not a JSON value")


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> Attributes:
    """RFC 7396 merge of the object ``patch`` into the object ``target`` (neither is changed):
    a null deletes the key, an object merges into the key's object (or into {} if the key holds
    something else), any other value replaces. ``AttributesInvalidError`` if ``patch`` is not a
    JSON object."""
    if not isinstance(patch, dict):
        raise AttributesInvalidError(
            f"attributes must be a JSON object, got {type(patch).__name__}"
        )
    try:
        check_json(patch)
        merged: Attributes = _merge(dict(target), patch)
    except RecursionError as exc:
        raise AttributesInvalidError("attributes are nested too deeply") from exc
    return merged


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def attributes_json(attrs: Mapping[str, Any]) -> str:
    """The stored form: compact, keys sorted, UTF-8 (not ``\\u`` escapes)."""
    return json.dumps(attrs, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def attributes_from_json(text: str | bytes | None) -> Attributes:
    """The stored form back; None (never set) is {}."""
    if text is None:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"stored attributes are not an object: {value!r}")
    return value


def attributes_size(attrs: Mapping[str, Any]) -> int:
    """Bytes of the compact, key-sorted UTF-8 JSON encoding: what the size limit counts."""
    return len(attributes_json(attrs).encode())


def _render(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return None  # objects, arrays, null


def attribute_terms(attrs: Mapping[str, Any]) -> frozenset[str]:
    """``key=rendered`` for every top-level scalar whose key a filter can name."""
    terms = set()
    for key, value in attrs.items():
        rendered = _render(value)
        if rendered is not None and FILTER_KEY.fullmatch(key):
            terms.add(f"{key}={rendered}")
    return frozenset(terms)


@dataclass(frozen=True)
class AttributeFilter:
    """Exact-match conditions, ANDed; the empty filter matches every item."""

    terms: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, specs: Iterable[str]) -> AttributeFilter:
        """From ``key:value`` strings (split at the first ``:``; the value may be empty or
        hold more ``:``); ``AttributeFilterError`` for a missing ``:`` or a bad key."""
        terms = set()
        for spec in specs:
            key, sep, value = spec.partition(":")
            if not sep:
                raise AttributeFilterError(f"filter {spec!r} is not key:value")
            if not FILTER_KEY.fullmatch(key):
                raise AttributeFilterError(
                    f"filter key {key!r} must match {FILTER_KEY.pattern} (1 to 64 letters, "
                    "digits, '_', '.' or '-')"
                )
            terms.add(f"{key}={value}")
        return cls(frozenset(terms))

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        return not self.terms or self.terms <= attribute_terms(attrs)
