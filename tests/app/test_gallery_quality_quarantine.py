"""Leave-one-image-out over a gallery holding quarantined images (real SQLite store, tiny
artifact, real photos): they are never drawn nor queried, not counted as the gallery's images,
and the ranks of the counted ones are the brute-force oracle's over the counted images alone
(a quarantined image is in no centroid)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.gallery_quality import leave_one_out, sample_gallery
from tests.index.leave_one_out_oracle import Gallery, oracle_rank
from tests.quarantine_gallery import QuarantineGallery, opened_stray_gallery

NAMES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")


@pytest.fixture
def gallery(
    tmp_path: Path, tiny_model_path: Path, photo_views: dict[str, list[bytes]]
) -> Iterator[tuple[QuarantineGallery, dict[str, str]]]:
    with opened_stray_gallery(tmp_path, tiny_model_path, photo_views, NAMES) as (g, strays):
        # One counted image and a quarantined one: a single-image item, not queried.
        solo = g.enroll("solo", [photo_views["china"][0], photo_views["flower"][0]], [1])
        strays["solo"] = solo.image_ids[1]
        yield g, strays


def test_quarantined_images_are_neither_sampled_nor_queried_nor_in_the_centroids(
    gallery: tuple[QuarantineGallery, dict[str, str]],
) -> None:
    g, strays = gallery
    # And astronaut's first view: a quarantined image ahead of the counted ones.
    first = g.counted("astronaut")[0].image_id
    g.store.set_image_quarantine("astronaut", first, True)
    held_out = {*strays.values(), first}
    assert g.quarantined_ids() == held_out
    sample = sample_gallery(g.store, 10_000)
    assert sample.items == len(NAMES) + 1
    assert sample.gallery_images == 3 * len(NAMES)  # counted ones only
    assert sample.single_image_items == 1
    assert sample.eligible_images == len(sample.images) == 3 * len(NAMES) - 1
    assert not {i for _, i in sample.images} & held_out
    quality = leave_one_out(g.store, sample)
    assert quality.skipped_images == 0
    assert quality.queried == sample.images
    # The oracle's gallery: every item's counted images, nothing else.
    counted = {item: g.counted(item) for item in (*NAMES, "solo")}
    oracle: Gallery = {item: [r.embedding for r in records] for item, records in counted.items()}
    expected = [
        oracle_rank(oracle, item, [r.image_id for r in counted[item]].index(image))
        for item, image in quality.queried
    ]
    assert quality.result.ranks.tolist() == expected
    assert quality.result.queried_images == 3 * len(NAMES) - 1
    assert quality.result.single_image_items == 1


def test_an_image_quarantined_after_sampling_is_skipped_and_counted(
    gallery: tuple[QuarantineGallery, dict[str, str]],
) -> None:
    g, _ = gallery
    sample = sample_gallery(g.store, 10_000)
    item, image = sample.images[0]
    g.store.set_image_quarantine(item, image, True)
    quality = leave_one_out(g.store, sample)
    assert quality.skipped_images == 1
    assert (item, image) not in quality.queried
    assert len(quality.queried) == len(sample.images) - 1
