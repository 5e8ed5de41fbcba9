"""The photos an INT8 quantisation is calibrated on, read exactly as the service reads uploads.

Static quantisation fixes every activation's range from what the calibration photos produce, so
they must reach the graph through the serving path (``preprocess_bytes`` with the FP32 model's
own contract, JPEG draft included when it is on): a range measured on differently decoded or
resized pixels would be a range for other inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from artifact.image_decode import ImageDecodeError, ImageTooLargeError, preprocess_bytes
from artifact.preprocess_spec import PreprocessSpec
from model.data.folder_items import IMAGE_EXTENSIONS

# Enough views for stable ranges on a CNN (ranges are maxima, so more photos mostly cost
# calibration time); a larger folder is subsampled evenly, not cut at its first sub-folders.
DEFAULT_CALIBRATION_LIMIT = 200
# Paths named in an unreadable-photos error (the count is always complete).
SHOWN_PATHS = 5


class CalibrationError(ValueError):
    """The calibration directory is missing, unreadable, empty, or holds unreadable images."""


def calibration_files(directory: Path, limit: int = DEFAULT_CALIBRATION_LIMIT) -> list[Path]:
    """Image files under ``directory`` (any depth, hidden entries skipped), sorted by path; at
    most ``limit`` of them, evenly spaced over the sorted list."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if not directory.is_dir():
        raise CalibrationError(f"calibration directory {directory} does not exist or is no folder")
    try:
        # rglob skips sub-folders it may not list; the top folder must at least be listable.
        next(directory.iterdir(), None)
        files = sorted(
            p
            for p in directory.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS
            and not any(part.startswith(".") for part in p.relative_to(directory).parts)
            and p.is_file()
        )
    except OSError as exc:
        raise CalibrationError(f"cannot read calibration directory {directory}: {exc}") from exc
    if not files:
        raise CalibrationError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) under calibration directory {directory}"
        )
    if len(files) <= limit:
        return files
    picks = np.linspace(0, len(files) - 1, num=limit).round().astype(np.int64)
    return [files[int(i)] for i in picks]


def load_calibration_batch(
    directory: Path, spec: PreprocessSpec, limit: int = DEFAULT_CALIBRATION_LIMIT
) -> npt.NDArray[np.uint8]:
    """``(N, 3, H, W)`` ``uint8``: the calibration photos through ``preprocess_bytes(data, spec)``.

    Refuses (:class:`CalibrationError`) when any chosen file cannot be read or decoded, naming
    them: a quantisation silently calibrated on fewer photos than asked is not reproducible.
    """
    arrays: list[npt.NDArray[np.uint8]] = []
    unreadable: list[str] = []
    for path in calibration_files(directory, limit):
        try:
            arrays.append(preprocess_bytes(path.read_bytes(), spec))
        except (OSError, ImageDecodeError, ImageTooLargeError) as exc:
            unreadable.append(f"{path} ({exc})")
    if unreadable:
        raise CalibrationError(
            f"{len(unreadable)} calibration images could not be read: "
            f"{'; '.join(unreadable[:SHOWN_PATHS])}"
        )
    return np.ascontiguousarray(np.stack(arrays, axis=0))
