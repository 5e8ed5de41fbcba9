"""COCO-style pairs reader (DeepFashion / Street2Shop JSON of the CTL reference)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.data.coco_pairs import read_coco_pairs
from model.data.dataset_split import DatasetError
from model.data.sample import Sample
from tests.model.data.photo_files import write

TRAIN = {
    "images": [
        {"id": 1, "file_name": "a.jpg"},
        {"id": 2, "file_name": "b.jpg"},
        {"id": 3, "file_name": "c.jpg"},
        {"id": 4, "file_name": "d.jpg"},
        {"id": 5, "file_name": "e.jpg"},
    ],
    "annotations": [
        {"image_id": 2, "pair_id": 10},
        {"image_id": 1, "pair_id": 10},
        {"image_id": 3, "pair_id": 7},  # pair 7 has one image: dropped from train
        {"image_id": 4, "pair_id": 12},
        {"image_id": 5, "pair_id": 12},
        {"image_id": 5, "pair_id": 10},  # two products in one image: in both items
        {"image_id": 4, "pair_id": 12},  # duplicate annotation: counted once
        {"image_id": 99, "pair_id": 10},  # no such image: skipped
    ],
}
QUERY = {
    "images": [{"id": 1, "file_name": "q1.jpg"}],
    "annotations": [{"image_id": 1, "pair_id": 7}],
}
GALLERY = {
    "images": [{"id": 8, "file_name": "g1.jpg"}, {"id": 9, "file_name": "g2.jpg"}],
    "annotations": [{"image_id": 8, "pair_id": 7}, {"image_id": 9, "pair_id": 12}],
}


def make(root: Path, image_dir: str, content: bytes) -> Path:
    for part, doc in (("train", TRAIN), ("query", QUERY), ("gallery", GALLERY)):
        (root / f"{part}.json").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{part}.json").write_text(json.dumps(doc))
        for img in doc["images"]:
            write(root / (image_dir or part) / str(img["file_name"]), content)
    return root


@pytest.mark.parametrize("image_dir", ["", "img"])
def test_items_are_pair_ids(tmp_path: Path, photo_jpegs: dict[str, bytes], image_dir: str) -> None:
    root = make(tmp_path, image_dir, photo_jpegs["rocket"])
    split = read_coco_pairs(root, "train.json", "query.json", "gallery.json", image_dir=image_dir)

    def at(part: str, name: str) -> str:
        return str(root / (image_dir or part) / name)

    assert split.protocol == "retrieval" and split.name == "coco_pairs"
    assert split.train == [
        Sample(at("train", "a.jpg"), "10"),
        Sample(at("train", "b.jpg"), "10"),
        Sample(at("train", "e.jpg"), "10"),
        Sample(at("train", "d.jpg"), "12"),
        Sample(at("train", "e.jpg"), "12"),
    ]
    assert split.query == [Sample(at("query", "q1.jpg"), "7")]
    assert split.gallery == [
        Sample(at("gallery", "g1.jpg"), "7"),
        Sample(at("gallery", "g2.jpg"), "12"),
    ]


def test_absolute_json_paths(tmp_path: Path, photo_jpegs: dict[str, bytes]) -> None:
    root = make(tmp_path, "", photo_jpegs["rocket"])
    absolute = read_coco_pairs(
        root, str(root / "train.json"), str(root / "query.json"), str(root / "gallery.json")
    )
    assert absolute == read_coco_pairs(root, "train.json", "query.json", "gallery.json")


def test_missing_json_and_folder_are_named(tmp_path: Path, photo_jpegs: dict[str, bytes]) -> None:
    root = make(tmp_path, "", photo_jpegs["rocket"])
    with pytest.raises(DatasetError, match=r"missing annotation file .*nope\.json"):
        read_coco_pairs(root, "train.json", "nope.json", "gallery.json")
    with pytest.raises(DatasetError, match=r"missing image folder .*pics"):
        read_coco_pairs(root, "train.json", "query.json", "gallery.json", image_dir="pics")


def test_train_of_single_image_pairs_is_empty(
    tmp_path: Path, photo_jpegs: dict[str, bytes]
) -> None:
    root = make(tmp_path, "", photo_jpegs["rocket"])
    (root / "train.json").write_text(json.dumps(QUERY))
    with pytest.raises(DatasetError, match=r"train\.json gives no train images"):
        read_coco_pairs(root, "train.json", "query.json", "gallery.json")


def test_malformed_json_says_what_is_expected(
    tmp_path: Path, photo_jpegs: dict[str, bytes]
) -> None:
    root = make(tmp_path, "", photo_jpegs["rocket"])
    (root / "gallery.json").write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))
    with pytest.raises(DatasetError, match=r"images\[\]\.file_name"):
        read_coco_pairs(root, "train.json", "query.json", "gallery.json")
