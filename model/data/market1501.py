"""Market-1501 and DukeMTMC-reID (same layout and file naming) → :class:`DatasetSplit`.

Layout: ``ROOT/bounding_box_train``, ``ROOT/query``, ``ROOT/bounding_box_test``. A file name
starts with the person id and the camera: ``0002_c1s1_000451_03.jpg`` is person 2, camera 1.
Id ``-1`` marks junk detections (dropped everywhere, as the benchmark's evaluation ignores them);
id ``0`` marks distractors, which stay in the gallery with ``is_distractor=True``.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from model.data.dataset_split import DatasetError, DatasetSplit
from model.data.sample import Sample

# The person id (possibly "-1") and the one-digit camera id at the start of every file name.
_NAME = re.compile(r"([-\d]+)_c(\d)")
_EXTENSIONS = (".jpg", ".jpeg", ".png")
_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
_JUNK = -1
_DISTRACTOR = 0


def read_market1501(root: Path, name: str = "market1501") -> DatasetSplit:
    """Read the three folders under ``root``; files in sorted name order (deterministic).

    Raises :class:`DatasetError` naming the missing folder, or the folder searched when it
    holds no usable image.
    """
    root = Path(root)
    parts = {part: _read_folder(root / folder, part) for part, folder in _FOLDERS.items()}
    # Distractors are gallery-only by definition; training on them would teach a fake identity.
    train = [s for s in parts["train"] if not s.is_distractor]
    if not train:
        raise DatasetError(f"{name}: no training identities in {root / _FOLDERS['train']}")
    return DatasetSplit(
        name=name, train=train, query=parts["query"], gallery=parts["gallery"], protocol="reid"
    )


# DukeMTMC-reID ships in the Market-1501 layout and naming scheme.
read_dukemtmc = partial(read_market1501, name="dukemtmc")


def _read_folder(folder: Path, part: str) -> list[Sample]:
    if not folder.is_dir():
        raise DatasetError(f"missing folder {folder} (the {part} images)")
    samples = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in _EXTENSIONS or not path.is_file():
            continue
        match = _NAME.match(path.name)
        if match is None:
            raise DatasetError(f"{path}: file name does not start with <pid>_c<camera>")
        pid, camera = int(match.group(1)), int(match.group(2))
        if pid == _JUNK:
            continue
        samples.append(
            Sample(
                path=str(path),
                item=match.group(1),
                camera=camera,
                is_distractor=pid == _DISTRACTOR,
            )
        )
    if not samples:
        raise DatasetError(
            f"no images named <pid>_c<camera>*{{{','.join(_EXTENSIONS)}}} in {folder}"
        )
    return samples
