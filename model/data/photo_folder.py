"""Write a labelled ``ROOT/{gallery,query}/<item>/*.jpg`` folder from the photos scikit-image
and scikit-learn ship, to try the service (``bench/evaluate_service.py``) or the ``folder``
dataset reader without downloading anything::

    python -m model.data.photo_folder --out data/photo_folder            # 20 items
    python -m model.data.photo_folder --out data/photo_regions --grid 2 2  # 80, harder

Each item is a photo (or, with ``--grid``, one region of it); its gallery and query images are
different random views (crop, flip, colour, small rotation).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model.data.sample_photos import write_gallery_query_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.data.photo_folder", description=__doc__
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument("--gallery-views", type=int, default=4, help="views per item (default 4)")
    parser.add_argument("--query-views", type=int, default=2, help="views per item (default 2)")
    parser.add_argument("--grid", type=int, nargs=2, default=(1, 1), metavar=("ROWS", "COLS"),
                        help="one item per grid cell of each photo (default 1 1)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")
    args = parser.parse_args(argv)
    root = write_gallery_query_folder(
        args.out,
        gallery_views=args.gallery_views,
        query_views=args.query_views,
        seed=args.seed,
        grid=(args.grid[0], args.grid[1]),
    )
    items = sorted(p.name for p in (root / "gallery").iterdir())
    print(f"wrote {root}: {len(items)} items, {args.gallery_views} gallery and "
          f"{args.query_views} query views each")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
