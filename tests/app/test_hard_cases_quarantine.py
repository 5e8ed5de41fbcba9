"""Hard cases over a gallery holding quarantined images (real SQLite store, real blob
directory, tiny artifact, real photos): each item holds a stray view of another photo,
quarantined at enrollment. The leave-one-out misses are the brute-force oracle's over the
counted images alone, no suspect or miss names a quarantined image, and the export writes the
quarantined originals under ``quarantined/``, never into the training ``dataset/``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.hard_cases import export_hard_cases, find_hard_cases
from index.suspect_images import SuspectRule
from tests.index.leave_one_out_oracle import Gallery, oracle_rank
from tests.quarantine_gallery import QuarantineGallery, opened_stray_gallery

NAMES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")


@pytest.fixture
def gallery(
    tmp_path: Path, tiny_model_path: Path, photo_views: dict[str, list[bytes]]
) -> Iterator[tuple[QuarantineGallery, dict[str, str]]]:
    with opened_stray_gallery(tmp_path, tiny_model_path, photo_views, NAMES) as opened:
        yield opened


def test_misses_are_over_counted_images_and_quarantined_ones_are_exported_apart(
    gallery: tuple[QuarantineGallery, dict[str, str]], tmp_path: Path
) -> None:
    g, strays = gallery
    cases = find_hard_cases(g.store, SuspectRule(), pairs=3)
    assert cases.items == len(NAMES)
    assert cases.images == 3 * len(NAMES)  # counted ones
    held_out = set(strays.values())
    assert not {m.image_id for m in cases.misses} & held_out
    assert not {s.image_id for flagged in cases.suspects.values() for s in flagged} & held_out
    counted = {item: g.counted(item) for item in NAMES}
    oracle: Gallery = {item: [r.embedding for r in records] for item, records in counted.items()}
    expected = {
        (item, r.image_id)
        for item, records in counted.items()
        for n, r in enumerate(records)
        if oracle_rank(oracle, item, n) > 1
    }
    assert expected  # the gallery has misses to find
    assert {(m.item_id, m.image_id) for m in cases.misses} == expected
    assert cases.quarantined == {item: [image] for item, image in strays.items()}
    assert cases.quarantined_images == len(NAMES)

    out = tmp_path / "hard"
    report = export_hard_cases(g.store, g.blobs, cases, out)
    assert report.quarantined_images == len(NAMES) and not report.missing_blobs
    for item, image in strays.items():
        assert (out / "quarantined" / item / f"{image}.jpg").read_bytes() == g.originals[image]
    in_dataset = {p.stem for p in (out / "dataset").rglob("*.jpg")}
    assert not in_dataset & held_out
    # Every item holds a quarantined image, so every item is named: all counted non-suspects.
    flagged = {s.image_id for listed in cases.suspects.values() for s in listed}
    assert in_dataset == {r.image_id for rs in counted.values() for r in rs} - flagged
    manifest = json.loads((out / "hard_cases.json").read_text())
    assert manifest["quarantined"] == cases.quarantined


def test_an_image_quarantined_after_the_cases_were_found_stays_out_of_the_dataset(
    gallery: tuple[QuarantineGallery, dict[str, str]], tmp_path: Path
) -> None:
    g, _ = gallery
    cases = find_hard_cases(g.store, SuspectRule(), pairs=3)
    late = g.counted("rocket")[0].image_id
    g.store.set_image_quarantine("rocket", late, True)
    export_hard_cases(g.store, g.blobs, cases, tmp_path / "hard")
    assert (tmp_path / "hard" / "quarantined" / "rocket" / f"{late}.jpg").is_file()
    assert not (tmp_path / "hard" / "dataset" / "rocket" / f"{late}.jpg").exists()
