"""Write a small sample in the Market-1501 layout from the photos scikit-image/-learn ship.

Market-1501 cannot be downloaded here, so this builds a stand-in with the same folders and file
naming, to show (and test) what the README's commands print::

    bounding_box_train/0002_c1s1_000451_01.jpg   identity 0002, camera 1, sequence 1, frame, box
    query/0051_c2s1_000120_00.jpg
    bounding_box_test/0051_c5s1_000240_00.jpg    plus 0000_* distractors and -1_* junk

An "identity" is one region of a photo (a 3×3 grid per photo); its images are random views of
the region (crop, flip, colour, tilt) at Market's 128×64 crop size, each from a random camera.
Training and test identities come from different photos, as Market's train/test identities
are disjoint people.

    python -m model.data.market_sample --out data/market_sample
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image

from model.data.sample_photos import load_photo, photo_names, photo_regions, random_view

# Market-1501 crops are 128 (height) × 64 (width) pixels, from 6 cameras.
CROP_WH = (64, 128)
NUM_CAMERAS = 6
# Regions per photo: 3×3 gives 108 training and 72 test identities from the 20 shipped photos,
# enough that training visibly beats an untrained network (2×2 regions were too few to).
GRID = (3, 3)


def _save(img: Image.Image, path: Path) -> None:
    img.resize(CROP_WH, Image.Resampling.BILINEAR).save(path, format="JPEG", quality=92)


def _name(pid: int, cam: int, frame: int, box: int) -> str:
    pid_text = "-1" if pid < 0 else f"{pid:04d}"
    return f"{pid_text}_c{cam}s1_{frame:06d}_{box:02d}.jpg"


def write_market_sample(
    out: Path,
    *,
    train_photos: int = 12,
    train_views: int = 6,
    gallery_views: int = 4,
    query_views: int = 2,
    distractors: int = 8,
    junk: int = 4,
    seed: int = 0,
) -> Path:
    """Create ``out/{bounding_box_train,query,bounding_box_test}``; returns ``out``."""
    rng = random.Random(seed)
    names = photo_names()
    regions = [(name, r) for name in names for r in photo_regions(load_photo(name), GRID)]
    per_photo = GRID[0] * GRID[1]
    train_regions = regions[: train_photos * per_photo]
    test_regions = regions[train_photos * per_photo :]
    dirs = {d: out / d for d in ("bounding_box_train", "query", "bounding_box_test")}
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    frame = 0

    def next_frame() -> int:
        nonlocal frame
        frame += 37  # arbitrary stride: frame numbers only need to be distinct
        return frame

    # Identity numbers: odd for train, even for test (Market interleaves them; 0 and -1 are
    # reserved for distractors and junk).
    for i, (_, region) in enumerate(train_regions):
        pid = 2 * i + 1
        for _ in range(train_views):
            cam = rng.randint(1, NUM_CAMERAS)
            _save(
                random_view(region, rng),
                dirs["bounding_box_train"] / _name(pid, cam, next_frame(), 1),
            )
    for i, (_, region) in enumerate(test_regions):
        pid = 2 * i + 2
        cams = rng.sample(range(1, NUM_CAMERAS + 1), query_views)
        for cam in cams:
            _save(random_view(region, rng), dirs["query"] / _name(pid, cam, next_frame(), 0))
        for v in range(gallery_views):
            # Gallery views come from other cameras than the first query's, so every query has
            # a cross-camera match, as in Market.
            cam = rng.choice([c for c in range(1, NUM_CAMERAS + 1) if c != cams[0]])
            _save(
                random_view(region, rng),
                dirs["bounding_box_test"] / _name(pid, cam, next_frame(), v),
            )
    # Distractors (0000): views of training photos' regions, shown as unrelated gallery boxes;
    # junk (-1): tiny crops Market's protocol ignores.
    for d in range(distractors):
        _, region = rng.choice(train_regions)
        cam = rng.randint(1, NUM_CAMERAS)
        _save(
            random_view(region, rng, min_area=0.2),
            dirs["bounding_box_test"] / _name(0, cam, next_frame(), d),
        )
    for j in range(junk):
        _, region = rng.choice(test_regions)
        cam = rng.randint(1, NUM_CAMERAS)
        _save(
            random_view(region, rng, min_area=0.05),
            dirs["bounding_box_test"] / _name(-1, cam, next_frame(), j),
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("data/market_sample"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-views", type=int, default=6, help="images per training identity")
    parser.add_argument(
        "--gallery-views", type=int, default=4, help="gallery images per test identity"
    )
    parser.add_argument("--query-views", type=int, default=2, help="queries per test identity")
    args = parser.parse_args()
    out = write_market_sample(
        args.out,
        seed=args.seed,
        train_views=args.train_views,
        gallery_views=args.gallery_views,
        query_views=args.query_views,
    )
    for d in ("bounding_box_train", "query", "bounding_box_test"):
        print(f"{out / d}: {len(list((out / d).glob('*.jpg')))} images")


if __name__ == "__main__":
    main()
