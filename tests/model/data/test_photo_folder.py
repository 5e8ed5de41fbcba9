from __future__ import annotations

from pathlib import Path

from PIL import Image

from model.data.folder_items import read_folder_items
from model.data.photo_folder import main


def test_writes_a_gallery_query_folder_the_folder_reader_takes(tmp_path: Path) -> None:
    out = tmp_path / "photos"
    assert main(["--out", str(out), "--grid", "1", "2", "--gallery-views", "3"]) == 0
    items = sorted(p.name for p in (out / "gallery").iterdir())
    assert items == sorted(p.name for p in (out / "query").iterdir())
    assert len(items) == 2 * 20 and "chelsea-1" in items
    assert all(len(list((out / "gallery" / i).iterdir())) == 3 for i in items)
    with Image.open(next((out / "query" / "chelsea-0").iterdir())) as img:
        assert img.format == "JPEG"
    split = read_folder_items(out)
    assert len(split.gallery) == 3 * 40 and len(split.query) == 2 * 40 and not split.train
