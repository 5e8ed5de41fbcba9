"""Feeds preprocessed calibration photos to ONNX Runtime's static quantiser, batch by batch."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from onnxruntime.quantization import CalibrationDataReader

# Small batches keep the calibrator's augmented model (every tensor an output) within memory on
# a CPU; MinMax ranges do not depend on how the photos are batched.
CALIBRATION_BATCH = 8


class CalibrationBatches(CalibrationDataReader):  # type: ignore[misc]  # untyped base
    """``{input_name: (b, 3, H, W) uint8}`` for consecutive slices of ``photos``, then ``None``.

    ``rewind`` starts over, so one reader serves several quantisation attempts.
    """

    def __init__(
        self, input_name: str, photos: npt.NDArray[np.uint8], batch_size: int = CALIBRATION_BATCH
    ) -> None:
        if photos.ndim != 4 or photos.dtype != np.uint8 or photos.shape[0] == 0:
            raise ValueError(f"expected (N > 0, 3, H, W) uint8, got {photos.shape} {photos.dtype}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.input_name = input_name
        self.photos = photos
        self.batch_size = batch_size
        self._next = 0

    def get_next(self) -> dict[str, npt.NDArray[np.uint8]] | None:
        if self._next >= self.photos.shape[0]:
            return None
        batch = self.photos[self._next : self._next + self.batch_size]
        self._next += self.batch_size
        return {self.input_name: np.ascontiguousarray(batch)}

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return -(-int(self.photos.shape[0]) // self.batch_size)
