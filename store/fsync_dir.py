"""Make the entries of a directory durable (POSIX).

``os.replace`` is atomic, but the new name lives in the directory's own data: until the
directory is fsynced too, a power loss can undo a rename that a caller already reported as done.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """fsync ``directory`` itself. Raises OSError where directories cannot be opened (Windows)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
