"""Market-1501 / DukeMTMC-reID reader on a small layout of real photos with benchmark names."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.data.dataset_split import DatasetError
from model.data.market1501 import read_dukemtmc, read_market1501
from model.data.sample import Sample
from tests.model.data.photo_files import write

TRAIN = (
    "0002_c1s1_000451_03.jpg",
    "0002_c2s1_000301_01.jpg",
    "0007_c3s3_077419_03.jpg",
    "0007_c6s2_009230_01.png",
    "-1_c1s1_000401_03.jpg",  # junk: dropped
    "0000_c1s1_000001_00.jpg",  # distractor: never trained on
)
QUERY = ("0002_c3s1_000551_00.jpg", "0007_c1s1_000001_00.jpg")
GALLERY = (
    "0002_c1s1_000801_02.jpg",
    "0000_c2s1_000151_01.jpg",  # distractor: kept, flagged
    "-1_c4s1_000001_05.jpg",  # junk: dropped
    "0007_c2s1_000101_01.jpeg",
    "notes.txt",  # not an image: ignored
)


def make_layout(root: Path, content: bytes) -> Path:
    for folder, names in (
        ("bounding_box_train", TRAIN),
        ("query", QUERY),
        ("bounding_box_test", GALLERY),
    ):
        for name in names:
            write(root / folder / name, content)
    return root


def test_reads_ids_cameras_junk_and_distractors(
    tmp_path: Path, photo_jpegs: dict[str, bytes]
) -> None:
    root = make_layout(tmp_path / "Market-1501", photo_jpegs["astronaut"])
    split = read_market1501(root)

    def s(folder: str, name: str, item: str, cam: int, distractor: bool = False) -> Sample:
        return Sample(str(root / folder / name), item, cam, distractor)

    assert split.name == "market1501"
    assert split.protocol == "reid"
    # Sorted by file name, as listed here by hand.
    assert split.train == [
        s("bounding_box_train", "0002_c1s1_000451_03.jpg", "0002", 1),
        s("bounding_box_train", "0002_c2s1_000301_01.jpg", "0002", 2),
        s("bounding_box_train", "0007_c3s3_077419_03.jpg", "0007", 3),
        s("bounding_box_train", "0007_c6s2_009230_01.png", "0007", 6),
    ]
    assert split.query == [
        s("query", "0002_c3s1_000551_00.jpg", "0002", 3),
        s("query", "0007_c1s1_000001_00.jpg", "0007", 1),
    ]
    assert split.gallery == [
        s("bounding_box_test", "0000_c2s1_000151_01.jpg", "0000", 2, True),
        s("bounding_box_test", "0002_c1s1_000801_02.jpg", "0002", 1),
        s("bounding_box_test", "0007_c2s1_000101_01.jpeg", "0007", 2),
    ]


def test_duke_uses_the_same_layout(tmp_path: Path, photo_jpegs: dict[str, bytes]) -> None:
    root = make_layout(tmp_path / "DukeMTMC-reID", photo_jpegs["coffee"])
    duke = read_dukemtmc(root)
    market = read_market1501(root)
    assert duke.name == "dukemtmc"
    assert (duke.train, duke.query, duke.gallery) == (market.train, market.query, market.gallery)


def test_missing_folder_is_named(tmp_path: Path, photo_jpegs: dict[str, bytes]) -> None:
    root = make_layout(tmp_path / "m", photo_jpegs["coffee"])
    for f in (root / "query").iterdir():
        f.unlink()
    (root / "query").rmdir()
    with pytest.raises(DatasetError, match=r"missing folder .*query"):
        read_market1501(root)


def test_empty_folder_says_what_was_searched(tmp_path: Path) -> None:
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (tmp_path / folder).mkdir()
    write(tmp_path / "bounding_box_train" / "readme.txt", b"no images here")
    with pytest.raises(DatasetError, match=r"no images named .*bounding_box_train"):
        read_market1501(tmp_path)


def test_unparseable_name_is_an_error(tmp_path: Path, photo_jpegs: dict[str, bytes]) -> None:
    root = make_layout(tmp_path / "m", photo_jpegs["coffee"])
    write(root / "query" / "person.jpg", photo_jpegs["coffee"])
    with pytest.raises(DatasetError, match=r"person\.jpg"):
        read_market1501(root)
