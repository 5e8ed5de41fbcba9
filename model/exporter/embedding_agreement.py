"""How closely two models' embeddings of the same photos agree: per-row cosine, mean and minimum."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Agreement:
    """Cosines between paired rows of two ``(N, D)`` embedding arrays (N >= 1)."""

    num_photos: int
    mean_cosine: float
    min_cosine: float

    def __str__(self) -> str:
        return (
            f"cosine on {self.num_photos} photos: mean = {self.mean_cosine:.6f}, "
            f"min = {self.min_cosine:.6f}"
        )


def row_cosines(
    a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]
) -> npt.NDArray[np.float64]:
    """``(N,)`` float64 cosine of ``a[i]`` and ``b[i]``; a zero row scores 0, never NaN."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (N, D) arrays of one shape, got {a.shape} and {b.shape}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    out: npt.NDArray[np.float64] = np.sum(a64 * b64, axis=1) / np.maximum(den, 1e-300)
    return out


def agreement(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> Agreement:
    cosines = row_cosines(a, b)
    if cosines.shape[0] == 0:
        raise ValueError("no photos to compare")
    return Agreement(int(cosines.shape[0]), float(cosines.mean()), float(cosines.min()))
