"""How stores check, serialise and sum embeddings (shared so both backends agree bit for bit).

Embeddings are stored as little-endian float32 (the model's output dtype), sums as
little-endian float64: float32 values (24-bit mantissas) of similar magnitude add exactly into a
53-bit mantissa for up to about 2**29 terms, so the order images arrive in barely matters.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

F32_LE = np.dtype("<f4")
F64_LE = np.dtype("<f8")


def check_embedding(embedding: npt.ArrayLike, dim: int) -> npt.NDArray[np.float32]:
    """``embedding`` as a ``(dim,)`` float32 array; ValueError if the shape or a value is bad."""
    arr = np.asarray(embedding)
    if arr.shape != (dim,):
        raise ValueError(f"embedding must be ({dim},), got {arr.shape}")
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError("embedding has a non-finite value (as float32)")
    return out


def sum_in_order(
    embeddings: Iterable[npt.NDArray[np.float32]], dim: int
) -> npt.NDArray[np.float64]:
    """``(dim,)`` float64 sum of ``(dim,)`` embeddings, added one by one in the given order.

    The same order of additions as a sequence of enrollments, so recomputing an item's sum
    after a delete gives what enrolling the remaining images alone would have given.
    """
    total = np.zeros(dim, dtype=np.float64)
    for e in embeddings:
        total += e
    return total


def f32_bytes(x: npt.NDArray[np.floating]) -> bytes:
    return np.asarray(x, dtype=F32_LE).tobytes()


def f64_bytes(x: npt.NDArray[np.floating]) -> bytes:
    return np.asarray(x, dtype=F64_LE).tobytes()


def f32_from(blob: bytes) -> npt.NDArray[np.float32]:
    """A writable native-endian float32 copy of a blob written by ``f32_bytes``."""
    return np.frombuffer(blob, dtype=F32_LE).astype(np.float32)


def f64_from(blob: bytes) -> npt.NDArray[np.float64]:
    """A writable native-endian float64 copy of a blob written by ``f64_bytes``."""
    return np.frombuffer(blob, dtype=F64_LE).astype(np.float64)


def unit_vector(embedding: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """``(D,)`` float64 ``embedding / ||embedding||`` (computed in float64); a zero vector stays
    zero (it points nowhere, so it adds nothing to a sum of directions)."""
    vec = np.asarray(embedding, dtype=np.float64)
    norm = float(np.sqrt(vec @ vec))
    return vec / norm if norm > 0 else np.zeros_like(vec)


def unit_sum_in_order(
    embeddings: Iterable[npt.NDArray[np.float32]], dim: int
) -> npt.NDArray[np.float64]:
    """``(dim,)`` float64 sum of the ``unit_vector`` of each embedding, in the given order (as
    ``sum_in_order``: recomputing after a delete equals enrolling the rest alone)."""
    total = np.zeros(dim, dtype=np.float64)
    for e in embeddings:
        total += unit_vector(e)
    return total
