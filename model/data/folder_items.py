"""A folder of item sub-folders → :class:`DatasetSplit` (retrieval protocol).

Two layouts:

- ``ROOT/<item>/<image>``: items are split into training and held-out items by a hash of the
  item name, and each held-out item's images into query and gallery by a hash of the file name.
  SHA-1 (not Python's per-process randomised ``hash``) makes the split the same on every machine
  and run, and adding items never moves existing ones between train and held-out.
- ``ROOT/gallery/<item>/<image>`` and ``ROOT/query/<item>/<image>`` (the split is given), plus
  ``ROOT/train/<item>/<image>`` when present (otherwise nothing to train on).

Hidden entries (names starting with ".") and files directly under an items folder are ignored.
"""

from __future__ import annotations

from pathlib import Path

from model.data.dataset_split import DatasetError, DatasetSplit
from model.data.hash_fraction import hash_fraction
from model.data.sample import Sample

# What ``decode_image`` accepts (JPEG, PNG, WebP, GIF, BMP).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def read_folder_items(
    root: Path, holdout_fraction: float = 0.2, query_per_item: int = 1, name: str = "folder"
) -> DatasetSplit:
    """Read either layout (see the module docstring); samples sorted by (item, path).

    In the hashed layout, an item is held out when the SHA-1 fraction of its name is below
    ``holdout_fraction``; its ``query_per_item`` images of smallest file-name SHA-1 become
    queries, the rest gallery. A held-out item with no more than ``query_per_item`` images would
    have queries with nothing to find: all its images go to the gallery instead.
    """
    if not 0.0 <= holdout_fraction <= 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1], got {holdout_fraction}")
    if query_per_item < 1:
        raise ValueError(f"query_per_item must be >= 1, got {query_per_item}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{name}: missing dataset folder {root}")
    if (root / "gallery").is_dir() and (root / "query").is_dir():
        return _read_given_split(root, name)
    items = _read_items(root)
    if not items:
        raise DatasetError(
            f"{name}: no images ({', '.join(IMAGE_EXTENSIONS)}) in item folders {root}/<item>/"
        )
    train: list[Sample] = []
    query: list[Sample] = []
    gallery: list[Sample] = []
    for item, paths in items.items():
        samples = [Sample(path=str(p), item=item) for p in paths]
        if hash_fraction(item) >= holdout_fraction:
            train.extend(samples)
            continue
        if len(samples) <= query_per_item:
            gallery.extend(samples)
            continue
        by_hash = sorted(samples, key=lambda s: hash_fraction(Path(s.path).name))
        query.extend(sorted(by_hash[:query_per_item], key=lambda s: s.path))
        gallery.extend(sorted(by_hash[query_per_item:], key=lambda s: s.path))
    return DatasetSplit(name=name, train=train, query=query, gallery=gallery, protocol="retrieval")


def _read_given_split(root: Path, name: str) -> DatasetSplit:
    parts: dict[str, list[Sample]] = {}
    for part in ("train", "query", "gallery"):
        folder = root / part
        items = _read_items(folder) if folder.is_dir() else {}
        if not items and part != "train":
            raise DatasetError(
                f"{name}: no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}/<item>/"
            )
        parts[part] = [Sample(path=str(p), item=item) for item, ps in items.items() for p in ps]
    return DatasetSplit(
        name=name,
        train=parts["train"],
        query=parts["query"],
        gallery=parts["gallery"],
        protocol="retrieval",
    )


def _read_items(folder: Path) -> dict[str, list[Path]]:
    """``{item: sorted image paths}`` over the non-hidden sub-folders that hold images."""
    items: dict[str, list[Path]] = {}
    for sub in sorted(folder.iterdir()):
        if not sub.is_dir() or sub.name.startswith("."):
            continue
        paths = [
            p
            for p in sorted(sub.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        ]
        if paths:
            items[sub.name] = paths
    return items
