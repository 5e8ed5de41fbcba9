"""A deterministic gallery of unit rows, each a random centre plus Gaussian noise.

The one rule by which the approximate-index bench makes vectors with neighbours: clustered
random data (random unit centres, isotropic noise) and the real-embedding gallery (real
embeddings as centres, noise of the measured within-item spread per dimension) differ only in
the centres and the noise scale they pass here.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

CHUNK_ROWS = 8192


class PerturbedCentres:
    """``items`` rows of ``normalize(centres[c] + sigma * z)``, ``c`` uniform, ``z ~ N(0, I)``.

    ``centres``: ``(C, dim)`` float32; ``sigma``: a per-coordinate standard deviation, a
    Python float (isotropic) or a ``(dim,)`` float32 array (per dimension). Rows come as
    float32 ``(rows, dim)`` chunks of ``CHUNK_ROWS``; chunk ``c`` is always the same, so a
    gallery is regenerated rather than held twice. Item ``i`` is named ``item{i:08d}``.
    """

    def __init__(
        self,
        centres: npt.NDArray[np.float32],
        sigma: float | npt.NDArray[np.float32],
        items: int,
        seed: int,
    ) -> None:
        if centres.ndim != 2 or centres.shape[0] < 1 or centres.dtype != np.float32:
            raise ValueError(f"centres must be (C >= 1, dim) float32, got {centres.shape}")
        dim = centres.shape[1]
        if isinstance(sigma, np.ndarray) and (sigma.shape != (dim,) or sigma.dtype != np.float32):
            raise ValueError(f"a per-dimension sigma must be ({dim},) float32, got {sigma.shape}")
        if items < 0:
            raise ValueError(f"items must be >= 0, got {items}")
        self.centres = centres
        self.sigma = sigma
        self.items, self.dim, self.seed = items, dim, seed

    def draw(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
        """``(n, dim)`` float32 unit rows around centres drawn uniformly by ``rng``."""
        x = self.centres[rng.integers(0, self.centres.shape[0], size=n)]
        # float32 noise times a Python float or float32 sigma stays float32.
        x = x + self.sigma * rng.standard_normal((n, self.dim), dtype=np.float32)
        out: npt.NDArray[np.float32] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(
            np.float32, copy=False
        )
        return out

    def chunk(self, c: int) -> npt.NDArray[np.float32]:
        n = min(CHUNK_ROWS, self.items - c * CHUNK_ROWS)
        return self.draw(np.random.default_rng((self.seed, 1, c)), n)

    def items_iter(self) -> Iterator[tuple[str, npt.NDArray[np.float32]]]:
        for c in range((self.items + CHUNK_ROWS - 1) // CHUNK_ROWS):
            rows = self.chunk(c)
            for j in range(rows.shape[0]):
                yield f"item{c * CHUNK_ROWS + j:08d}", rows[j]

    def queries(self, n: int) -> npt.NDArray[np.float32]:
        """Held-out ``(n, dim)`` queries: fresh noise draws, a stream no gallery chunk uses."""
        return self.draw(np.random.default_rng((self.seed, 2)), n)
