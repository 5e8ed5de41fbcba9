from __future__ import annotations

import re
from pathlib import Path

from model.data.market1501 import read_market1501
from model.data.market_sample import GRID, NUM_CAMERAS, write_market_sample

NAME = re.compile(r"^([-\d]+)_c(\d)s1_\d{6}_\d{2}\.jpg$")
FOLDERS = ("bounding_box_train", "query", "bounding_box_test")


def test_sample_has_market_layout_naming_and_protocol(tmp_path: Path) -> None:
    root = write_market_sample(tmp_path / "m", distractors=5, junk=3)
    files = {d: sorted((root / d).iterdir()) for d in FOLDERS}
    for paths in files.values():
        for path in paths:
            m = NAME.match(path.name)
            assert m is not None, path.name
            assert 1 <= int(m.group(2)) <= NUM_CAMERAS
    per_photo = GRID[0] * GRID[1]
    train_ids = {p.name.split("_")[0] for p in files["bounding_box_train"]}
    test_ids = {p.name.split("_")[0] for p in files["query"]}
    assert len(train_ids) == 12 * per_photo and not train_ids & test_ids
    assert len(files["bounding_box_train"]) == 6 * len(train_ids)

    split = read_market1501(root)
    # The reader drops the 3 junk images and keeps the 5 distractors as gallery entries.
    assert len(split.gallery) == 4 * len(test_ids) + 5
    assert sum(s.is_distractor for s in split.gallery) == 5
    assert len(split.query) == 2 * len(test_ids)
    # Some query of every identity has a gallery image from another camera, so the
    # cross-camera protocol can score every identity.
    for item in {q.item for q in split.query}:
        query_cams = {q.camera for q in split.query if q.item == item}
        gallery_cams = {g.camera for g in split.gallery if g.item == item}
        assert any(gallery_cams - {cam} for cam in query_cams), item
