"""Consumer-to-shop datasets in the COCO-style JSON of the CTL reference (DeepFashion, Street2Shop).

Each JSON file holds ``images`` (``id``, ``file_name``) and ``annotations`` (``image_id``,
``pair_id``); the item of an image is its ``pair_id`` (the product shown), so one image with two
annotated products belongs to two items. Where the images are:

- ``image_dir == ""``: the reference layout, each part in its own folder ``ROOT/train``,
  ``ROOT/query``, ``ROOT/gallery``;
- otherwise every ``file_name`` is relative to ``ROOT/image_dir`` (DeepFashion's single ``img``
  folder, where file names carry their sub-folders).

JSON paths are relative to ``ROOT`` unless absolute.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model.data.dataset_split import DatasetError, DatasetSplit
from model.data.sample import Sample


def read_coco_pairs(
    root: Path,
    train_json: str,
    query_json: str,
    gallery_json: str,
    image_dir: str = "",
    name: str = "coco_pairs",
) -> DatasetSplit:
    """Read the three annotation files; samples sorted by (pair id, path) for determinism.

    In ``train``, pair ids with a single image are dropped: a lone image has no positive for the
    metric losses and no centroid (the reference does the same).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{name}: missing dataset folder {root}")
    parts: dict[str, list[Sample]] = {}
    for part, json_name in (
        ("train", train_json),
        ("query", query_json),
        ("gallery", gallery_json),
    ):
        folder = root / (image_dir if image_dir else part)
        if not folder.is_dir():
            raise DatasetError(f"{name}: missing image folder {folder} (the {part} images)")
        json_path = Path(json_name) if Path(json_name).is_absolute() else root / json_name
        samples = _read_part(json_path, folder)
        if part == "train":
            samples = _drop_single_image_items(samples)
        if not samples:
            raise DatasetError(
                f"{name}: {json_path} gives no {part} images"
                + (" with a pair id of 2+ images" if part == "train" else "")
            )
        parts[part] = samples
    return DatasetSplit(
        name=name,
        train=parts["train"],
        query=parts["query"],
        gallery=parts["gallery"],
        protocol="retrieval",
    )


def _read_part(json_path: Path, folder: Path) -> list[Sample]:
    if not json_path.is_file():
        raise DatasetError(f"missing annotation file {json_path}")
    try:
        doc: Any = json.loads(json_path.read_text(encoding="utf-8"))
        file_names = {int(img["id"]): str(img["file_name"]) for img in doc["images"]}
        pairs = {(int(a["image_id"]), int(a["pair_id"])) for a in doc["annotations"]}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DatasetError(
            f"{json_path}: not COCO-style pairs (needs images[].id, images[].file_name, "
            f"annotations[].image_id, annotations[].pair_id): {exc!r}"
        ) from exc
    # Annotations of images the file does not list are skipped, as the reference does.
    keyed = sorted(
        (pair_id, str(folder / file_names[image_id]))
        for image_id, pair_id in pairs
        if image_id in file_names
    )
    return [Sample(path=path, item=str(pair_id)) for pair_id, path in keyed]


def _drop_single_image_items(samples: list[Sample]) -> list[Sample]:
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.item] = counts.get(s.item, 0) + 1
    return [s for s in samples if counts[s.item] > 1]
