"""Samples → ``(image tensor, label, index)`` for a torch ``DataLoader``.

Every image goes through :func:`artifact.image_decode.decode_image`, the service's decode
path, so the same bytes give the same pixels in training, evaluation and serving. The bytes
come from :meth:`Sample.read_bytes` (a file, or a service's kept original), read when the item
is asked for: the dataset holds references, never images.

A corrupt or unreadable file must not stop a run that has been going for hours. Design chosen:
substitution. When sample ``i`` cannot be read, its path is recorded in :attr:`bad_paths` (and
logged once), and the dataset returns the next readable sample *of the same label* (cycling
through the dataset order), falling back to any readable sample. The returned index is that of
the image actually read, so a caller that checks indices (the evaluation does) sees the gap;
a P×K batch keeps its item structure. Known bad paths are skipped without re-reading.

:attr:`bad_paths` is per process: with ``num_workers > 0`` each worker keeps (and logs) its own
set and the main process's stays empty; the warnings in the log are the complete record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence

from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from artifact.image_decode import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    ImageTooLargeError,
    decode_image,
)
from model.data.sample import Sample

log = logging.getLogger(__name__)

# What reading one image file may raise when the file (not the code) is at fault.
UNREADABLE_IMAGE_ERRORS = (OSError, ImageDecodeError, ImageTooLargeError)


class NoReadableImageError(RuntimeError):
    """Every sample of the dataset is unreadable: there is nothing to substitute."""


class ImageDataset(Dataset[tuple[Tensor, int, int]]):
    """``dataset[i] -> (transform(rgb image), label_of[samples[j].item], j)`` where ``j == i``
    unless sample ``i`` is unreadable (then ``j`` is its substitute, see the module docstring).

    ``transform`` maps an 8-bit RGB PIL image to a ``(3, H, W)`` float tensor.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        label_of: Mapping[str, int],
        transform: Callable[[Image.Image], Tensor],
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        missing = sorted({s.item for s in samples} - set(label_of))
        if missing:
            raise ValueError(f"label_of has no label for items {missing[:5]}")
        self.samples = list(samples)
        self.labels = [int(label_of[s.item]) for s in self.samples]
        self.transform = transform
        self.max_pixels = max_pixels
        self.bad_paths: set[str] = set()

    @property
    def skipped_count(self) -> int:
        """Unreadable images met so far in this process."""
        return len(self.bad_paths)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        for j in self._candidates(index):
            image = self._read(j)
            if image is not None:
                return self.transform(image), self.labels[j], j
        raise NoReadableImageError(
            f"no readable image left in the dataset (last tried index {index})"
        )

    def _candidates(self, index: int) -> Iterator[int]:
        """``index``, then the other samples of its label, then the rest, in cyclic order
        (lazy: the common case reads ``index`` and stops)."""
        yield index
        n = len(self.samples)
        label = self.labels[index]
        others = [(index + step) % n for step in range(1, n)]
        yield from (j for j in others if self.labels[j] == label)
        yield from (j for j in others if self.labels[j] != label)

    def _read(self, j: int) -> Image.Image | None:
        sample = self.samples[j]
        path = sample.path
        if path in self.bad_paths:
            return None
        try:
            return decode_image(sample.read_bytes(), max_pixels=self.max_pixels)
        except UNREADABLE_IMAGE_ERRORS as exc:
            self.bad_paths.add(path)
            log.warning("skipping unreadable image %s: %s", path, exc)
            return None
