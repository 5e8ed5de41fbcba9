"""One image of a dataset, as the readers produce it and the training and evaluation code use it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.data.blob_image import BlobImage

# A blob-backed sample's ``path``: what names it in logs and unreadable-image lists.
BLOB_PATH_PREFIX = "blob:"


@dataclass(frozen=True)
class Sample:
    """An image and the item (identity) it shows.

    The image is the file ``path``, or, when ``blob`` is set (a service's kept original, see
    :mod:`model.data.service_store`), that blob; ``path`` then only names it
    (``blob:<sha256>``). Readers call :meth:`read_bytes` and never open ``path`` themselves.

    ``camera`` is ``-1`` when unknown; ``is_distractor`` marks Market-1501 / DukeMTMC-reID
    gallery images of identity ``0000`` (no query shows them; they only compete for ranks).
    """

    path: str  # image file; for a blob-backed sample "blob:<sha256>"
    item: str  # item/identity label (Market: "0002"; COCO: str(pair_id); folder: dir name)
    camera: int = -1  # -1 when unknown
    is_distractor: bool = False  # Market "0000" gallery images
    blob: BlobImage | None = None  # where the bytes are when they are no file

    @classmethod
    def of_blob(cls, blob: BlobImage, item: str) -> Sample:
        return cls(path=BLOB_PATH_PREFIX + blob.content_hash, item=item, blob=blob)

    def read_bytes(self) -> bytes:
        """The encoded image; ``OSError`` when it cannot be read (a missing file or blob)."""
        if self.blob is not None:
            return self.blob.read()
        return Path(self.path).read_bytes()
