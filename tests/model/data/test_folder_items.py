"""Folder reader: the hashed split against a SHA-1 oracle, the given-split layout, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from model.data.dataset_split import DatasetError
from model.data.folder_items import read_folder_items
from model.data.sample import Sample
from tests.model.data.photo_files import write


def sha1_fraction(text: str) -> float:
    # Independent oracle: the whole digest as an integer over 2**160 (the reader keeps 64 bits;
    # the order of fractions this far apart is the same).
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) / 2**160


def make_items(root: Path, counts: dict[str, int], content: bytes) -> None:
    for item, n in counts.items():
        for i in range(n):
            write(root / item / f"view_{i:02d}.jpg", content)


COUNTS = {f"item{i:02d}": 2 + i % 4 for i in range(30)}


def test_hashed_split_matches_oracle(tmp_path: Path, photo_jpegs: dict[str, bytes]) -> None:
    make_items(tmp_path, COUNTS, photo_jpegs["chelsea"])
    write(tmp_path / "stray.jpg", photo_jpegs["chelsea"])  # not in an item folder: ignored
    write(tmp_path / "item00" / "notes.txt", b"x")  # not an image: ignored
    split = read_folder_items(tmp_path, holdout_fraction=0.3, query_per_item=1)

    held = {item for item in COUNTS if sha1_fraction(item) < 0.3}
    assert 0 < len(held) < len(COUNTS)  # the example exercises both sides
    expected_train = [
        Sample(str(tmp_path / item / f"view_{i:02d}.jpg"), item)
        for item in sorted(COUNTS)
        if item not in held
        for i in range(COUNTS[item])
    ]
    assert split.train == expected_train
    assert split.protocol == "retrieval"
    for item in held:
        names = [f"view_{i:02d}.jpg" for i in range(COUNTS[item])]
        first = min(names, key=sha1_fraction)
        assert [s.path for s in split.query if s.item == item] == [str(tmp_path / item / first)]
        assert sorted(s.path for s in split.gallery if s.item == item) == sorted(
            str(tmp_path / item / n) for n in names if n != first
        )


def test_split_is_stable_across_runs_and_creation_order(
    tmp_path: Path, photo_jpegs: dict[str, bytes]
) -> None:
    make_items(tmp_path / "a", COUNTS, photo_jpegs["chelsea"])
    make_items(tmp_path / "b", dict(reversed(list(COUNTS.items()))), photo_jpegs["coffee"])
    a = read_folder_items(tmp_path / "a", holdout_fraction=0.5, query_per_item=2)
    b = read_folder_items(tmp_path / "b", holdout_fraction=0.5, query_per_item=2)
    assert a == read_folder_items(tmp_path / "a", holdout_fraction=0.5, query_per_item=2)

    def rel(samples: list[Sample], root: Path) -> list[tuple[str, str]]:
        return [(str(Path(s.path).relative_to(root)), s.item) for s in samples]

    for part in ("train", "query", "gallery"):
        assert rel(getattr(a, part), tmp_path / "a") == rel(getattr(b, part), tmp_path / "b")
    # Adding an item never moves an existing one between train and held-out.
    make_items(tmp_path / "a", {"newcomer": 3}, photo_jpegs["chelsea"])
    grown = read_folder_items(tmp_path / "a", holdout_fraction=0.5, query_per_item=2)
    assert {s.item for s in a.train} <= {s.item for s in grown.train}


def test_small_held_out_items_go_to_the_gallery(
    tmp_path: Path, photo_jpegs: dict[str, bytes]
) -> None:
    make_items(tmp_path, {"solo": 1, "pair": 2, "trio": 3}, photo_jpegs["rocket"])
    split = read_folder_items(tmp_path, holdout_fraction=1.0, query_per_item=2)
    assert split.train == []
    assert {s.item for s in split.query} == {"trio"} and len(split.query) == 2
    assert sorted(s.item for s in split.gallery) == ["pair", "pair", "solo", "trio"]


def test_given_split_layout(tmp_path: Path, photo_jpegs: dict[str, bytes]) -> None:
    jpg = photo_jpegs["astronaut"]
    for rel in ("gallery/x/1.jpg", "gallery/x/2.PNG", "gallery/y/1.webp", "query/x/q.gif"):
        write(tmp_path / rel, jpg)
    write(tmp_path / "query/y/q.bmp", jpg)
    split = read_folder_items(tmp_path, holdout_fraction=0.9)
    assert split.train == []
    assert split.query == [
        Sample(str(tmp_path / "query/x/q.gif"), "x"),
        Sample(str(tmp_path / "query/y/q.bmp"), "y"),
    ]
    assert [s.item for s in split.gallery] == ["x", "x", "y"]
    write(tmp_path / "train/z/1.jpeg", jpg)
    write(tmp_path / "train/z/2.jpg", jpg)
    with_train = read_folder_items(tmp_path)
    assert [(Path(s.path).name, s.item) for s in with_train.train] == [
        ("1.jpeg", "z"),
        ("2.jpg", "z"),
    ]


def test_errors_name_the_folder(tmp_path: Path, photo_jpegs: dict[str, bytes]) -> None:
    with pytest.raises(DatasetError, match=r"missing dataset folder .*absent"):
        read_folder_items(tmp_path / "absent")
    (tmp_path / "empty" / "item").mkdir(parents=True)
    write(tmp_path / "empty" / "item" / "notes.txt", b"x")
    with pytest.raises(DatasetError, match=r"no images .*empty/<item>/"):
        read_folder_items(tmp_path / "empty")
    write(tmp_path / "given" / "gallery" / "x" / "1.jpg", photo_jpegs["coffee"])
    (tmp_path / "given" / "query").mkdir()
    with pytest.raises(DatasetError, match=r"no images .*given/query/<item>/"):
        read_folder_items(tmp_path / "given")
    with pytest.raises(ValueError, match="holdout_fraction"):
        read_folder_items(tmp_path / "given", holdout_fraction=1.5)
