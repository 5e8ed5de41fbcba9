from __future__ import annotations

import pytest

from tests.model.data.photo_files import PHOTOS, jpeg_bytes, photo


@pytest.fixture(scope="session")
def photo_jpegs() -> dict[str, bytes]:
    """JPEG bytes of a few real photos, at most 64 px on a side."""
    return {name: jpeg_bytes(photo(name)) for name in PHOTOS}
