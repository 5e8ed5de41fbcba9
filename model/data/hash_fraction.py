"""A text's SHA-1 read as a number in [0, 1): how the dataset readers split items and images.

SHA-1, not Python's per-process randomised ``hash``, so a split is the same on every machine
and run, and adding items never moves existing ones between training and held-out.
"""

from __future__ import annotations

import hashlib

# Leading hex digits of the SHA-1 read as the hash fraction in [0, 1): 64 bits is plenty.
_HASH_HEX_DIGITS = 16
_HASH_SCALE = float(1 << (4 * _HASH_HEX_DIGITS))


def hash_fraction(text: str) -> float:
    """SHA-1 of the UTF-8 text as a number in [0, 1)."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    return int(digest[:_HASH_HEX_DIGITS], 16) / _HASH_SCALE
